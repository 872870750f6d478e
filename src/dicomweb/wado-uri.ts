/**
 * WADO-URI (PS3.18 §9.2, formerly PS3.18 "WADO"): GET {WadoRoot}?requestType=WADO&studyUID=..&seriesUID=..
 * &objectUID=..[&contentType=..]. Returns the DICOM file (optionally transcoded) or a rendered image.
 * Only objectUID is needed to find the instance; given study/series UIDs must agree with it.
 */
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { NativeCore } from '../core/native-model';
import { splitHeaderList } from '../dicom/media-types';
import { parseQuality, RenderError, renderDicom, type RenderedMediaType, type RenderOptions } from '../dicom/render';
import { HttpError } from '../server/errors';
import { imageWorkLimiter, type WorkLimiter } from '../server/work-limiter';
import type { DicomWebContext } from './dicomweb-router';
import { readRenderableFile, renderHttpError } from './wado-rs-rendered';

const IMAGE_TYPES: readonly RenderedMediaType[] = ['image/jpeg', 'image/png', 'image/gif'];

function param(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new HttpError(400, `Parameter "${name}" is given more than once or is malformed`);
  return value.trim();
}

/** contentType may list several types (PS3.18 §9.2.3.1): the first we can produce wins; default JPEG. */
function chooseContentType(text: string | undefined): 'application/dicom' | RenderedMediaType {
  if (text === undefined || text === '') return 'image/jpeg';
  for (const item of splitHeaderList(text)) {
    const type = item.split(';')[0].trim().toLowerCase();
    if (type === 'application/dicom') return type;
    if ((IMAGE_TYPES as readonly string[]).includes(type)) return type as RenderedMediaType;
    if (type === '*/*' || type === 'image/*') return 'image/jpeg';
  }
  throw new HttpError(406, 'Unsupported contentType', `WADO-URI serves application/dicom, ${IMAGE_TYPES.join(', ')}; not "${text}"`);
}

/** The instance named by objectUID, checked against studyUID/seriesUID when given. */
async function findInstance(core: NativeCore, studyUid: string | undefined, seriesUid: string | undefined, objectUid: string): Promise<string> {
  const ids = (await core.lookup(objectUid)).filter((m) => m.Type === 'Instance').map((m) => m.ID);
  for (const id of ids) {
    const instance = await core.getResource('Instance', id);
    if (instance?.Type !== 'Instance') continue;
    const series = await core.getResource('Series', instance.ParentSeries);
    if (series?.Type !== 'Series') continue;
    if (seriesUid && series.MainDicomTags.SeriesInstanceUID !== seriesUid) continue;
    const study = await core.getResource('Study', series.ParentStudy);
    if (studyUid && study?.MainDicomTags.StudyInstanceUID !== studyUid) continue;
    return id;
  }
  throw new HttpError(404, 'Unknown instance', `No instance ${objectUid}${seriesUid ? ` in series ${seriesUid}` : ''}${studyUid ? ` of study ${studyUid}` : ''}`);
}

function positiveInteger(text: string | undefined, name: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new HttpError(400, `Invalid ${name}`, `"${text}" is not an integer >= 1`);
  return Number(text);
}

/** region=x1,y1,x2,y2 as fractions of the image (PS3.18 §9.2.3.5). */
function parseRegion(text: string): [number, number, number, number] {
  const values = text.split(',').map((v) => Number(v.trim()));
  const [x1, y1, x2, y2] = values;
  if (values.length !== 4 || values.some((v) => !Number.isFinite(v) || v < 0 || v > 1) || x2 <= x1 || y2 <= y1) {
    throw new HttpError(400, 'Invalid region', `"${text}" is not x1,y1,x2,y2 with 0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1`);
  }
  return [x1, y1, x2, y2];
}

/** Rendering parameters of a WADO-URI image request. */
function imageOptions(req: Request, mediaType: RenderedMediaType): RenderOptions {
  const options: RenderOptions = { mediaType };
  const frame = positiveInteger(param(req, 'frameNumber'), 'frameNumber');
  options.frame = frame === undefined ? 0 : frame - 1;
  const rows = positiveInteger(param(req, 'rows'), 'rows');
  const columns = positiveInteger(param(req, 'columns'), 'columns');
  if (rows !== undefined || columns !== undefined) options.maxSize = { width: columns, height: rows };
  const region = param(req, 'region');
  if (region) options.fractionRegion = parseRegion(region);
  const center = param(req, 'windowCenter');
  const width = param(req, 'windowWidth');
  if ((center === undefined) !== (width === undefined)) throw new HttpError(400, 'windowCenter and windowWidth go together');
  if (center !== undefined && width !== undefined) {
    const window = { center: Number(center), width: Number(width), fn: 'linear' as const };
    if (center === '' || width === '' || !Number.isFinite(window.center) || !Number.isFinite(window.width) || window.width < 1) {
      throw new HttpError(400, 'Invalid window', `windowCenter "${center}", windowWidth "${width}"`);
    }
    options.window = window;
  }
  const quality = param(req, 'imageQuality');
  try {
    if (quality !== undefined) options.quality = parseQuality(quality);
  } catch (error) {
    throw error instanceof RenderError ? new HttpError(400, 'Invalid imageQuality', error.message) : error;
  }
  return options;
}

async function sendDicom(core: NativeCore, id: string, transferSyntax: string | undefined, res: Response): Promise<void> {
  const asked = transferSyntax ? { transcode: transferSyntax, chunkBytes: 1 << 20 } : undefined;
  let file;
  try {
    file = await core.readInstanceFile(id, asked ?? { chunkBytes: 1 << 20 });
  } catch (error) {
    // a syntax we cannot produce is the client's choice, not our failure
    if (asked) throw new HttpError(406, 'Cannot transcode to the requested transfer syntax', String((error as Error).message));
    throw error;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of file.stream) chunks.push(Buffer.from(chunk as Buffer));
  const body = Buffer.concat(chunks);
  res.status(200).type('application/dicom').setHeader('Content-Length', body.length);
  res.end(body);
}

async function handle(core: NativeCore, limiter: WorkLimiter, req: Request, res: Response): Promise<void> {
  const requestType = param(req, 'requestType');
  if (requestType !== 'WADO') throw new HttpError(400, 'requestType must be WADO', `Got "${requestType ?? ''}"`);
  const objectUid = param(req, 'objectUID');
  if (!objectUid) throw new HttpError(400, 'Missing objectUID');
  if (param(req, 'anonymize') === 'yes') throw new HttpError(400, 'anonymize=yes is not supported');
  const contentType = chooseContentType(param(req, 'contentType'));
  const transferSyntax = param(req, 'transferSyntax');
  if (transferSyntax && contentType !== 'application/dicom') throw new HttpError(400, 'transferSyntax applies to contentType=application/dicom only');
  const options = contentType === 'application/dicom' ? undefined : imageOptions(req, contentType);
  const id = await findInstance(core, param(req, 'studyUID') || undefined, param(req, 'seriesUID') || undefined, objectUid);
  // transcoding and rendering take their turn; the file as stored does not
  if (options === undefined) return transferSyntax ? limiter.run(() => sendDicom(core, id, transferSyntax, res)) : sendDicom(core, id, undefined, res);
  const image = await limiter.run(async () => {
    const file = await readRenderableFile(core, id);
    try {
      return await renderDicom(file, options);
    } catch (error) {
      throw renderHttpError(error, 400);
    }
  });
  res.status(200).type(image.mediaType).setHeader('Content-Length', image.body.length);
  res.end(image.body);
}

/** WADO-URI, mounted at DicomWeb.WadoRoot (e.g. /wado) when DicomWeb.EnableWado is true. */
export function wadoUriRouter(context: DicomWebContext): Router {
  const router = Router();
  const limiter = imageWorkLimiter(context.config);
  router.get('/', (req: Request, res: Response, next: NextFunction) => {
    handle(context.core, limiter, req, res).catch(next);
  });
  return router;
}
