/**
 * The Orthanc peers known at run time: those of "OrthancPeers", then what PUT/DELETE /peers change.
 * Kept in memory only, as Orthanc does when "OrthancPeersInDatabase" is false.
 */
import type { OrthancPeerConfig } from '../../../config/gateway-config';
import { ConfigError, parsePeerDefinition } from '../../../config/load-config';
import { HttpError } from '../../../server/errors';

export class PeerRegistry {
  private readonly peers: Map<string, OrthancPeerConfig>;

  constructor(initial: Readonly<Record<string, OrthancPeerConfig>>) {
    this.peers = new Map(Object.entries(initial));
  }

  /** Sorted, as Orthanc lists them. */
  names(): string[] {
    return [...this.peers.keys()].sort();
  }

  /** The peer, or Orthanc's 404 for an unknown name. */
  require(name: string): OrthancPeerConfig {
    const peer = this.peers.get(name);
    if (!peer) throw new HttpError(404, 'Unknown resource', `No peer with symbolic name: ${name}`);
    return peer;
  }

  /** PUT /peers/{name}: the body as an "OrthancPeers" entry ([url], [url, user, password] or the object form). */
  define(name: string, body: unknown): void {
    try {
      this.peers.set(name, parsePeerDefinition(name, body, 'the body of PUT /peers/{name}'));
    } catch (error) {
      if (error instanceof ConfigError) throw new HttpError(400, 'Bad file format', error.message);
      throw error;
    }
  }

  delete(name: string): void {
    if (!this.peers.delete(name)) throw new HttpError(404, 'Accessing an inexistent item', `Unknown Orthanc peer: ${name}`);
  }
}

const sortedNames = (record: Record<string, unknown>): string[] => Object.keys(record).sort();

/**
 * Orthanc's public view of a peer (GET /peers?expand, /peers/{name}/configuration): secrets (password, key file and
 * password, header values) are null or left out.
 */
export function publicPeerJson(peer: OrthancPeerConfig): Record<string, unknown> {
  return {
    Url: peer.url,
    ...(peer.username !== undefined ? { Username: peer.username, Password: null } : {}),
    ...(peer.certificateFile !== undefined ? { CertificateFile: peer.certificateFile, CertificateKeyFile: null, CertificateKeyPassword: null } : {}),
    HttpHeaders: sortedNames(peer.httpHeaders),
    Pkcs11: false,
    Timeout: peer.timeout ?? 0,
    ...peer.userProperties,
  };
}

/**
 * The "Peer" of a store job's Content, as Orthanc serialises it without passwords: [url] or [url, user, ""] when
 * nothing else is set, else the object form. Orthanc also shows the values of the HTTP headers there; we show null
 * (they often carry tokens and /jobs is readable by every user).
 */
export function jobPeerJson(peer: OrthancPeerConfig): unknown {
  const advanced =
    peer.certificateFile !== undefined ||
    peer.certificateKeyFile !== undefined ||
    peer.certificateKeyPassword !== undefined ||
    Object.keys(peer.httpHeaders).length > 0 ||
    Object.keys(peer.userProperties ?? {}).length > 0 ||
    (peer.timeout ?? 0) !== 0;
  if (!advanced) return peer.username === undefined ? [peer.url] : [peer.url, peer.username, ''];
  return {
    Url: peer.url,
    ...(peer.username !== undefined ? { Username: peer.username } : {}),
    ...(peer.certificateFile !== undefined ? { CertificateFile: peer.certificateFile } : {}),
    ...(peer.certificateKeyFile !== undefined ? { CertificateKeyFile: peer.certificateKeyFile } : {}),
    Pkcs11: false,
    Timeout: peer.timeout ?? 0,
    HttpHeaders: Object.fromEntries(sortedNames(peer.httpHeaders).map((name) => [name, null])),
    ...peer.userProperties,
  };
}
