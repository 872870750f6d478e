import { pipeline } from 'node:stream/promises';
import fs from 'node:fs';
import { Router, type Response } from 'express';
import type { EmbeddedCore, StoredAttachment } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { LEVELS, LEVEL_PATH } from '../../main-dicom-tags';
import { HttpError } from '../../../server/errors';
import { DICOM_CONTENT_TYPE } from '../metadata-types';
import { answeredNotModified, byteOrderedObject, etagOf, ifMatch, namedType, sendText, userNamedType } from './stored-values';

/**
 * What GET /{level}/{id}/attachments/{name} lists: the operations served here. Orthanc 1.10 also lists "compress",
 * "uncompress" (this storage area never compresses) and "uuid" (a route it does not have).
 */
const OPERATIONS = ['compressed-data', 'compressed-md5', 'compressed-size', 'data', 'info', 'is-compressed', 'md5', 'size', 'verify-md5'];

/** Attachments of any level, as Orthanc 1.10: list, read, verify, and PUT/DELETE of user attachments (1024..65535). */
export function resourceAttachmentRoutes(core: EmbeddedCore): Router {
  const router = Router();
  const types = core.contentTypes;

  /** The attachment a URI names, or a 404. */
  const attachment = (level: ResourceLevel, id: string, name: string): StoredAttachment => {
    const type = namedType(types, name, 'attachment');
    const found = core.listAttachments(level, id).find((a) => a.type === type);
    if (!found) throw new HttpError(404, `Unknown attachment: ${name}`);
    return found;
  };

  for (const level of LEVELS) {
    const segment: string = LEVEL_PATH[level];

    router.get(`/${segment}/:id/attachments`, (req, res) => {
      const named = core.listAttachments(level, req.params.id).map((a) => [types.nameOf(a.type), a.type] as const);
      if (req.query.full === undefined) {
        res.json(named.map(([name]) => name));
        return;
      }
      res.json(byteOrderedObject(named));
    });

    // each read answers 304 when If-None-Match names the attachment's current ETag
    const read = (operation: string, answer: (found: StoredAttachment, res: Response) => unknown): void => {
      router.get(`/${segment}/:id/attachments/:name${operation}`, async (req, res) => {
        const found = attachment(level, req.params.id, req.params.name);
        if (answeredNotModified(req, res, etagOf(found.revision, found.md5))) return;
        await answer(found, res);
      });
    };
    read('', (_found, res) => res.json(OPERATIONS));
    const sendData = async (found: StoredAttachment, res: Response): Promise<void> => {
      res.setHeader('Content-Length', String(found.size));
      await pipeline(fs.createReadStream(core.attachmentPath(found)), res);
    };
    read('/data', (found, res) => {
      res.setHeader('Content-Type', types.mimeOf(found.type));
      res.setHeader('Content-Disposition', `filename="${found.uuid}${found.type === DICOM_CONTENT_TYPE ? '.dcm' : ''}"`);
      return sendData(found, res);
    });
    // the bytes as stored (never compressed here), typed and named as Orthanc does for stored bytes
    read('/compressed-data', (found, res) => {
      res.setHeader('Content-Type', 'application/octet-stream');
      return sendData(found, res);
    });
    for (const operation of ['size', 'compressed-size']) read(`/${operation}`, (found, res) => sendText(res, String(found.size)));
    for (const operation of ['md5', 'compressed-md5']) read(`/${operation}`, (found, res) => sendText(res, found.md5));
    read('/is-compressed', (_found, res) => sendText(res, '0'));
    read('/info', (found, res) =>
      res.json({
        CompressedMD5: found.md5,
        CompressedSize: found.size,
        ContentType: found.type,
        UncompressedMD5: found.md5,
        UncompressedSize: found.size,
        Uuid: found.uuid,
      }),
    );

    router.post(`/${segment}/:id/attachments/:name/verify-md5`, async (req, res) => {
      if (!(await core.verifyAttachment(attachment(level, req.params.id, req.params.name)))) throw new HttpError(500, 'Corrupted file (e.g. inconsistent MD5 hash)');
      res.json({});
    });

    router.put(`/${segment}/:id/attachments/:name`, async (req, res) => {
      const type = userNamedType(types, req.params.name, 'attachment');
      const stored = await core.putAttachment(level, req.params.id, type, req, ifMatch(req));
      res.setHeader('ETag', etagOf(stored.revision, stored.md5));
      res.json({});
    });

    router.delete(`/${segment}/:id/attachments/:name`, async (req, res) => {
      const type = userNamedType(types, req.params.name, 'attachment');
      await core.deleteAttachment(level, req.params.id, type, ifMatch(req));
      sendText(res, '');
    });
  }
  return router;
}
