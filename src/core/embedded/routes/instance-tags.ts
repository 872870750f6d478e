import { Router, type Request, type Response } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { HttpError } from '../../../server/errors';
import { readStoredHeader } from '../stored-header';
import { formatTags, orthancTagKey, sharedTags, tagsFormatOf, toFullTags, type FullTags } from '../orthanc-tags';
import { inModule } from '../dicom-modules';
import { scanDicom, withFileSource } from '../../../dicom/element-scanner';
import { walkElements } from '../../../dicom/raw-elements';
import { isBinaryVr, lookupTag } from '../../../dicom/dictionary';
import { readFileHead } from '../storage-area';

const LEVEL_OF_PATH: Record<string, ResourceLevel> = { patients: 'Patient', studies: 'Study', series: 'Series', instances: 'Instance' };

/** Orthanc's answer for an unknown identifier on these routes. */
function unknownResource(): HttpError {
  return new HttpError(404, 'Unknown resource');
}

async function instanceTags(core: EmbeddedCore, id: string): Promise<FullTags> {
  const header = await readStoredHeader(core.instanceFilePath(id));
  return toFullTags(header.dataset, { withPixelData: header.hasPixelData, raw: header.raw });
}

/** Identifiers of the instances under a resource, in storage order. */
function instancesUnder(core: EmbeddedCore, level: ResourceLevel, id: string): string[] {
  if (level === 'Instance') {
    if (!core.instanceMetadata(id)) throw unknownResource();
    return [id];
  }
  const rows = core.childRows(level, id, 'Instance');
  if (!rows) throw unknownResource();
  return rows.map((row) => row.public_id);
}

function answer(req: Request, res: Response, tags: FullTags): void {
  res.json(formatTags(tags, tagsFormatOf(req.query)));
}

/** GET /instances/{id}/tags|simplified-tags|header, /{level}/{id}/shared-tags|instances-tags|module. */
export function instanceTagRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.get('/instances/:id/tags', async (req, res) => {
    instancesUnder(core, 'Instance', req.params.id);
    answer(req, res, await instanceTags(core, req.params.id));
  });

  router.get('/instances/:id/simplified-tags', async (req, res) => {
    instancesUnder(core, 'Instance', req.params.id);
    res.json(formatTags(await instanceTags(core, req.params.id), 'simplify'));
  });

  router.get('/instances/:id/header', async (req, res) => {
    instancesUnder(core, 'Instance', req.params.id);
    answer(req, res, await fileMetaTags(core.instanceFilePath(req.params.id)));
  });

  for (const [segment, level] of Object.entries(LEVEL_OF_PATH)) {
    router.get(`/${segment}/:id/module`, async (req, res) => {
      const [first] = instancesUnder(core, level, req.params.id);
      answer(req, res, moduleOf(level, first === undefined ? {} : await instanceTags(core, first)));
    });
    if (level === 'Instance') continue;

    router.get(`/${segment}/:id/shared-tags`, async (req, res) => {
      const all: FullTags[] = [];
      for (const id of instancesUnder(core, level, req.params.id)) all.push(await instanceTags(core, id));
      answer(req, res, sharedTags(all));
    });

    router.get(`/${segment}/:id/instances-tags`, async (req, res) => {
      const format = tagsFormatOf(req.query);
      const out: Record<string, unknown> = {};
      // one file at a time: the answer grows, the files are not kept
      for (const id of instancesUnder(core, level, req.params.id)) out[id] = formatTags(await instanceTags(core, id), format);
      res.json(out);
    });
  }

  router.get('/studies/:id/module-patient', async (req, res) => {
    const [first] = instancesUnder(core, 'Study', req.params.id);
    answer(req, res, moduleOf('Patient', first === undefined ? {} : await instanceTags(core, first)));
  });

  return router;
}

/** The file meta group as written (dcmjs drops (0002,0000) and may add (0002,0001)): walked from the bytes. */
async function fileMetaTags(filePath: string): Promise<FullTags> {
  const layout = await withFileSource(filePath, (source) => scanDicom(source));
  const bytes = await readFileHead(filePath, layout.datasetOffset);
  const out: FullTags = {};
  for (const element of walkElements(bytes, { littleEndian: true, explicitVr: true }, 132, layout.datasetOffset)) {
    const value = bytes.subarray(element.offset, element.offset + element.length);
    const Name = lookupTag(element.tag)?.keyword ?? 'Unknown Tag & Data';
    const key = orthancTagKey(element.tag);
    if (element.vr === 'UL' && value.length >= 4) out[key] = { Name, Type: 'String', Value: String(value.readUInt32LE(0)) };
    // Orthanc leaves binary meta elements (0002,0001) out of /header
    else if (isBinaryVr(element.vr) || element.vr === 'UL') continue;
    else out[key] = { Name, Type: 'String', Value: value.toString('utf8').replace(/[\0 ]+$/, '').trim() };
  }
  return out;
}

function moduleOf(level: ResourceLevel, tags: FullTags): FullTags {
  return Object.fromEntries(Object.entries(tags).filter(([key]) => inModule(level, key)));
}
