/**
 * The one DICOM JSON encoder (PS3.18 Annex F). Route handlers never assemble DICOM JSON by hand:
 * full data sets (WADO-RS metadata, STOW answers) go through `datasetToDicomJson`, tag strings from the
 * native REST model (QIDO answers) through `tagValuesToDicomJson`, and answers are written with
 * `serializeDicomJson`, which keeps attributes in ascending tag order (F.2.2) where JSON.stringify cannot.
 */
import type * as dcmjs from 'dcmjs';
import {
  isBinaryVr,
  isFileMetaTag,
  isGroupLengthTag,
  isNumericVr,
  lookupTag,
  normalizeTag,
  SINGLE_VALUED_TEXT_VRS,
  vrOfTag,
} from './dictionary';

export interface PersonNameComponents {
  Alphabetic?: string;
  Ideographic?: string;
  Phonetic?: string;
}

export type DicomJsonValue = string | number | PersonNameComponents | DicomJsonDataset | null;

export interface DicomJsonAttribute {
  vr: string;
  Value?: DicomJsonValue[];
  BulkDataURI?: string;
  InlineBinary?: string;
}

/** A DICOM JSON Model object: canonical tag → attribute. */
export interface DicomJsonDataset {
  [tag: string]: DicomJsonAttribute;
}

/**
 * Where a binary value sits: the sequence path down to it, then its own tag, e.g.
 * ["00081250", 1, "7FE00010"] for Pixel Data in item 1 (1-based, as in bulk data URIs) of (0008,1250).
 */
export type BulkDataPath = ReadonlyArray<string | number>;

/** For each binary value: a bulk data URI, its bytes inline (base64), or leave the attribute out. */
export type BinaryChoice = { BulkDataURI: string } | 'inline' | 'omit';

export type BinaryHandler = (path: BulkDataPath, tag: string, vr: string) => BinaryChoice;

export interface DatasetToJsonOptions {
  /** Decides about every binary value (OB, OD, OF, OL, OV, OW, UN and Pixel Data). Default: inline. */
  binary?: BinaryHandler;
  /** Keep the file meta group (0002,xxxx). Default false, as the reference plugin. */
  includeFileMeta?: boolean;
}

const PIXEL_DATA = '7FE00010';
const SPECIFIC_CHARACTER_SET = '00080005';
const PN_GROUPS = ['Alphabetic', 'Ideographic', 'Phonetic'] as const;
/** dcmjs cannot represent these VRs and reads them as UN; the dictionary tells us what they were. */
const VRS_DCMJS_READS_AS_UN: ReadonlySet<string> = new Set(['OL', 'OV', 'SV']);
/** VRs whose leading spaces are significant: only trailing padding is removed. */
const LEADING_SPACE_VRS: ReadonlySet<string> = new Set(['ST', 'LT', 'UT', 'UR']);

// ---------------------------------------------------------------------------------------------
// Value helpers shared by both inputs.

/** Remove insignificant padding (trailing spaces/NULs; leading spaces too where PS3.5 allows). */
function trimText(value: string, vr: string): string {
  // most values have nothing to trim: printable ASCII (never whitespace) at both ends spares the regular expressions
  if (isPrintableAscii(value.charCodeAt(value.length - 1)) && (LEADING_SPACE_VRS.has(vr) || isPrintableAscii(value.charCodeAt(0)))) return value;
  const end = value.replace(/[\s\0]+$/, '');
  return LEADING_SPACE_VRS.has(vr) ? end : end.replace(/^\s+/, '');
}

function isPrintableAscii(code: number): boolean {
  return code > 0x20 && code < 0x7f;
}

const INTEGER_PATTERN = /^[+-]?\d+$/;
const DECIMAL_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A numeric string as PS3.5 spells it ("1.50", " 12") → JSON number; empty/invalid → null. */
export function parseDicomNumber(text: string, vr: string): number | null {
  const token = text.trim();
  const integerOnly = vr !== 'DS' && vr !== 'FL' && vr !== 'FD';
  if (!(integerOnly ? INTEGER_PATTERN : DECIMAL_PATTERN).test(token)) return null;
  const value = Number(token);
  return Number.isFinite(value) ? value : null;
}

/** Shortest decimal that reads back as the same float32, so FL 0.1 is 0.1 and not 0.10000000149. */
function shortestFloat32(value: number): number {
  for (let precision = 1; precision <= 9; precision++) {
    const candidate = Number(value.toPrecision(precision));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

function numberValue(raw: unknown, vr: string): number | string | null {
  if (typeof raw === 'bigint') {
    // 64-bit integers beyond 2^53 cannot be JSON numbers without losing digits: keep them exact as strings.
    return raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : raw.toString();
  }
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return null;
    return vr === 'FL' ? shortestFloat32(raw) : raw;
  }
  if (typeof raw === 'string' || raw instanceof String) return parseDicomNumber(raw.toString(), vr);
  return null;
}

/** One PN value "Yamada^Tarou=山田^太郎=やまだ^たろう" → its non-empty component groups; empty → null. */
export function parsePersonName(value: string): PersonNameComponents | null {
  const groups = value.replace(/[\s\0]+$/, '').split('=');
  const name: PersonNameComponents = {};
  PN_GROUPS.forEach((key, index) => {
    const group = (groups[index] ?? '').replace(/\s+$/, '');
    if (group !== '') name[key] = group;
  });
  return Object.keys(name).length > 0 ? name : null;
}

function personNameValue(raw: unknown): PersonNameComponents | null {
  if (typeof raw === 'string' || raw instanceof String) return parsePersonName(raw.toString());
  if (raw && typeof raw === 'object') {
    const source = raw as Record<string, unknown>;
    const name: PersonNameComponents = {};
    for (const key of PN_GROUPS) {
      const group = source[key];
      if (typeof group === 'string' && group.trim() !== '') name[key] = group.replace(/\s+$/, '');
    }
    return Object.keys(name).length > 0 ? name : null;
  }
  return null;
}

function attributeTagValue(raw: unknown): string | null {
  if (typeof raw === 'number') return (raw >>> 0).toString(16).toUpperCase().padStart(8, '0');
  if (typeof raw === 'string') return normalizeTag(raw) ?? null;
  return null;
}

function textValue(raw: unknown, vr: string): string | null {
  if (raw === null || raw === undefined) return null;
  const text = trimText(String(raw), vr);
  return text === '' ? null : text;
}

/** Attribute with its values; all values empty means "present, no value" (F.2.5): no Value at all. */
function withValues(vr: string, values: DicomJsonValue[]): DicomJsonAttribute {
  return values.some((v) => v !== null) ? { vr, Value: values } : { vr };
}

// ---------------------------------------------------------------------------------------------
// (a) A full data set as dcmjs reads it.

function toBytes(raw: unknown, vr: string): Uint8Array | undefined {
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (ArrayBuffer.isView(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  if (typeof raw === 'number') {
    // Hand-built data sets may give OF/OD/OL/OW values as numbers: pack them as the VR says (little endian).
    const TypedArray =
      vr === 'OD' ? Float64Array : vr === 'OF' ? Float32Array : vr === 'OL' ? Uint32Array : vr === 'OW' ? Uint16Array : Uint8Array;
    return new Uint8Array(TypedArray.of(raw).buffer);
  }
  return undefined;
}

function binaryBytes(values: readonly unknown[], vr: string): Uint8Array {
  const parts = values.map((v) => toBytes(v, vr)).filter((p): p is Uint8Array => p !== undefined);
  if (parts.length === 1) return parts[0];
  // Encapsulated Pixel Data comes as one buffer per fragment.
  return Uint8Array.from(Buffer.concat(parts));
}

/** dcmjs reads OL/OV/SV as UN (it has no such VRs); restore the VR and, for SV, the numbers. */
function recoverUnknownVr(tag: string, element: dcmjs.data.DicomElement): { vr: string; values: unknown[] } {
  const values = element.Value ?? [];
  const dictionaryVr = element.vr === 'UN' ? lookupTag(tag)?.vr : undefined;
  if (!dictionaryVr || !VRS_DCMJS_READS_AS_UN.has(dictionaryVr)) return { vr: element.vr, values };
  if (dictionaryVr !== 'SV') return { vr: dictionaryVr, values };
  const bytes = binaryBytes(values, 'OB');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const numbers: bigint[] = [];
  for (let offset = 0; offset + 8 <= bytes.byteLength; offset += 8) numbers.push(view.getBigInt64(offset, true));
  return { vr: 'SV', values: numbers };
}

function binaryAttribute(
  path: BulkDataPath,
  tag: string,
  vr: string,
  element: dcmjs.data.DicomElement,
  values: readonly unknown[],
  options: DatasetToJsonOptions,
): DicomJsonAttribute | undefined {
  if (typeof element.BulkDataURI === 'string') return { vr, BulkDataURI: element.BulkDataURI };
  if (typeof element.InlineBinary === 'string') return { vr, InlineBinary: element.InlineBinary };
  const bytes = binaryBytes(values, vr);
  if (bytes.byteLength === 0) return { vr };
  const choice = options.binary ? options.binary(path, tag, vr) : 'inline';
  if (choice === 'omit') return undefined;
  if (choice === 'inline') return { vr, InlineBinary: Buffer.from(bytes).toString('base64') };
  return { vr, BulkDataURI: choice.BulkDataURI };
}

/** Text values dcmjs split at '\' (it does so for ST/UT too): single-valued VRs get one value back. */
function textValues(vr: string, values: readonly unknown[]): unknown[] {
  if (SINGLE_VALUED_TEXT_VRS.has(vr) && values.length > 1) return [values.map((v) => String(v ?? '')).join('\\')];
  return [...values];
}

function elementToAttribute(
  tag: string,
  element: dcmjs.data.DicomElement,
  path: BulkDataPath,
  options: DatasetToJsonOptions,
): DicomJsonAttribute | undefined {
  const { vr, values } = recoverUnknownVr(tag, element);
  const elementPath = [...path, tag];

  if (vr === 'SQ') {
    const items = values.map((item, index) =>
      datasetAt((item ?? {}) as dcmjs.data.DicomDataset, [...elementPath, index + 1], options),
    );
    return items.length > 0 ? { vr, Value: items } : { vr };
  }
  if (isBinaryVr(vr) || tag === PIXEL_DATA) return binaryAttribute(elementPath, tag, vr, element, values, options);
  if (vr === 'PN') {
    // dcmjs's PN objects drop empty values; its raw string keeps their positions.
    const raw = element._rawValue;
    const source =
      typeof raw === 'string' || raw instanceof String
        ? raw.toString().split('\\')
        : values.flatMap((v) => (typeof v === 'string' ? v.split('\\') : [v]));
    return withValues(vr, source.map(personNameValue));
  }
  if (vr === 'AT') return withValues(vr, values.map(attributeTagValue));
  if (isNumericVr(vr)) return withValues(vr, values.map((v) => numberValue(v, vr)));
  if (tag === SPECIFIC_CHARACTER_SET && Array.isArray(element._rawValue)) {
    // dcmjs rewrites the value to ISO_IR 192; DICOM JSON reports the source's character set (F.2.2 note 3).
    return withValues(vr, element._rawValue.map((v: unknown) => textValue(v, vr)));
  }
  return withValues(vr, textValues(vr, values).map((v) => textValue(v, vr)));
}

function datasetAt(dataset: dcmjs.data.DicomDataset, path: BulkDataPath, options: DatasetToJsonOptions): DicomJsonDataset {
  const result: DicomJsonDataset = {};
  for (const key of Object.keys(dataset).sort()) {
    const tag = key.toUpperCase();
    if (!/^[0-9A-F]{8}$/.test(tag) || isGroupLengthTag(tag) || tag.startsWith('FFFE')) continue;
    if (isFileMetaTag(tag) && !options.includeFileMeta) continue;
    const attribute = elementToAttribute(tag, dataset[key], path, options);
    if (attribute) result[tag] = attribute;
  }
  return result;
}

/**
 * A dcmjs denaturalized data set (`DicomMessage.readFile(buf).dict`, or `readDicomFileWithCharsets`)
 * → DICOM JSON. Group lengths and, unless asked, the file meta group are left out.
 */
export function datasetToDicomJson(dataset: dcmjs.data.DicomDataset, options: DatasetToJsonOptions = {}): DicomJsonDataset {
  return datasetAt(dataset, [], options);
}

// ---------------------------------------------------------------------------------------------
// (b) Tag strings from the native REST model (/tools/find, the embedded index).

/** A value as the native model gives it: Orthanc's "simplified" string, null, or sequence items. */
export type NativeTagValue = string | null | undefined | ReadonlyArray<NativeTagValues>;

export interface NativeTagValues {
  readonly [keywordOrTag: string]: NativeTagValue;
}

export interface TagValuesToJsonOptions {
  /** VRs the caller knows better than the dictionary (private tags), keyed by tag or keyword. */
  vrs?: Readonly<Record<string, string>>;
}

const DATA_URI_PREFIX = 'data:application/octet-stream;base64,';

function stringToAttribute(vr: string, text: string): DicomJsonAttribute {
  if (isBinaryVr(vr)) {
    // Orthanc spells binary values as a data URI; anything else is the value's own bytes.
    const inline = text.startsWith(DATA_URI_PREFIX)
      ? text.slice(DATA_URI_PREFIX.length)
      : Buffer.from(text, 'utf8').toString('base64');
    return inline === '' ? { vr } : { vr, InlineBinary: inline };
  }
  const tokens = SINGLE_VALUED_TEXT_VRS.has(vr) ? [text] : text.split('\\');
  if (vr === 'PN') return withValues(vr, tokens.map(parsePersonName));
  if (vr === 'AT') return withValues(vr, tokens.map((t) => (t.trim() === '' ? null : attributeTagValue(t.trim()))));
  if (isNumericVr(vr)) return withValues(vr, tokens.map((t) => parseDicomNumber(t, vr)));
  return withValues(vr, tokens.map((t) => textValue(t, vr)));
}

/** One value of the native model → its attribute, as tagValuesToDicomJson writes it (sequences excepted). */
export function tagValueToAttribute(vr: string, value: NativeTagValue): DicomJsonAttribute {
  return typeof value === 'string' && value !== '' ? stringToAttribute(vr, value) : { vr };
}

function resolveVr(tag: string, key: string, options: TagValuesToJsonOptions): string {
  return options.vrs?.[tag] ?? options.vrs?.[key] ?? vrOfTag(tag);
}

/**
 * Native model strings → DICOM JSON. Keys are keywords or tags in any spelling; multiple values are
 * joined by '\'; PN groups by '='. Unknown private tags become UN with their bytes inline. An invalid
 * key throws a RangeError (the data comes from our own index, so it is a bug, not a client error).
 */
export function tagValuesToDicomJson(values: NativeTagValues, options: TagValuesToJsonOptions = {}): DicomJsonDataset {
  const attributes = new Map<string, DicomJsonAttribute>();
  for (const key of Object.keys(values)) {
    const tag = normalizeTag(key);
    if (tag === undefined) throw new RangeError(`Not a DICOM tag or keyword: ${key}`);
    if (isGroupLengthTag(tag)) continue;
    const value = values[key];
    let attribute: DicomJsonAttribute;
    if (Array.isArray(value)) {
      const items = (value as ReadonlyArray<NativeTagValues>).map((item) => tagValuesToDicomJson(item ?? {}, options));
      attribute = items.length > 0 ? { vr: 'SQ', Value: items } : { vr: 'SQ' };
    } else {
      attribute = tagValueToAttribute(resolveVr(tag, key, options), value);
    }
    attributes.set(tag, attribute);
  }
  const result: DicomJsonDataset = {};
  for (const tag of [...attributes.keys()].sort()) result[tag] = attributes.get(tag) as DicomJsonAttribute;
  return result;
}

/** Merge levels (study, series, instance attributes...): a later data set wins per tag; keys sorted. */
export function mergeDicomJson(...datasets: ReadonlyArray<DicomJsonDataset | undefined>): DicomJsonDataset {
  const merged = new Map<string, DicomJsonAttribute>();
  for (const dataset of datasets) {
    if (!dataset) continue;
    for (const tag of Object.keys(dataset)) merged.set(tag, dataset[tag]);
  }
  const result: DicomJsonDataset = {};
  for (const tag of [...merged.keys()].sort()) result[tag] = merged.get(tag) as DicomJsonAttribute;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Serialization.

const TAG_KEY = /^[0-9A-F]{8}$/;

function writeJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null';
  if (typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(writeJson).join(',')}]`;
  const record = value as Record<string, unknown>;
  let keys = Object.keys(record).filter((k) => record[k] !== undefined);
  // Tags such as "60000010" are array-index-like, so JS objects list them first; F.2.2 wants tag order.
  if (keys.length > 0 && keys.every((k) => TAG_KEY.test(k))) keys = keys.sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${writeJson(record[k])}`).join(',')}}`;
}

/** DICOM JSON text for one data set or an array of them, attributes in ascending tag order. */
export function serializeDicomJson(data: DicomJsonDataset | ReadonlyArray<DicomJsonDataset>): string {
  return writeJson(data);
}
