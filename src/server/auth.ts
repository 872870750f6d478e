import type { RequestHandler } from 'express';
import { timingSafeEqual, createHash } from 'node:crypto';
import { errorBody } from './errors';

export interface Credentials {
  /** RegisteredUsers: user name -> password (HTTP Basic). */
  users: Record<string, string>;
  /** BearerTokens: accepted as "Authorization: Bearer <token>" (machine clients). */
  tokens: readonly string[];
}

/**
 * Authentication when AuthenticationEnabled is true: HTTP Basic against RegisteredUsers, as Orthanc does,
 * plus our static bearer tokens. Secrets are compared in constant time (on their SHA-256, so lengths leak
 * nothing either) and never logged: the request log carries no header.
 */
export function authenticate(credentials: Credentials, realm: string): RequestHandler {
  const expected = new Map(Object.entries(credentials.users).map(([user, password]) => [user, sha256(password)]));
  const tokens = credentials.tokens.map(sha256);
  // the Bearer challenge is only offered where tokens can succeed
  const challenges = [`Basic realm="${realm}"`, ...(tokens.length > 0 ? [`Bearer realm="${realm}"`] : [])];
  return (req, res, next) => {
    if (req.method === 'OPTIONS') {
      next();
      return;
    }
    const header = req.headers.authorization;
    const basic = parseBasic(header);
    const hash = basic && expected.get(basic.user);
    const bearer = parseBearer(header);
    if ((basic && hash && timingSafeEqual(hash, sha256(basic.password))) || (bearer !== undefined && matchesAny(tokens, sha256(bearer)))) {
      next();
      return;
    }
    res.setHeader('WWW-Authenticate', challenges);
    res.status(401).json(errorBody(req, 401, 'Authentication is required'));
  };
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Compares with every token, without stopping at a match: the time does not tell which one matched. */
function matchesAny(tokens: readonly Buffer[], hash: Buffer): boolean {
  let found = false;
  for (const token of tokens) found = timingSafeEqual(token, hash) || found;
  return found;
}

export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The token of "Bearer <token>" (RFC 6750 §2.1), or undefined. */
export function parseBearer(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^bearer +([^\s]+) *$/i.exec(header);
  return match ? match[1] : undefined;
}
