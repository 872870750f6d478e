/**
 * A parsed data set in the JSON shapes of Orthanc 1.10's /tags family: "full"
 * ({"0010,0010": {Name, Type, Value}}), "simplify" (keyword → value) and "short" ("0010,0010" → value).
 */
import type { DicomDataset, DicomElement } from '../../dicom/dicom-file';
import { elementToString } from '../../dicom/dicom-file';
import { isBinaryVr, isPrivateCreatorTag, lookupTag, privateCreatorTagOf } from '../../dicom/dictionary';
import type { RawElement } from '../../dicom/raw-elements';

export type TagsFormat = 'full' | 'simplify' | 'short';

export interface FullTag {
  Name: string;
  /** The creator reserving a private data element, when the data set has it. */
  PrivateCreator?: string;
  Type: 'String' | 'Null' | 'TooLong' | 'Sequence';
  Value: string | null | FullTags[];
}
export type FullTags = Record<string, FullTag>;
export type SimpleValue = string | null | Array<Record<string, SimpleValue>>;

/** Orthanc replaces longer strings by "TooLong" (ORTHANC_MAXIMUM_TAG_LENGTH). */
const MAXIMUM_TAG_LENGTH = 256;
/** Orthanc names every private or unknown element so. */
const UNKNOWN_NAME = 'Unknown Tag & Data';

/** "00100010" → "0010,0010" in Orthanc's lower-case spelling. */
export function orthancTagKey(tag: string): string {
  return `${tag.slice(0, 4)},${tag.slice(4, 8)}`.toLowerCase();
}

/** printf("%.{digits}g"), which is how Orthanc (boost::lexical_cast) prints FL/FD values. */
export function formatG(value: number, digits: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const exp = Number(value.toExponential(digits - 1).split('e')[1]);
  if (exp < -4 || exp >= digits) {
    const [mantissa, e] = value.toExponential(digits - 1).split('e');
    const sign = e.startsWith('-') ? '-' : '+';
    return `${stripZeros(mantissa)}e${sign}${e.replace(/^[+-]/, '').padStart(2, '0')}`;
  }
  return stripZeros(value.toFixed(Math.max(0, digits - 1 - exp)));
}

function stripZeros(text: string): string {
  return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}

function elementValue(element: DicomElement): string | undefined {
  const values = element.Value ?? [];
  if (element.vr === 'FD' || element.vr === 'FL') {
    return values.map((v) => formatG(Number(v), element.vr === 'FD' ? 17 : 9)).join('\\');
  }
  return elementToString(element);
}

const NUMBER_VRS = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'UV', 'SV', 'AT']);

function toFullTag(tag: string, element: DicomElement, raw: RawElement | undefined): FullTag {
  const Name = isPrivateCreatorTag(tag) ? 'PrivateCreator' : (lookupTag(tag)?.keyword ?? UNKNOWN_NAME);
  if (element.vr === 'SQ') {
    const items = (element.Value ?? []) as DicomDataset[];
    return { Name, Type: 'Sequence', Value: items.map((item, i) => toFullTags(item, { raw: raw?.items?.[i]?.elements })) };
  }
  // binary values, and binary numbers without any value (dcmjs reads those as 0), have no text form
  const empty = (element.Value ?? []).length === 0 || raw?.length === 0;
  if (isBinaryVr(element.vr) || (NUMBER_VRS.has(element.vr) && empty)) return { Name, Type: 'Null', Value: null };
  const value = elementValue(element) ?? '';
  if (Buffer.byteLength(value, 'utf8') > MAXIMUM_TAG_LENGTH) return { Name, Type: 'TooLong', Value: null };
  return { Name, Type: 'String', Value: value };
}

/** The "full" format of a data set, keys sorted by tag as Orthanc writes them. */
export function toFullTags(dataset: DicomDataset, options: { withPixelData?: boolean; raw?: RawElement[] } = {}): FullTags {
  const out: FullTags = {};
  for (const key of Object.keys(dataset).sort()) {
    if (!/^[0-9A-Fa-f]{8}$/.test(key)) continue;
    const tag = key.toUpperCase();
    const full = toFullTag(tag, dataset[key], options.raw?.find((e) => e.tag === tag));
    const creatorTag = privateCreatorTagOf(tag);
    const creator = creatorTag && !isPrivateCreatorTag(tag) ? elementToString(dataset[creatorTag]) : undefined;
    out[orthancTagKey(tag)] = creator === undefined ? full : { Name: full.Name, PrivateCreator: creator, Type: full.Type, Value: full.Value };
  }
  // read without Pixel Data: Orthanc shows it as a binary (Null) element
  if (options.withPixelData) out['7fe0,0010'] = { Name: 'PixelData', Type: 'Null', Value: null };
  return out;
}

function simpleValue(tag: FullTag, key: (k: string, t: FullTag) => string): SimpleValue {
  if (tag.Type === 'Sequence') return (tag.Value as FullTags[]).map((item) => simplifyWith(item, key));
  return tag.Type === 'String' ? (tag.Value as string) : null;
}

function simplifyWith(tags: FullTags, key: (k: string, t: FullTag) => string): Record<string, SimpleValue> {
  const out: Record<string, SimpleValue> = {};
  for (const [k, t] of Object.entries(tags)) out[key(k, t)] = simpleValue(t, key);
  return out;
}

/** Converts the full format into the requested one (for "simplify", a later duplicate name wins, as in Orthanc). */
export function formatTags(tags: FullTags, format: TagsFormat): FullTags | Record<string, SimpleValue> {
  if (format === 'full') return tags;
  return simplifyWith(tags, format === 'short' ? (k) => k : (_k, t) => t.Name);
}

/** The format asked by ?simplify / ?short (Orthanc accepts them without a value). */
export function tagsFormatOf(query: Record<string, unknown>): TagsFormat {
  if (query.simplify !== undefined) return 'simplify';
  if (query.short !== undefined) return 'short';
  return 'full';
}

/** Top-level String tags whose value is the same in every data set (GET /{level}/{id}/shared-tags). */
export function sharedTags(all: FullTags[]): FullTags {
  if (all.length === 0) return {};
  const out: FullTags = {};
  for (const [key, tag] of Object.entries(all[0])) {
    if (tag.Type !== 'String') continue;
    if (all.every((tags) => tags[key]?.Type === 'String' && tags[key].Value === tag.Value)) out[key] = tag;
  }
  return out;
}
