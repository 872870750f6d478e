/**
 * HTTP to an Orthanc peer through outbound-http (Basic auth, HttpHeaders, client certificates, HttpProxy,
 * Timeout/HttpTimeout, HttpsVerifyPeers/HttpsCACertificates), as Orthanc's HttpClient does for peers.
 */
import { pipeline, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { DicomWebServerConfig, GatewayConfig, OrthancPeerConfig } from '../../../config/gateway-config';
import type { FileStream } from '../../native-model';
import { bodyExcerpt, readJson, resolveServerUrl, sendOutbound, type OutboundResponse } from '../../../client/outbound-http';
import { HttpError } from '../../../server/errors';

export interface PeerTarget {
  name: string;
  peer: OrthancPeerConfig;
}

export interface PeerRequest {
  method: 'GET' | 'POST';
  /** Relative to the peer's Url, e.g. "system". */
  path: string;
  headers?: Record<string, string>;
  body?: Readable;
  signal?: AbortSignal;
}

/** outbound-http speaks to DICOMweb servers; a peer has the same connection settings and none of their DICOMweb options. */
function asWebService(peer: OrthancPeerConfig): DicomWebServerConfig {
  return { ...peer, timeout: peer.timeout ?? 0, hasDelete: false, chunkedTransfers: true, userProperties: peer.userProperties ?? {} };
}

/** One request to the peer; an unreachable peer is a 502/504 and any answer but 2xx a 502 that quotes it. */
export async function peerRequest(config: GatewayConfig, { name, peer }: PeerTarget, req: PeerRequest): Promise<OutboundResponse> {
  const server = asWebService(peer);
  const url = resolveServerUrl(server, req.path);
  let response: OutboundResponse;
  try {
    response = await sendOutbound(config, server, { ...req, url });
  } catch (error) {
    // outbound-http names a DICOMweb server: say which peer instead, keeping its details (origin and error code)
    if (!(error instanceof HttpError)) throw error;
    const what = error.status === 504 ? 'Timeout while contacting' : 'Cannot contact';
    throw new HttpError(error.status, `${what} the Orthanc peer "${name}"`, error.details);
  }
  if (response.status < 200 || response.status > 299) {
    const excerpt = await bodyExcerpt(response.body);
    throw new HttpError(502, `The Orthanc peer "${name}" answered HTTP ${response.status}`, excerpt || undefined);
  }
  return response;
}

export interface SendOptions {
  /** "Compress": gzip the body with Content-Encoding: gzip (Orthanc >= 1.6.0 on the other side). */
  compress: boolean;
  signal?: AbortSignal;
  /** Bytes of the body handed to the connection so far (after compression). */
  onBytes?: (bytes: number) => void;
}

async function* counted(stream: AsyncIterable<Uint8Array>, onBytes?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of stream) {
    onBytes?.(chunk.length);
    yield chunk;
  }
}

/** POST {Url}instances with one DICOM file, streamed (and gzipped on the fly when asked), as Orthanc's peer store does. */
export async function sendInstanceToPeer(config: GatewayConfig, target: PeerTarget, file: FileStream, options: SendOptions): Promise<void> {
  const headers: Record<string, string> = { 'content-type': 'application/dicom' };
  let source: Readable = file.stream;
  if (options.compress) {
    headers['content-encoding'] = 'gzip';
    // an error of either stream destroys the last one, which aborts the request
    source = pipeline(file.stream, createGzip({ level: 9 }), () => undefined);
  } else if (file.size !== undefined) {
    headers['content-length'] = String(file.size);
  }
  const body = Readable.from(counted(source, options.onBytes));
  try {
    const response = await peerRequest(config, target, { method: 'POST', path: 'instances', headers, body, signal: options.signal });
    // Orthanc's answer ({ID, Status, ...}) is not needed, but reading it ends the exchange
    await readJson(response.body);
  } finally {
    // a request that failed before reading the whole file must not leave it open
    file.stream.destroy();
  }
}
