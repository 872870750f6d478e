import type { RequestHandler } from 'express';
import { timingSafeEqual, createHash } from 'node:crypto';
import { errorBody } from './errors';

/**
 * HTTP Basic authentication against RegisteredUsers, as Orthanc does when AuthenticationEnabled is true.
 * Passwords are compared in constant time (on their SHA-256, so lengths leak nothing either).
 */
export function basicAuth(users: Record<string, string>, realm: string): RequestHandler {
  const expected = new Map(Object.entries(users).map(([user, password]) => [user, sha256(password)]));
  return (req, res, next) => {
    if (req.method === 'OPTIONS') {
      next();
      return;
    }
    const credentials = parseBasic(req.headers.authorization);
    const hash = credentials && expected.get(credentials.user);
    if (credentials && hash && timingSafeEqual(hash, sha256(credentials.password))) {
      next();
      return;
    }
    res.setHeader('WWW-Authenticate', `Basic realm="${realm}"`);
    res.status(401).json(errorBody(req, 401, 'Authentication is required'));
  };
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
