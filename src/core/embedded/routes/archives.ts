/**
 * Archives of the embedded core, as Orthanc 1.10: GET/POST /{patients|studies|series}/{id}/archive and
 * /media, POST /tools/create-archive, /tools/create-media and /tools/create-media-extended.
 *
 * - archive: a ZIP with Orthanc's folders ("PatientID PatientName/Accession Description/Modality
 *   Description/MR000000.dcm"); media: the files as IMAGES/IM0, IM1... and a DICOMDIR (dicomdir.ts).
 * - Streamed: one instance file at a time goes through the ZIP writer, so memory stays flat whatever
 *   the size of the archive; only the DICOMDIR records (a few hundred bytes per instance) are kept.
 * - `Transcode` (POST) / `?transcode=` (GET): each file is transcoded when the codecs can, else it is
 *   archived as stored (as Orthanc does when its transcoder fails).
 * - "Synchronous": false or "Asynchronous": true: a job ("Archive" / "Media") writes the ZIP to a temporary
 *   file, downloaded at /jobs/{id}/archive. As Orthanc (MediaArchiveSize 1), only the newest such ZIP is
 *   kept: an older job's output is then gone (404).
 * - `?filename=` on GET names the download (Orthanc 1.11; Orthanc 1.10.1 ignores it).
 * Synchronous archives are not listed in /jobs (Orthanc runs them as jobs too).
 */
import fs from 'node:fs';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import archiver from 'archiver';
import type { EmbeddedCore } from '../embedded-core';
import { CoreError, type ResourceLevel } from '../../native-model';
import { HttpError } from '../../../server/errors';
import { isAsynchronous, jobsOf, priorityOf, submitJob, type JobContext, type JobOutput, type JobWork } from '../../../server/jobs';
import { readDataset } from '../../../dicom/dataset-reader';
import type { DicomDataset } from '../../../dicom/dicom-file';
import { DicomDirBuilder } from '../../../dicom/dicomdir';
import { TS } from '../../../dicom/transfer-syntax';
import { readStoredHeader } from '../stored-header';
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

/** One file of the ZIP. */
interface Entry {
  /** Path in the ZIP ("IMAGES/IM0", "P Name/Study/MR T1/MR000000.dcm"). */
  name: string;
  instanceId: string;
  /** Size of the stored file (Orthanc's UncompressedSize counts these). */
  size: number;
}

function sortedChildren(nodes: Map<string, Node>): Node[] {
  return [...nodes.values()].sort((a, b) => (a.row.public_id < b.row.public_id ? -1 : a.row.public_id > b.row.public_id ? 1 : 0));
}

/** Instances of a series in the order they were stored, as Orthanc lists a series' children. */
function instancesOf(series: Node): Node[] {
  return [...series.children.values()].sort((a, b) => a.row.internal_id - b.row.internal_id);
}

/** Patients, studies and series in identifier order, as Orthanc walks its archive index, with their folders. */
function* walkSeries(core: EmbeddedCore, roots: Map<string, Node>): Generator<{ path: string[]; series: Node }> {
  const top = new Folder();
  for (const patient of sortedChildren(roots)) {
    const patientDir = top.unique(folderName('Patient', core.toResource(patient.row).MainDicomTags));
    const studies = new Folder();
    for (const study of sortedChildren(patient.children)) {
      const studyDir = studies.unique(folderName('Study', core.toResource(study.row).MainDicomTags));
      const seriesFolder = new Folder();
      for (const series of sortedChildren(study.children)) {
        yield { path: [patientDir, studyDir, seriesFolder.unique(folderName('Series', core.toResource(series.row).MainDicomTags))], series };
      }
    }
  }
}

function sizeOf(core: EmbeddedCore, instance: Node): number {
  const resource = core.toResource(instance.row);
  return 'FileSize' in resource ? resource.FileSize : 0;
}

/** The entries of an archive: Orthanc's folders and "MR000000.dcm" names. */
function archiveEntries(core: EmbeddedCore, roots: Map<string, Node>): Entry[] {
  const entries: Entry[] = [];
  for (const { path, series } of walkSeries(core, roots)) {
    const modality = core.toResource(series.row).MainDicomTags.Modality ?? '';
    const files = new Folder();
    instancesOf(series).forEach((instance, counter) => {
      const name = files.unique(instanceName(modality, counter));
      entries.push({ name: [...path, name].join('/'), instanceId: instance.row.public_id, size: sizeOf(core, instance) });
    });
  }
  return entries;
}

/** The entries of a media: IMAGES/IM0, IM1... in the archive's order (8-character names, as PS3.10 asks). */
function mediaEntries(core: EmbeddedCore, roots: Map<string, Node>): Entry[] {
  const entries: Entry[] = [];
  for (const { series } of walkSeries(core, roots)) {
    for (const instance of instancesOf(series)) {
      entries.push({ name: `IMAGES/IM${entries.length}`, instanceId: instance.row.public_id, size: sizeOf(core, instance) });
    }
  }
  return entries;
}

interface ArchiveRequest {
  resources: Array<[ResourceLevel, string]>;
  media: boolean;
  extended: boolean;
  transcode?: string;
}

interface ZipSummary {
  instancesCount: number;
  uncompressedSize: number;
  archiveSize: number;
}

/** What is written for one entry: the file's bytes, and its header when a DICOMDIR record needs it. */
interface EntryContent {
  data: Readable | Buffer;
  header?: { dataset: DicomDataset; transferSyntax: string };
}

const FILE_CHUNK_BYTES = 1 << 20;

/** The file of an entry (transcoded when asked and possible); undefined when the instance is gone. */
async function entryContent(core: EmbeddedCore, entry: Entry, request: ArchiveRequest): Promise<EntryContent | undefined> {
  let path: string;
  try {
    path = core.instanceFilePath(entry.instanceId);
  } catch (error) {
    // deleted since the request: Orthanc skips it too
    if (error instanceof CoreError && error.httpStatus === 404) return undefined;
    throw error;
  }
  if (request.transcode) {
    try {
      const file = await core.readInstanceFile(entry.instanceId, { transcode: request.transcode });
      // one instance in memory at a time: transcoding holds it whole anyway
      const bytes = Buffer.concat((await file.stream.toArray()) as Buffer[]);
      if (!request.media) return { data: bytes };
      const { dataset, transferSyntax } = readDataset(bytes, { complete: true, stopAtPixelData: true });
      return { data: bytes, header: { dataset, transferSyntax } };
    } catch (error) {
      if (!(error instanceof CoreError && error.httpStatus === 415)) throw error;
      // the codecs cannot: archived as stored, as Orthanc does
    }
  }
  const header = request.media ? await readStoredHeader(path) : undefined;
  return { data: fs.createReadStream(path, { highWaterMark: FILE_CHUNK_BYTES }), header };
}

/**
 * Writes the ZIP into `output`, one entry at a time (the next file is opened once the previous one is
 * written), and the DICOMDIR last for a media. Rejects, after stopping the ZIP, when `output` closes early
 * or `signal` aborts.
 */
async function writeZip(
  core: EmbeddedCore,
  request: ArchiveRequest,
  entries: Entry[],
  output: Writable,
  options: { signal?: AbortSignal; onEntry?(done: number, summary: ZipSummary): void } = {},
): Promise<ZipSummary> {
  const archive = archiver('zip', { comment: 'Created by Orthanc', zlib: { level: 6 } });
  const summary = summaryOf(entries);
  let finished = false;
  output.once('finish', () => (finished = true));
  const stopped = new Promise<never>((_, reject) => {
    const stop = (reason: string): void => {
      if (finished) return;
      archive.abort();
      reject(new Error(reason));
    };
    archive.on('error', (error) => stop(error.message));
    output.once('close', () => stop('The client has disconnected while the archive was written'));
    output.once('error', (error) => stop(error.message));
    options.signal?.addEventListener('abort', () => stop('Canceled'), { once: true });
  });
  stopped.catch(() => undefined);
  archive.on('warning', () => undefined);
  archive.pipe(output);
  const dicomdir = request.media ? new DicomDirBuilder({ extended: request.extended }) : undefined;
  let content: EntryContent | undefined;
  try {
    for (const [done, entry] of entries.entries()) {
      content = await Promise.race([entryContent(core, entry, request), stopped]);
      if (content) {
        const written = once(archive, 'entry');
        archive.append(content.data, { name: entry.name });
        await Promise.race([written, stopped]);
        if (dicomdir && content.header) dicomdir.add({ fileId: entry.name.split('/'), ...content.header });
      }
      summary.archiveSize = archive.pointer();
      options.onEntry?.(done + 1, summary);
    }
    if (dicomdir) archive.append(dicomdir.encode(), { name: 'DICOMDIR' });
    const flushed = once(output, 'finish');
    await Promise.race([archive.finalize(), stopped]);
    await Promise.race([flushed, stopped]);
  } catch (error) {
    archive.unpipe(output);
    archive.abort();
    if (content && !Buffer.isBuffer(content.data)) content.data.destroy();
    throw error;
  }
  summary.archiveSize = archive.pointer();
  return summary;
}

function summaryOf(entries: Entry[]): ZipSummary {
  return { instancesCount: entries.length, uncompressedSize: entries.reduce((sum, e) => sum + e.size, 0), archiveSize: 0 };
}

/** Orthanc's public Content of an archive job. */
function jobContent(request: ArchiveRequest, summary: ZipSummary): Record<string, unknown> {
  const MB = 1024 * 1024;
  return {
    Description: 'REST API',
    InstancesCount: summary.instancesCount,
    UncompressedSizeMB: Math.floor(summary.uncompressedSize / MB),
    ArchiveSizeMB: Math.floor(summary.archiveSize / MB),
    ArchiveSize: String(summary.archiveSize),
    UncompressedSize: String(summary.uncompressedSize),
    ...(request.transcode ? { Transcode: request.transcode } : {}),
  };
}

/** Orthanc keeps the ZIP of its newest asynchronous archive only (MediaArchiveSize, default 1). */
const MEDIA_ARCHIVE_SIZE = 1;
const keptOutputs = new WeakMap<EmbeddedCore, JobOutput[]>();

function fileOutput(path: string): JobOutput {
  let present = true;
  return {
    contentType: 'application/zip',
    filename: 'archive.zip',
    open: () => (present ? fs.createReadStream(path) : undefined),
    discard: () => {
      present = false;
      fs.rmSync(path, { force: true });
    },
  };
}

function keepOutput(core: EmbeddedCore, output: JobOutput): void {
  const kept = keptOutputs.get(core) ?? [];
  kept.push(output);
  while (kept.length > MEDIA_ARCHIVE_SIZE) kept.shift()?.discard();
  keptOutputs.set(core, kept);
}

/** The job of an asynchronous archive: the ZIP goes to a temporary file, published as output "archive". */
function archiveJob(core: EmbeddedCore, request: ArchiveRequest, entries: Entry[]): JobWork {
  return async (context: JobContext) => {
    const path = core.storage.newTemporaryPath();
    const file = fs.createWriteStream(path);
    try {
      const summary = await writeZip(core, request, entries, file, {
        signal: context.signal,
        onEntry: (done, partial) => {
          context.progress((100 * done) / (entries.length + 1));
          context.setContent(jobContent(request, partial));
        },
      });
      const output = fileOutput(path);
      if (!context.setOutput) throw new Error('An asynchronous archive must run as a job');
      context.setOutput('archive', output);
      keepOutput(core, output);
      return jobContent(request, summary);
    } catch (error) {
      file.destroy();
      fs.rmSync(path, { force: true });
      throw error;
    }
  };
}

/** Answers an archive request: the ZIP streamed now, or a job. */
async function answer(core: EmbeddedCore, res: Response, request: ArchiveRequest, filename: string, body?: Record<string, unknown>): Promise<void> {
  const roots = buildTree(core, request.resources);
  const entries = request.media ? mediaEntries(core, roots) : archiveEntries(core, roots);
  if (body && isAsynchronous(body)) {
    const type = request.media ? 'Media' : 'Archive';
    const content = jobContent(request, summaryOf(entries));
    res.json(submitJob(jobsOf(core), { type, priority: priorityOf(body), content, work: archiveJob(core, request, entries) }));
    return;
  }
  res.setHeader('Content-Type', 'application/zip');
  res.setHeader('Content-Disposition', `filename="${filename}"`);
  try {
    await writeZip(core, request, entries, res);
  } catch (error) {
    // nothing sent yet: an ordinary error answer; else the client can only see the ZIP cut short
    if (!res.headersSent && !res.destroyed) {
      res.removeHeader('Content-Type');
      res.removeHeader('Content-Disposition');
      throw error;
    }
    res.destroy();
  }
}

const KNOWN_SYNTAXES: ReadonlySet<string> = new Set(Object.values(TS));

function checkTransferSyntax(uid: string): string {
  if (!KNOWN_SYNTAXES.has(uid)) throw new HttpError(400, 'Parameter out of range', `Unknown transfer syntax: ${uid}`);
  return uid;
}

/** GET arguments: `transcode`, `extended` (media; present = true), `filename` (the download's name). */
function getRequest(req: Request, level: ResourceLevel, media: boolean): { request: ArchiveRequest; filename: string } {
  const id = String(req.params.id);
  const text = (name: string): string | undefined => {
    const value = req.query[name];
    if (value !== undefined && typeof value !== 'string') throw new HttpError(400, `The "${name}" argument is given more than once`);
    return value;
  };
  const transcode = text('transcode');
  const filename = text('filename') ?? `${id}.zip`;
  // it goes inside a quoted header parameter: no quote, backslash, control or non-ASCII character
  if (filename === '' || /["\\\x00-\x1f\x7f-\uffff]/.test(filename)) throw new HttpError(400, 'Bad value for argument: filename', filename);
  return {
    request: {
      resources: [[level, id]],
      media,
      extended: media && req.query.extended !== undefined,
      transcode: transcode === undefined ? undefined : checkTransferSyntax(transcode),
    },
    filename,
  };
}

/** POST body fields as Orthanc checks them: Extended (media), Transcode, Priority. */
function postOptions(body: Record<string, unknown>, media: boolean, defaultExtended: boolean): Omit<ArchiveRequest, 'resources'> {
  const extended = body.Extended ?? defaultExtended;
  if (typeof extended !== 'boolean') throw new HttpError(400, 'Bad file format', 'Boolean value expected in field: Extended');
  const transcode = body.Transcode;
  if (transcode !== undefined && typeof transcode !== 'string') throw new HttpError(400, 'Bad file format', 'String value expected in field: Transcode');
  priorityOf(body);
  return { media, extended: media && extended, transcode: transcode === undefined ? undefined : checkTransferSyntax(transcode) };
}

/** The identifiers of a batch: the body's "Resources", or the body itself when it is a list (as in Orthanc). */
function parseResources(body: unknown): string[] {
  if (body === null || typeof body !== 'object') {
    throw new HttpError(400, 'Bad file format', 'Expected a list of resources to archive in the body');
  }
  const resources = Array.isArray(body) ? body : (body as { Resources?: unknown }).Resources;
  if (resources === undefined) throw new HttpError(400, 'Bad file format', 'Missing field Resources in the JSON body');
  if (!Array.isArray(resources) || !resources.every((r) => typeof r === 'string')) {
    throw new HttpError(400, 'Bad file format', 'Expected a list of strings (Orthanc identifiers)');
  }
  return resources as string[];
}

/** GET/POST /{level}/{id}/archive|media, POST /tools/create-archive|create-media|create-media-extended. */
export function archiveRoutes(core: EmbeddedCore): Router {
  const router = Router();
  for (const [segment, level] of Object.entries(LEVEL_OF_PATH)) {
    for (const media of [false, true]) {
      const path = `/${segment}/:id/${media ? 'media' : 'archive'}`;
      router.get(path, async (req, res) => {
        const { request, filename } = getRequest(req, level, media);
        await answer(core, res, request, filename);
      });
      router.post(path, anyBodyAsText, async (req, res) => {
        const body = parseBody(req.body);
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'Bad file format');
        const options = postOptions(body as Record<string, unknown>, media, false);
        await answer(core, res, { resources: [[level, String(req.params.id)]], ...options }, `${String(req.params.id)}.zip`, body as Record<string, unknown>);
      });
    }
  }
  const batches: Array<[string, boolean, boolean]> = [
    ['/tools/create-archive', false, false],
    ['/tools/create-media', true, false],
    ['/tools/create-media-extended', true, true],
  ];
  for (const [path, media, defaultExtended] of batches) {
    router.post(path, anyBodyAsText, async (req, res) => {
      const parsed = parseBody(req.body);
      const ids = parseResources(parsed);
      const body = Array.isArray(parsed) ? {} : (parsed as Record<string, unknown>);
      const options = postOptions(body, media, defaultExtended);
      const resources: Array<[ResourceLevel, string]> = ids.map((id) => {
        const level = core.levelOfResource(id);
        if (!level) throw new HttpError(404, 'Unknown resource');
        return [level, id];
      });
      await answer(core, res, { resources, ...options }, 'Archive.zip', body);
    });
  }
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
