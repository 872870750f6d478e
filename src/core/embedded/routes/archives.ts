import fs from 'node:fs';
import { Router, type Response } from 'express';
import archiver from 'archiver';
import type { EmbeddedCore } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { HttpError } from '../../../server/errors';
import { anyBodyAsText } from './tools';

type Row = NonNullable<ReturnType<EmbeddedCore['ancestorRow']>>;
const LEVEL_OF_PATH: Record<string, ResourceLevel> = { patients: 'Patient', studies: 'Study', series: 'Series' };
const ALL_LEVELS: ResourceLevel[] = ['Patient', 'Study', 'Series', 'Instance'];

/** Orthanc's HierarchicalZipWriter: '^' is a space, keep ASCII letters, digits, '.', '_' and single spaces. */
export function keepAlphanumeric(source: string): string {
  let out = '';
  let lastSpace = false;
  for (const raw of source) {
    const c = raw === '^' ? ' ' : raw;
    if (c.charCodeAt(0) > 127) continue;
    if (/\s/.test(c)) {
      if (!lastSpace) out += ' ';
      lastSpace = true;
    } else if (/[A-Za-z0-9._]/.test(c)) {
      out += c;
      lastSpace = false;
    }
  }
  return out.trim();
}

/** Names already used in one folder; a repeated name gets "-2", "-3"... as in Orthanc. */
class Folder {
  private readonly used = new Map<string, number>();
  unique(name: string): string {
    const clean = keepAlphanumeric(name);
    const count = (this.used.get(clean) ?? 0) + 1;
    this.used.set(clean, count);
    return count === 1 ? clean : `${clean}-${count}`;
  }
}

function folderName(level: ResourceLevel, tags: Record<string, string>): string {
  const get = (name: string): string => tags[name] ?? '';
  const text =
    level === 'Patient' ? `${get('PatientID')} ${get('PatientName')}`
    : level === 'Study' ? `${get('AccessionNumber')} ${get('StudyDescription')}`
    : `${get('Modality')} ${get('SeriesDescription')}`;
  // Orthanc drops non-ASCII characters before the clean-up
  const ascii = text.replace(/[^\x20-\x7e]/g, '').trim();
  return ascii === '' ? `Unknown ${level}` : ascii;
}

/** "MR%06d.dcm": the first two letters of the modality and a counter of the series. */
function instanceName(modality: string, counter: number): string {
  const prefix = modality.slice(0, 2).toUpperCase();
  return `${prefix}${String(counter).padStart(8 - prefix.length, '0')}.dcm`;
}

interface Node {
  row: Row;
  children: Map<string, Node>;
}

/** The tree patient → study → series → instances holding the requested resources. */
function buildTree(core: EmbeddedCore, resources: Array<[ResourceLevel, string]>): Map<string, Node> {
  const roots = new Map<string, Node>();
  for (const [level, id] of resources) {
    const instanceRow = level === 'Instance' ? core.instanceRow(id) : undefined;
    const rows = level === 'Instance' ? (instanceRow ? [instanceRow] : undefined) : core.childRows(level, id, 'Instance');
    if (!rows) throw new HttpError(404, 'Unknown resource');
    for (const instance of rows) {
      const chain: Row[] = ALL_LEVELS.slice(0, 3).map((ancestor) => core.ancestorRow('Instance', instance.public_id, ancestor) as Row);
      chain.push(instance);
      let nodes = roots;
      for (const row of chain) {
        let node = nodes.get(row.public_id);
        if (!node) nodes.set(row.public_id, (node = { row, children: new Map() }));
        nodes = node.children;
      }
    }
  }
  return roots;
}

function byPublicId(nodes: Map<string, Node>): Node[] {
  return [...nodes.values()].sort((a, b) => (a.row.public_id < b.row.public_id ? -1 : a.row.public_id > b.row.public_id ? 1 : 0));
}

/** Streams the ZIP: each file is read from disk while it is written, nothing is buffered whole. */
function streamArchive(core: EmbeddedCore, res: Response, roots: Map<string, Node>, filename: string): void {
  const archive = archiver('zip', { comment: 'Created by Orthanc', zlib: { level: 6 } });
  res.setHeader('Content-Type', 'application/zip');
  res.setHeader('Content-Disposition', `filename="${filename}"`);
  archive.on('warning', () => undefined);
  archive.on('error', () => res.destroy());
  archive.pipe(res);
  const top = new Folder();
  for (const patient of byPublicId(roots)) {
    const patientDir = top.unique(folderName('Patient', core.toResource(patient.row).MainDicomTags));
    const studies = new Folder();
    for (const study of byPublicId(patient.children)) {
      const studyDir = studies.unique(folderName('Study', core.toResource(study.row).MainDicomTags));
      const seriesFolder = new Folder();
      for (const series of byPublicId(study.children)) {
        const tags = core.toResource(series.row).MainDicomTags;
        const seriesDir = seriesFolder.unique(folderName('Series', tags));
        const files = new Folder();
        // instances in the order they were stored, as Orthanc lists a series' children
        const instances = [...series.children.values()].sort((a, b) => a.row.internal_id - b.row.internal_id);
        instances.forEach((instance, counter) => {
          const name = files.unique(instanceName(tags.Modality ?? '', counter));
          const stream = fs.createReadStream(core.instanceFilePath(instance.row.public_id));
          archive.append(stream, { name: `${patientDir}/${studyDir}/${seriesDir}/${name}` });
        });
      }
    }
  }
  void archive.finalize();
}

function parseResources(body: unknown): string[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'Bad file format', 'Expected a list of resources to archive in the body');
  }
  const resources = (body as { Resources?: unknown }).Resources;
  if (resources === undefined) throw new HttpError(400, 'Bad file format', 'Missing field Resources in the JSON body');
  if (!Array.isArray(resources) || !resources.every((r) => typeof r === 'string')) {
    throw new HttpError(400, 'Bad file format', 'Resources must be a list of identifiers');
  }
  return resources as string[];
}

/** GET/POST /{patients|studies|series}/{id}/archive and POST /tools/create-archive. */
export function archiveRoutes(core: EmbeddedCore): Router {
  const router = Router();
  for (const [segment, level] of Object.entries(LEVEL_OF_PATH)) {
    const handler = (req: { params: { id: string } }, res: Response): void => {
      const roots = buildTree(core, [[level, req.params.id]]);
      streamArchive(core, res, roots, `${req.params.id}.zip`);
    };
    router.get(`/${segment}/:id/archive`, handler);
    router.post(`/${segment}/:id/archive`, handler);
  }
  router.post('/tools/create-archive', anyBodyAsText, (req, res) => {
    const ids = parseResources(parseBody(req.body));
    const resources: Array<[ResourceLevel, string]> = ids.map((id) => {
      const level = core.levelOfResource(id);
      if (!level) throw new HttpError(404, 'Unknown resource');
      return [level, id];
    });
    streamArchive(core, res, buildTree(core, resources), 'Archive.zip');
  });
  return router;
}

/** The body as JSON whatever its Content-Type (curl sends form-urlencoded by default). */
function parseBody(body: unknown): unknown {
  if (Buffer.isBuffer(body)) body = body.toString('utf8');
  if (typeof body !== 'string') return body;
  try {
    return JSON.parse(body);
  } catch {
    throw new HttpError(400, 'Bad file format', 'Expected a list of resources to archive in the body');
  }
}
