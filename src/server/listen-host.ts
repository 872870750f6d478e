import type { GatewayConfig } from '../config/gateway-config';

/** Loopback only unless RemoteAccessAllowed: for the HTTP server and the DICOM server alike (secure by default). */
export function listenHost(config: GatewayConfig): string {
  return config.remoteAccessAllowed ? '::' : '127.0.0.1';
}
