/** What the metadata and attachment routes share: names and numbers, Orthanc's revisions (ETag, If-Match), text answers. */
import type { Request, Response } from 'express';
import { HttpError } from '../../../server/errors';
import { isUserType, type Revision } from '../metadata-types';

interface TypeNames {
  typeOf(name: string): number | undefined;
}

/** The type a name or number designates; an unknown name is Orthanc's "inexistent item" (404). */
export function namedType(types: TypeNames, name: string, kind: 'metadata' | 'attachment'): number {
  const type = types.typeOf(name);
  if (type === undefined) throw new HttpError(404, 'Accessing an inexistent item', `Unknown ${kind}: ${name}`);
  return type;
}

/** Only user types (1024..65535) may be written or deleted: the others are Orthanc's own (403). */
export function userNamedType(types: TypeNames, name: string, kind: 'metadata' | 'attachment'): number {
  const type = namedType(types, name, kind);
  if (!isUserType(type)) throw new HttpError(403, `"${name}" is not a user ${kind} and cannot be modified`);
  return type;
}

/** A JSON object with its keys in byte order, as Orthanc writes them (`?expand`, `?full`). */
export function byteOrderedObject<T>(entries: ReadonlyArray<readonly [string, T]>): Record<string, T> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Orthanc's ETag of a metadata or attachment (1.9.2+): its revision and the MD5 of its content. */
export function etagOf(revision: number, md5: string): string {
  return `"${revision}-${md5}"`;
}

/** If-Match as Orthanc 1.10 reads it ("revision-md5", quotes optional): undefined when absent, 400 when malformed. */
export function ifMatch(req: Request): Revision | undefined {
  const header = req.headers['if-match'];
  if (header === undefined) return undefined;
  const match = /^"?(\d{1,15})-([^"]*)"?$/.exec(header.trim());
  if (!match) {
    throw new HttpError(400, 'Parameter out of range', `The "if-match" HTTP header should contain the ETag (revision followed by MD5 hash), but found: ${header}`);
  }
  return { revision: Number(match[1]), md5: match[2] };
}

/** Sets the ETag; when If-None-Match names it, answers 304 and returns true (the caller sends nothing more). */
export function answeredNotModified(req: Request, res: Response, etag: string): boolean {
  res.setHeader('ETag', etag);
  const header = req.headers['if-none-match'];
  if (header === undefined || !header.split(',').some((tag) => [tag.trim(), `"${tag.trim()}"`].includes(etag))) return false;
  res.status(304).end();
  return true;
}

/** A text/plain answer without the charset Express would add (Orthanc sends a bare "text/plain"). */
export function sendText(res: Response, text: string): void {
  const body = Buffer.from(text, 'utf8');
  res.setHeader('Content-Type', 'text/plain');
  res.setHeader('Content-Length', String(body.length));
  res.end(body);
}
