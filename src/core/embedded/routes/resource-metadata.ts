import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { LEVELS, LEVEL_PATH } from '../../main-dicom-tags';
import { HttpError } from '../../../server/errors';
import { md5Of } from '../metadata-types';
import { anyBodyAsText } from './tools';
import { answeredNotModified, byteOrderedObject, etagOf, ifMatch, namedType, sendText, userNamedType } from './stored-values';

/** GET /{level}/{id}/metadata[?expand], GET|PUT|DELETE /{level}/{id}/metadata/{name}, as Orthanc 1.10 (revisions in ETag/If-Match). */
export function resourceMetadataRoutes(core: EmbeddedCore): Router {
  const router = Router();
  const types = core.metadataTypes;

  for (const level of LEVELS) {
    const segment: string = LEVEL_PATH[level];

    router.get(`/${segment}/:id/metadata`, (req, res) => {
      const named = core.listMetadata(level, req.params.id).map((m) => [types.nameOf(m.type), m.value] as const);
      if (req.query.expand === undefined) {
        res.json(named.map(([name]) => name));
        return;
      }
      res.json(byteOrderedObject(named));
    });

    router.get(`/${segment}/:id/metadata/:name`, (req, res) => {
      const type = namedType(types, req.params.name, 'metadata');
      const found = core.listMetadata(level, req.params.id).find((m) => m.type === type);
      if (!found) throw new HttpError(404, `Unknown metadata: ${req.params.name}`);
      if (answeredNotModified(req, res, etagOf(found.revision, md5Of(found.value)))) return;
      sendText(res, found.value);
    });

    router.put(`/${segment}/:id/metadata/:name`, anyBodyAsText, (req, res) => {
      const type = userNamedType(types, req.params.name, 'metadata');
      const value = typeof req.body === 'string' ? req.body : '';
      const revision = core.setMetadata(level, req.params.id, type, value, ifMatch(req));
      res.setHeader('ETag', etagOf(revision, md5Of(value)));
      sendText(res, '');
    });

    router.delete(`/${segment}/:id/metadata/:name`, (req, res) => {
      const type = userNamedType(types, req.params.name, 'metadata');
      core.deleteMetadata(level, req.params.id, type, ifMatch(req));
      sendText(res, '');
    });
  }
  return router;
}
