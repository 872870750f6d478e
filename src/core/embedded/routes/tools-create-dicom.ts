import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import type { StoreResult } from '../../native-model';
import { createDicom, CreateDicomError, type CreatedDicom, type CreateDicomParent, type ParentLevel } from '../../../dicom/create-dicom';
import { normalizeTag } from '../../../dicom/dictionary';
import { HttpError } from '../../../server/errors';
import { inModule } from '../dicom-modules';
import { toFullTags } from '../orthanc-tags';
import { readStoredHeader } from '../stored-header';
import { anyBodyAsText, jsonBody } from './tools';

const PARENT_LEVELS: Readonly<Record<ParentLevel, readonly ParentLevel[]>> = {
  Patient: ['Patient'],
  Study: ['Study', 'Patient'],
  Series: ['Series', 'Study', 'Patient'],
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optional<T>(body: Record<string, unknown>, name: string, type: 'boolean' | 'string', fallback: T): T {
  const value = body[name];
  if (value === undefined) return fallback;
  if (typeof value !== type) throw new HttpError(400, 'Bad request', `Field "${name}" must be a ${type}`);
  return value as T;
}

/**
 * The module values of the parent's levels, read from one of its instances (Orthanc copies the string and
 * empty values, not sequences), and that instance's Specific Character Set.
 */
async function parentOf(core: EmbeddedCore, id: string): Promise<{ parent: CreateDicomParent; characterSet?: string }> {
  const level = core.levelOfResource(id);
  if (level === undefined) throw new HttpError(400, 'Trying to attach a new DICOM instance to an inexistent resource', id);
  if (level === 'Instance') {
    throw new HttpError(400, 'Trying to attach a new DICOM instance to an instance (must be a series, study or patient)', id);
  }
  const [sibling] = core.childRows(level, id, 'Instance') ?? [];
  if (!sibling) throw new HttpError(404, 'Unknown resource', id);
  const header = await readStoredHeader(core.instanceFilePath(sibling.public_id));
  const tags = toFullTags(header.dataset);
  const values: Record<string, string> = {};
  for (const [key, tag] of Object.entries(tags)) {
    if (!PARENT_LEVELS[level].some((l) => inModule(l, key))) continue;
    if (tag.Type === 'String' && typeof tag.Value === 'string') values[normalizeTag(key) as string] = tag.Value;
    else if (tag.Type === 'Null') values[normalizeTag(key) as string] = '';
  }
  const characterSet = tags['0008,0005']?.Type === 'String' ? (tags['0008,0005'].Value as string) : undefined;
  return { parent: { level, values }, characterSet };
}

/** POST /tools/create-dicom: a new instance (or a series of them) from JSON tags and a data URI content. */
export function createDicomRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.post('/tools/create-dicom', anyBodyAsText, async (req, res) => {
    let body: unknown;
    try {
      body = jsonBody(req);
    } catch {
      throw new HttpError(400, 'Bad request', 'The body must be a JSON object');
    }
    // Orthanc <= 0.9.3 took the tags at the top level; that form is not supported here
    if (!isObject(body) || !isObject(body.Tags)) throw new HttpError(400, 'Bad request', 'Field "Tags" must be a JSON object');
    if (body.PrivateCreator !== undefined && typeof body.PrivateCreator !== 'string') {
      throw new HttpError(400, 'Bad request', 'Field "PrivateCreator" must be a string');
    }
    if (body.Parent !== undefined && typeof body.Parent !== 'string') throw new HttpError(400, 'Bad request', 'Field "Parent" must be a string');
    const parent = typeof body.Parent === 'string' ? await parentOf(core, body.Parent) : undefined;

    let created: CreatedDicom;
    try {
      created = await createDicom({
        tags: body.Tags,
        content: body.Content,
        parent: parent?.parent,
        parentCharacterSet: parent?.characterSet,
        interpretBinaryTags: optional(body, 'InterpretBinaryTags', 'boolean', true),
        force: optional(body, 'Force', 'boolean', false),
      });
    } catch (error) {
      if (error instanceof CreateDicomError) throw new HttpError(error.status, error.message, error.details);
      throw error;
    }

    const stored: StoreResult[] = [];
    try {
      for (const file of created.files) stored.push(await core.storeInstance({ buffer: file }));
    } catch (error) {
      // as Orthanc: a series that could not be stored whole is removed
      if (stored.length > 0) await core.deleteResource('Series', stored[0].ParentSeries);
      throw error;
    }
    if (!created.series) {
      res.json(stored[0]);
      return;
    }
    const series = stored[0].ParentSeries;
    res.json({ ID: series, Path: `/series/${series}`, Status: 'Success' });
  });

  return router;
}
