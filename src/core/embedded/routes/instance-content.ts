import fsp from 'node:fs/promises';
import { Router, type Response } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { HttpError } from '../../../server/errors';
import { normalizeTag } from '../../../dicom/dictionary';
import { scanDicom, withFileSource } from '../../../dicom/element-scanner';
import { encodingOf } from '../../../dicom/transfer-syntax';
import { inflateDataset } from '../../../dicom/pixel-data';
import { walkElements, type RawElement } from '../../../dicom/raw-elements';
import { readFileHead } from '../storage-area';

const PIXEL_DATA = '7FE00010';

interface RawDataset {
  buffer: Buffer;
  elements: RawElement[];
}

/** The file's data set with value positions; Pixel Data is read only when the path asks for it. */
async function readRawDataset(filePath: string, withPixelData: boolean): Promise<RawDataset> {
  const layout = await withFileSource(filePath, (source) => scanDicom(source));
  const encoding = encodingOf(layout.transferSyntax);
  if (encoding.deflated) {
    const buffer = inflateDataset(await fsp.readFile(filePath), layout.datasetOffset);
    return { buffer, elements: walkElements(buffer, { littleEndian: true, explicitVr: true }, layout.datasetOffset) };
  }
  const headOnly = !withPixelData && layout.pixelData !== undefined;
  const buffer = headOnly ? await readFileHead(filePath, layout.pixelData!.tagOffset) : await fsp.readFile(filePath);
  const elements = walkElements(buffer, encoding, layout.datasetOffset);
  if (headOnly) elements.push({ tag: PIXEL_DATA, vr: 'OB', offset: buffer.length, length: 0 });
  return { buffer, elements };
}

/** "0010-0010" (Orthanc also takes "0010,0010" and keywords) → "00100010"; anything else is a bad request. */
function parseTagSegment(segment: string): string {
  const tag = normalizeTag(segment.replace(/^([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})$/, '$1,$2'));
  if (!tag) throw new HttpError(400, `Not a DICOM tag: ${segment}`);
  return tag;
}

function listTags(elements: RawElement[]): string[] {
  return elements.map((e) => `${e.tag.slice(0, 4)}-${e.tag.slice(4)}`.toLowerCase()).sort();
}

function notFound(): HttpError {
  return new HttpError(404, 'Unknown DICOM tag or item');
}

/** Answers what the path names: a list of tags, a list of item indices, or value bytes. */
function answerPath(res: Response, dataset: RawDataset, segments: string[]): void {
  let elements = dataset.elements;
  for (let i = 0; ; i += 2) {
    if (i >= segments.length) {
      res.json(listTags(elements));
      return;
    }
    const tag = parseTagSegment(segments[i]);
    const element = elements.find((e) => e.tag === tag);
    if (!element) throw notFound();
    // native Pixel Data is shown as a single item: the whole value
    const items = element.items ?? (tag === PIXEL_DATA ? [{ offset: element.offset, length: element.length, elements: [] }] : undefined);
    if (!items) {
      if (i + 1 < segments.length) throw notFound();
      res.type('application/octet-stream').send(dataset.buffer.subarray(element.offset, element.offset + element.length));
      return;
    }
    if (i + 1 >= segments.length) {
      res.json(items.map((_item, index) => String(index)));
      return;
    }
    const index = /^\d+$/.test(segments[i + 1]) ? Number(segments[i + 1]) : -1;
    const item = items[index];
    if (!item) throw notFound();
    if (element.vr !== 'SQ') {
      // a fragment (or the native Pixel Data) is bytes, not a data set
      if (i + 2 < segments.length) throw notFound();
      res.type('application/octet-stream').send(dataset.buffer.subarray(item.offset, item.offset + item.length));
      return;
    }
    elements = item.elements;
  }
}

function ensureInstance(core: EmbeddedCore, id: string): string {
  if (!core.instanceMetadata(id)) throw new HttpError(404, 'Unknown resource');
  return core.instanceFilePath(id);
}

/** GET /instances/{id}/content[/{tag}/{index}/...] and GET /instances/{id}/pdf. */
export function instanceContentRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.get('/instances/:id/content', async (req, res) => {
    answerPath(res, await readRawDataset(ensureInstance(core, req.params.id), false), []);
  });

  router.get('/instances/:id/content/*path', async (req, res) => {
    const raw = (req.params as unknown as { path: string[] | string }).path;
    const segments = (Array.isArray(raw) ? raw : raw.split('/')).filter((s) => s !== '');
    const filePath = ensureInstance(core, req.params.id);
    const withPixelData = segments.length > 0 && parseTagSegment(segments[0]) === PIXEL_DATA;
    answerPath(res, await readRawDataset(filePath, withPixelData), segments);
  });

  router.get('/instances/:id/pdf', async (req, res) => {
    const dataset = await readRawDataset(ensureInstance(core, req.params.id), false);
    const text = (tag: string): string | undefined => {
      const e = dataset.elements.find((x) => x.tag === tag);
      return e && dataset.buffer.toString('latin1', e.offset, e.offset + e.length).replace(/[\0 ]+$/, '');
    };
    const document = dataset.elements.find((e) => e.tag === '00420011');
    if (text('00420012') !== 'application/pdf' || !document) throw new HttpError(404, 'This instance is not an encapsulated PDF');
    let bytes = dataset.buffer.subarray(document.offset, document.offset + document.length);
    // the value is padded to an even length; the PDF itself ends at its last non-NUL byte
    if (bytes.length > 0 && bytes[bytes.length - 1] === 0) bytes = bytes.subarray(0, bytes.length - 1);
    res.type('application/pdf').send(bytes);
  });

  return router;
}
