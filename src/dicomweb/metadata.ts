/**
 * WADO-RS Retrieve Metadata (PS3.18 §10.4.1.1.2): every instance's full data set as DICOM JSON, with
 * Pixel Data and large binary values as bulk data URIs.
 *
 * Instances are built from their header only (see instance-header.ts). URIs are written with a
 * placeholder base (`BASE_PLACEHOLDER`) so that one built answer serves every host name a client may
 * use; `withBase` puts the request's public base in.
 */
import { createHash } from 'node:crypto';
import type * as dcmjs from 'dcmjs';
import type { NativeCore } from '../core/native-model';
import { datasetToDicomJson, mergeDicomJson, serializeDicomJson, tagValuesToDicomJson, type BinaryChoice, type BulkDataPath, type DicomJsonDataset } from '../dicom/dicom-json';
import { defaultCharacterSet } from '../dicom/charset';
import { readInstanceDataset } from './instance-header';
import { mapLimit } from '../core/map-limit';
import type { InstanceRef, SeriesTarget } from './wado-resources';

export type OtherBinaryMode = 'BulkDataURI' | 'InlineBinary';

/**
 * How a study's or series' metadata is made (the plugin's StudiesMetadata/SeriesMetadata): every file read
 * ("Full"), the index's main DICOM tags alone ("MainDicomTags"), or those plus the configured tags whose value
 * is the same in a few sampled files ("Extrapolate", for attributes constant across a series).
 */
export interface MetadataMode {
  kind: 'Full' | 'MainDicomTags' | 'Extrapolate';
  /** Tags (8 hex digits) to extrapolate, in "Extrapolate" mode. */
  extrapolatedTags: readonly string[];
}

/** Files sampled in "Extrapolate" mode: the first, the middle and the last of the series. */
const EXTRAPOLATION_SAMPLES = 3;

/** Written where the public base URL goes; \u0001 cannot occur in DICOM text, so no value can clash. */
export const BASE_PLACEHOLDER = '\u0001DICOMWEB-BASE\u0001';
/** The placeholder as it reads inside serialized JSON. */
const PLACEHOLDER_IN_JSON = JSON.stringify(BASE_PLACEHOLDER).slice(1, -1);
/** OF/OD/OL/OV values up to this size stay inline: a URI would cost more than the value. */
const LARGE_BINARY_BYTES = 1024;
/** Changes whenever the JSON we write changes, so that old cache entries are not served. */
const FORMAT_VERSION = 1;
/** Files read in parallel when building a series. */
const PARALLEL_READS = 16;

const PIXEL_DATA_TAGS: ReadonlySet<string> = new Set(['7FE00008', '7FE00009', '7FE00010']);
const ALWAYS_BULK_VRS: ReadonlySet<string> = new Set(['OB', 'OW', 'UN']);

/** The URL path of an instance below the base, e.g. "studies/1.2/series/1.3/instances/1.4". */
export function instancePath(ref: Pick<InstanceRef, 'studyUid' | 'seriesUid' | 'sopUid'>): string {
  return `studies/${encodeURIComponent(ref.studyUid)}/series/${encodeURIComponent(ref.seriesUid)}/instances/${encodeURIComponent(ref.sopUid)}`;
}

/** "bulk/00081250/1/7fe00010": lower-case tags and 1-based items, as the reference plugin writes them. */
export function bulkSuffix(path: BulkDataPath): string {
  return `bulk/${path.map((part) => (typeof part === 'number' ? String(part) : part.toLowerCase())).join('/')}`;
}

function byteLengthOf(values: readonly unknown[] | undefined): number {
  let total = 0;
  for (const value of values ?? []) {
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) total += value.byteLength;
  }
  return total;
}

/** The element at a path such as ["00081250", 1, "00660016"] (items 1-based). */
function elementAt(dataset: dcmjs.data.DicomDataset, path: BulkDataPath): dcmjs.data.DicomElement | undefined {
  let current: dcmjs.data.DicomDataset | undefined = dataset;
  for (let i = 0; i < path.length; i += 2) {
    const element: dcmjs.data.DicomElement | undefined = current?.[path[i] as string];
    if (i === path.length - 1) return element;
    current = element?.Value?.[(path[i + 1] as number) - 1] as dcmjs.data.DicomDataset | undefined;
  }
  return undefined;
}

/**
 * Tags such as "60000010" are array-index-like keys: JavaScript objects list them first, so only
 * the encoder's own serializer keeps tag order (F.2.2) for them; JSON.stringify is much faster otherwise.
 */
const INDEX_LIKE_KEY = /^[1-9][0-9]{7}$/;

function hasIndexLikeKey(dataset: DicomJsonDataset): boolean {
  for (const key of Object.keys(dataset)) {
    if (INDEX_LIKE_KEY.test(key)) return true;
    const attribute = dataset[key];
    if (attribute.vr === 'SQ' && attribute.Value?.some((item) => item !== null && typeof item === 'object' && hasIndexLikeKey(item as DicomJsonDataset))) {
      return true;
    }
  }
  return false;
}

type InstanceUids = Pick<InstanceRef, 'studyUid' | 'seriesUid' | 'sopUid'>;

/** The DICOM JSON text of one instance, bulk data URIs under the placeholder base. */
export function instanceJson(dataset: dcmjs.data.DicomDataset, ref: InstanceUids, mode: OtherBinaryMode): string {
  const prefix = `${BASE_PLACEHOLDER}${instancePath(ref)}/`;
  const binary = (path: BulkDataPath, tag: string, vr: string): BinaryChoice => {
    const bulk: BinaryChoice = { BulkDataURI: prefix + bulkSuffix(path) };
    if (PIXEL_DATA_TAGS.has(tag)) return bulk;
    if (mode === 'InlineBinary') return 'inline';
    if (ALWAYS_BULK_VRS.has(vr)) return bulk;
    return byteLengthOf(elementAt(dataset, path)?.Value) > LARGE_BINARY_BYTES ? bulk : 'inline';
  };
  const json = datasetToDicomJson(dataset, { binary });
  return hasIndexLikeKey(json) ? serializeDicomJson(json) : JSON.stringify(json);
}

export async function buildInstanceJson(core: NativeCore, ref: InstanceRef, mode: OtherBinaryMode): Promise<string> {
  const { dataset } = await readInstanceDataset(core, ref.id, { fileSize: ref.resource.FileSize });
  return instanceJson(dataset, ref, mode);
}

function firstString(dataset: dcmjs.data.DicomDataset, tag: string): string {
  const value = dataset[tag]?.Value?.[0];
  return typeof value === 'string' ? value.trim() : '';
}

/** Orders instances by Instance Number, then by their place in the series. */
function byInstanceNumber(a: { number: number; index: number }, b: { number: number; index: number }): number {
  return a.number - b.number || a.index - b.index;
}

function instanceNumberOf(text: string | undefined): number {
  const number = parseInt(text ?? '', 10);
  return Number.isFinite(number) ? number : Number.MAX_SAFE_INTEGER;
}

/** The attributes of `tags` that every sampled file of the series has, with the same value. */
async function extrapolatedAttributes(core: NativeCore, ids: readonly string[], tags: readonly string[]): Promise<DicomJsonDataset> {
  if (tags.length === 0 || ids.length === 0) return {};
  const picks = [...new Set([0, Math.floor((ids.length - 1) / 2), ids.length - 1])].slice(0, EXTRAPOLATION_SAMPLES);
  const samples = await mapLimit(picks, PARALLEL_READS, async (pick) => datasetToDicomJson((await readInstanceDataset(core, ids[pick])).dataset, { binary: () => 'inline' }));
  const constant: DicomJsonDataset = {};
  for (const tag of tags) {
    const first = samples[0][tag];
    if (first !== undefined && samples.every((sample) => JSON.stringify(sample[tag]) === JSON.stringify(first))) constant[tag] = first;
  }
  return constant;
}

/** A series' metadata from the index ("MainDicomTags"), plus extrapolated attributes ("Extrapolate"). */
async function buildSeriesSummaryJson(core: NativeCore, target: SeriesTarget, mode: MetadataMode): Promise<string> {
  const [study, instances] = await Promise.all([core.getResource('Study', target.series.ParentStudy), core.getInstances('Series', target.series.ID)]);
  const characterSet = defaultCharacterSet();
  // as the plugin, which writes the index's text in the default encoding and names it
  const upper = tagValuesToDicomJson({
    ...(characterSet === undefined ? {} : { SpecificCharacterSet: characterSet }),
    ...(study?.Type === 'Study' ? { ...study.PatientMainDicomTags, ...study.MainDicomTags } : {}),
    ...target.series.MainDicomTags,
  });
  const ids = (instances ?? []).map((instance) => instance.ID);
  const extrapolated = mode.kind === 'Extrapolate' ? await extrapolatedAttributes(core, ids, mode.extrapolatedTags) : {};
  const built = (instances ?? []).map((instance, index) => ({
    json: serializeDicomJson(mergeDicomJson(upper, extrapolated, tagValuesToDicomJson(instance.MainDicomTags))),
    number: instanceNumberOf(instance.MainDicomTags.InstanceNumber),
    index,
  }));
  return `[${built.sort(byInstanceNumber).map((b) => b.json).join(',')}]`;
}

/**
 * A JSON array of every instance of the series (placeholder base), ordered by Instance Number.
 * "Full": built from the series' instance list and the files alone (SOP Instance UIDs come from the files).
 */
export async function buildSeriesJson(core: NativeCore, target: SeriesTarget, binaryMode: OtherBinaryMode, mode: MetadataMode): Promise<string> {
  if (mode.kind !== 'Full') return buildSeriesSummaryJson(core, target, mode);
  const built = await mapLimit(target.series.Instances, PARALLEL_READS, async (id, index) => {
    const { dataset } = await readInstanceDataset(core, id);
    const uids = { studyUid: target.studyUid, seriesUid: target.seriesUid, sopUid: firstString(dataset, '00080018') };
    return { json: instanceJson(dataset, uids, binaryMode), number: instanceNumberOf(firstString(dataset, '00200013')), index };
  });
  return `[${built.sort(byInstanceNumber).map((b) => b.json).join(',')}]`;
}

/**
 * Identifies the content of a series' metadata: its instances and LastUpdate (which moves whenever
 * an instance is stored), so that adding, deleting or replacing an instance gives a new key.
 */
export function seriesMetadataKey(target: SeriesTarget, binaryMode: OtherBinaryMode, mode: MetadataMode): string {
  const hash = createHash('sha1');
  const how = mode.kind === 'Extrapolate' ? `Extrapolate:${mode.extrapolatedTags.join(',')}` : mode.kind;
  hash.update(`v${FORMAT_VERSION}|${binaryMode}|${how}|${target.series.ID}|${target.series.LastUpdate}|${target.studyUid}|${target.seriesUid}|`);
  hash.update(target.series.Instances.join(','));
  return hash.digest('hex');
}

/** Puts the public base URL where the placeholder is, in serialized JSON. */
export function withBase(jsonWithPlaceholder: string, baseUrl: string): string {
  const base = JSON.stringify(baseUrl).slice(1, -1);
  return jsonWithPlaceholder.split(PLACEHOLDER_IN_JSON).join(base);
}

/** Joins JSON arrays (as text) into one array without parsing them. */
export function joinJsonArrays(arrays: readonly string[]): string {
  const bodies = arrays.map((a) => a.trim().slice(1, -1).trim()).filter((body) => body !== '');
  return `[${bodies.join(',')}]`;
}
