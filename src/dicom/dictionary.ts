/**
 * The DICOM data dictionary as the rest of the gateway sees it: tag spellings, keywords and VRs.
 * The data comes from dcmjs (PS3.6 tables); this module only normalises and answers questions.
 * Tags are always handled as canonical 8-digit upper-case hex strings ("00100010").
 */
import * as dcmjs from 'dcmjs';

/** A dictionary entry in our terms: canonical tag, PS3.6 keyword (no "RETIRED_" prefix), VR, VM. */
export interface TagInfo {
  tag: string;
  keyword: string;
  /** Concrete VR; ambiguous dictionary VRs ("US or SS", "OB or OW") are resolved to the usual one. */
  vr: string;
  vm: string;
  retired: boolean;
}

/** VRs whose value is raw bytes: JSON carries them as InlineBinary or BulkDataURI. */
export const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

/** VRs whose values are JSON numbers (PS3.18 F.2.3): binary numbers and the numeric strings IS/DS. */
export const NUMERIC_VRS: ReadonlySet<string> = new Set(['IS', 'DS', 'US', 'SS', 'UL', 'SL', 'FL', 'FD', 'UV', 'SV']);

/** Text VRs affected by Specific Character Set (PS3.5 6.1.2.3). */
export const CHARSET_TEXT_VRS: ReadonlySet<string> = new Set(['SH', 'LO', 'ST', 'LT', 'UT', 'UC', 'PN']);

/** String VRs that hold a single value: a backslash in them is data, not a delimiter (PS3.5 6.4). */
export const SINGLE_VALUED_TEXT_VRS: ReadonlySet<string> = new Set(['ST', 'LT', 'UT', 'UR']);

const ALL_VRS: ReadonlySet<string> = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV', 'OW',
  'PN', 'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);

/** dcmjs spells ambiguous VRs with lower-case codes; pick what a writer without context would use. */
const AMBIGUOUS_VRS: Readonly<Record<string, string>> = {
  ox: 'OW', // OB or OW (Pixel Data, Overlay Data): OW is the native-encoding default
  xs: 'US', // US or SS
  up: 'UL', // retired "UL or ..." offsets in DICOMDIR
  lt: 'US', // US, SS or OW (LUT Data); the numeric reading is the common one
};

const RETIRED_PREFIX = 'RETIRED_';

export function isValidVr(vr: string): boolean {
  return ALL_VRS.has(vr);
}

export function isBinaryVr(vr: string): boolean {
  return BINARY_VRS.has(vr);
}

export function isNumericVr(vr: string): boolean {
  return NUMERIC_VRS.has(vr);
}

/**
 * Canonical form of a tag spelling: "00100010", "0010,0010", "(0010,0010)", "0010 0010" and
 * lower-case hex all give "00100010"; a keyword ("PatientName") is looked up. Anything else → undefined.
 */
export function normalizeTag(spelling: string): string | undefined {
  const text = spelling.trim();
  const hex = /^\(?([0-9A-Fa-f]{4})[,\s]?([0-9A-Fa-f]{4})\)?$/.exec(text);
  if (hex) {
    // Reject unbalanced parentheses: "(00100010" is a typo, not a tag.
    if (text.startsWith('(') !== text.endsWith(')')) return undefined;
    return (hex[1] + hex[2]).toUpperCase();
  }
  return keywordToTag(text);
}

/**
 * A dotted attribute path as QIDO includefield / matching keys allow ("ReferencedSeriesSequence.00080018")
 * → list of canonical tags; undefined if any part is invalid.
 */
export function normalizeTagPath(path: string): string[] | undefined {
  const parts = path.split('.');
  const tags: string[] = [];
  for (const part of parts) {
    const tag = normalizeTag(part);
    if (tag === undefined) return undefined;
    tags.push(tag);
  }
  return tags;
}

/** "00100010" → "(0010,0010)" for messages and logs. */
export function formatTag(tag: string): string {
  return `(${tag.slice(0, 4)},${tag.slice(4, 8)})`;
}

/** "00100010" → "0010,0010", the spelling of Orthanc's REST API. */
export function toOrthancTag(tag: string): string {
  return `${tag.slice(0, 4)},${tag.slice(4, 8)}`;
}

function groupOf(tag: string): number {
  return parseInt(tag.slice(0, 4), 16);
}

function elementOf(tag: string): number {
  return parseInt(tag.slice(4, 8), 16);
}

/** Private data elements live in odd groups above 0008 (groups 1, 3, 5, 7 are not usable). */
export function isPrivateTag(tag: string): boolean {
  const group = groupOf(tag);
  return group % 2 === 1 && group > 0x0008 && group !== 0xffff;
}

/** (gggg,0010)-(gggg,00FF) in a private group reserve a block of elements for a creator. */
export function isPrivateCreatorTag(tag: string): boolean {
  const element = elementOf(tag);
  return isPrivateTag(tag) && element >= 0x0010 && element <= 0x00ff;
}

/** The creator element reserving a private data element: (gggg,xxee) → (gggg,00xx); undefined if none. */
export function privateCreatorTagOf(tag: string): string | undefined {
  if (!isPrivateTag(tag)) return undefined;
  const block = elementOf(tag) >> 8;
  if (block < 0x10) return undefined;
  return tag.slice(0, 4) + '00' + block.toString(16).toUpperCase().padStart(2, '0');
}

/** Group length elements (gggg,0000): never part of DICOM JSON (PS3.18 F.2.2). */
export function isGroupLengthTag(tag: string): boolean {
  return tag.slice(4, 8) === '0000';
}

/** File meta information (0002,xxxx): belongs to the Part 10 file, not to the data set. */
export function isFileMetaTag(tag: string): boolean {
  return tag.startsWith('0002');
}

function concreteVr(dictionaryVr: string): string {
  if (ALL_VRS.has(dictionaryVr)) return dictionaryVr;
  return AMBIGUOUS_VRS[dictionaryVr] ?? 'UN';
}

function entryToInfo(tag: string, entry: dcmjs.data.DictionaryEntry): TagInfo {
  const retired = entry.name.startsWith(RETIRED_PREFIX);
  return {
    tag,
    keyword: retired ? entry.name.slice(RETIRED_PREFIX.length) : entry.name,
    vr: concreteVr(entry.vr),
    vm: entry.vm,
    retired,
  };
}

function dictionaryEntry(tag: string): dcmjs.data.DictionaryEntry | undefined {
  // The dcmjs dictionary is a lazy Proxy keyed by "(GGGG,EEEE)"; it also resolves 50xx/60xx repeating groups.
  const entry: dcmjs.data.DictionaryEntry | undefined = dcmjs.data.DicomMetaDictionary.dictionary[formatTag(tag)];
  // Item/delimitation pseudo-elements ("na") are not attributes.
  if (!entry || entry.vr === 'na') return undefined;
  return entry;
}

/** Dictionary facts for a canonical tag; undefined for private and unknown tags. */
export function lookupTag(tag: string): TagInfo | undefined {
  if (!/^[0-9A-F]{8}$/.test(tag) || isPrivateTag(tag)) return undefined;
  const entry = dictionaryEntry(tag);
  return entry ? entryToInfo(tag, entry) : undefined;
}

let lowerCaseKeywords: Map<string, string> | undefined;

function nameMapEntry(name: string): dcmjs.data.DictionaryEntry | undefined {
  const map = dcmjs.data.DicomMetaDictionary.nameMap;
  return Object.prototype.hasOwnProperty.call(map, name) ? map[name] : undefined;
}

/** Keyword → canonical tag. Exact match first; then case-insensitive, and the "RETIRED_" spelling. */
export function keywordToTag(keyword: string): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(keyword)) return undefined;
  let entry = nameMapEntry(keyword) ?? nameMapEntry(RETIRED_PREFIX + keyword);
  if (!entry) {
    lowerCaseKeywords ??= buildLowerCaseKeywords();
    const name = lowerCaseKeywords.get(keyword.toLowerCase());
    entry = name === undefined ? undefined : nameMapEntry(name);
  }
  if (!entry || entry.vr === 'na') return undefined;
  const tag = entry.tag.replace(/[(),]/g, '').toUpperCase();
  return /^[0-9A-F]{8}$/.test(tag) ? tag : undefined;
}

function buildLowerCaseKeywords(): Map<string, string> {
  const map = new Map<string, string>();
  for (const name of Object.keys(dcmjs.data.DicomMetaDictionary.nameMap)) {
    const bare = name.startsWith(RETIRED_PREFIX) ? name.slice(RETIRED_PREFIX.length) : name;
    const key = bare.toLowerCase();
    // A current attribute wins over a retired one spelled the same way.
    if (!map.has(key) || !name.startsWith(RETIRED_PREFIX)) map.set(key, name);
  }
  return map;
}

/** Canonical tag → PS3.6 keyword, undefined for private/unknown tags. */
export function tagToKeyword(tag: string): string | undefined {
  return lookupTag(tag)?.keyword;
}

/**
 * The VR to use for a tag. A VR known from the data (`knownVr`) wins; then the dictionary;
 * private creators are LO (PS3.5 7.8.1); everything else unknown is UN.
 */
export function vrOfTag(tag: string, knownVr?: string): string {
  if (knownVr !== undefined && ALL_VRS.has(knownVr)) return knownVr;
  if (isPrivateCreatorTag(tag)) return 'LO';
  return lookupTag(tag)?.vr ?? 'UN';
}
