import express, { Router, type Request } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import type { FindRequest, ResourceLevel } from '../../native-model';
import { LEVELS } from '../../main-dicom-tags';
import { isOrthancId } from '../../orthanc-ids';
import { HttpError } from '../../../server/errors';
import { checkLabel } from './resource-labels';
import { toolsSystemRoutes } from './tools-system';
import { createDicomRoutes } from './tools-create-dicom';

/** Orthanc reads request bodies as JSON whatever their Content-Type (curl -d sends form-urlencoded). */
export const anyBodyAsText = express.text({ type: () => true, limit: '16mb' });

export function jsonBody(req: Request): unknown {
  const text = typeof req.body === 'string' ? req.body : '';
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'The request body is not valid JSON', (error as Error).message);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the body of /tools/find (and /tools/count-resources) into a FindRequest. */
export function parseFindRequest(body: unknown): FindRequest {
  if (!isObject(body)) throw new HttpError(400, 'The body of /tools/find must be a JSON object');
  const level = typeof body.Level === 'string' ? (body.Level.charAt(0).toUpperCase() + body.Level.slice(1).toLowerCase()) : '';
  if (!LEVELS.includes(level as ResourceLevel)) {
    throw new HttpError(400, 'Field "Level" must be one of Patient, Study, Series, Instance');
  }
  const query = body.Query ?? {};
  if (!isObject(query) || !Object.values(query).every((v) => typeof v === 'string')) {
    throw new HttpError(400, 'Field "Query" must be an object whose values are strings');
  }
  const optionalCount = (name: string): number | undefined => {
    const value = body[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new HttpError(400, `Field "${name}" must be a non-negative integer`);
    return value;
  };
  const optionalStrings = (name: string): string[] | undefined => {
    const value = body[name];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new HttpError(400, `Field "${name}" must be a list of strings`);
    return value as string[];
  };
  const constraint = body.LabelsConstraint;
  if (constraint !== undefined && constraint !== 'All' && constraint !== 'Any' && constraint !== 'None') {
    throw new HttpError(400, 'Field "LabelsConstraint" must be All, Any or None');
  }
  return {
    Level: level as ResourceLevel,
    Query: query as Record<string, string>,
    Expand: body.Expand === true,
    Limit: optionalCount('Limit'),
    Since: optionalCount('Since'),
    CaseSensitive: typeof body.CaseSensitive === 'boolean' ? body.CaseSensitive : undefined,
    RequestedTags: optionalStrings('RequestedTags'),
    Labels: optionalStrings('Labels')?.map(checkLabel),
    LabelsConstraint: constraint,
  };
}

/** POST /tools/find, /tools/count-resources, /tools/lookup, /tools/bulk-delete, /tools/create-dicom, and the small helpers. */
export function toolRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.post('/tools/find', anyBodyAsText, async (req, res) => {
    const request = parseFindRequest(jsonBody(req));
    res.json(request.Expand ? await core.find(request) : await core.findIds(request));
  });

  router.post('/tools/count-resources', anyBodyAsText, async (req, res) => {
    const request = parseFindRequest(jsonBody(req));
    res.json({ Count: (await core.findIds({ ...request, Limit: undefined, Since: undefined })).length });
  });

  router.post('/tools/lookup', anyBodyAsText, async (req, res) => {
    const uid = (typeof req.body === 'string' ? req.body : '').trim();
    if (uid === '') throw new HttpError(400, 'The body of /tools/lookup must be a DICOM identifier');
    res.json(await core.lookup(uid));
  });

  router.post('/tools/bulk-delete', anyBodyAsText, async (req, res) => {
    const body = jsonBody(req);
    const resources = isObject(body) ? body.Resources : undefined;
    if (!Array.isArray(resources) || !resources.every((r) => typeof r === 'string' && isOrthancId(r))) {
      throw new HttpError(400, 'Field "Resources" must be a list of Orthanc identifiers');
    }
    for (const id of resources as string[]) {
      // identifiers are unique across levels; an unknown one (or a child deleted with its parent) is skipped
      for (const level of LEVELS) if (await core.deleteResource(level, id)) break;
    }
    res.json({});
  });

  router.use(createDicomRoutes(core));
  router.use(toolsSystemRoutes());
  return router;
}
