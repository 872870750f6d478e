/**
 * New DICOM instances from JSON tags, as Orthanc's POST /tools/create-dicom makes them (OrthancRestAnonymizeModify
 * and ParsedDicomFile in Orthanc 1.10): generated identifiers, time stamps, the caller's tags, and an optional
 * `Content` data URI: a PNG or JPEG image becomes the pixel data (decoded with sharp), a PDF an Encapsulated PDF.
 * Written with dcmjs in Explicit VR Little Endian. Storing is the caller's business (routes/tools-create-dicom.ts).
 */
import { randomInt, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import * as dcmjs from 'dcmjs';
import sharp, { type Metadata } from 'sharp';
import { defaultCharacterSet, isSupportedCharacterSet } from './charset';
import { quietDcmjs } from './dcmjs-quiet';
import { isBinaryVr, normalizeTag, SINGLE_VALUED_TEXT_VRS, toOrthancTag, vrOfTag } from './dictionary';
import { part10Header } from '../core/embedded/dicom-network/part10-header';

type Dataset = dcmjs.data.DicomDataset;

/** A request the caller got wrong (or content we cannot embed): the HTTP status and Orthanc's message. */
export class CreateDicomError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'CreateDicomError';
  }
}

// ------------------------------------------------------------------------------------------- identifiers

export type UidLevel = 'patient' | 'study' | 'series' | 'instance';

export function isUidLevel(text: string): text is UidLevel {
  return text === 'patient' || text === 'study' || text === 'series' || text === 'instance';
}

/** The roots Orthanc gets from DCMTK (SITE_STUDY_UID_ROOT, ...): "1.2.276.0.7230010.3.1.{2,3,4}". */
const UID_ROOTS: Readonly<Record<Exclude<UidLevel, 'patient'>, string>> = {
  study: '1.2.276.0.7230010.3.1.2',
  series: '1.2.276.0.7230010.3.1.3',
  instance: '1.2.276.0.7230010.3.1.4',
};

/** glibc's gethostid(): /etc/hostid, else the host's IPv4 address with its 16-bit halves swapped. */
function hostId(): number {
  if (existsSync('/etc/hostid')) {
    const bytes = readFileSync('/etc/hostid');
    if (bytes.length >= 4) return bytes.readUInt32LE(0);
  }
  const address =
    Object.values(networkInterfaces())
      .flat()
      .find((entry) => entry && entry.family === 'IPv4' && !entry.internal)?.address ?? '127.0.0.1';
  const value = Buffer.from(address.split('.').map(Number)).readUInt32LE(0);
  return ((value << 16) | (value >>> 16)) >>> 0;
}

const HOST_ID = hostId();
// a random start, so two processes with the same pid (containers) still differ
let uidCounter = randomInt(1_000_000);

/**
 * A new identifier in Orthanc's format: a UUID for a PatientID, else DCMTK's
 * `<root>.<host id>.<pid>.<seconds>.<counter>` (at most 64 characters).
 */
export function generateUid(level: UidLevel): string {
  if (level === 'patient') return randomUUID();
  uidCounter = (uidCounter + 1) % 1_000_000_000;
  return `${UID_ROOTS[level]}.${HOST_ID}.${process.pid}.${Math.floor(Date.now() / 1000)}.${uidCounter}`;
}

function pad(value: number, width = 2): string {
  return String(value).padStart(width, '0');
}

/** DA and TM values as Orthanc writes them ("20261123", "035438.000000": no fractions). */
export function dicomDateTime(now: Date, utc: boolean): { date: string; time: string } {
  const [y, mo, d, h, mi, s] = utc
    ? [now.getUTCFullYear(), now.getUTCMonth() + 1, now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes(), now.getUTCSeconds()]
    : [now.getFullYear(), now.getMonth() + 1, now.getDate(), now.getHours(), now.getMinutes(), now.getSeconds()];
  return { date: `${pad(y, 4)}${pad(mo)}${pad(d)}`, time: `${pad(h)}${pad(mi)}${pad(s)}.000000` };
}

// ------------------------------------------------------------------------------------------- tags

const T = {
  SpecificCharacterSet: '00080005',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  InstanceCreationDate: '00080012',
  InstanceCreationTime: '00080013',
  StudyDate: '00080020',
  SeriesDate: '00080021',
  AcquisitionDate: '00080022',
  ContentDate: '00080023',
  StudyTime: '00080030',
  SeriesTime: '00080031',
  AcquisitionTime: '00080032',
  ContentTime: '00080033',
  ConversionType: '00080064',
  Modality: '00080060',
  PatientID: '00100020',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  InstanceNumber: '00200013',
  NumberOfTemporalPositions: '00200105',
  ImagesInAcquisition: '00201002',
  SamplesPerPixel: '00280002',
  PhotometricInterpretation: '00280004',
  PlanarConfiguration: '00280006',
  Rows: '00280010',
  Columns: '00280011',
  BitsAllocated: '00280100',
  BitsStored: '00280101',
  HighBit: '00280102',
  PixelRepresentation: '00280103',
  MIMETypeOfEncapsulatedDocument: '00420012',
  EncapsulatedDocument: '00420011',
  ImageIndex: '00541330',
  PixelData: '7FE00010',
} as const;

/** Tags a caller may set although the new instance already has them (Orthanc's InjectTags). */
const OVERRIDABLE: ReadonlySet<string> = new Set([
  T.PatientID, T.AcquisitionDate, T.AcquisitionTime, T.ContentDate, T.ContentTime, T.InstanceCreationDate,
  T.InstanceCreationTime, T.SeriesDate, T.SeriesTime, T.StudyDate, T.StudyTime,
]);

const ENCAPSULATED_PDF_STORAGE = '1.2.840.10008.5.1.4.1.1.104.1';
/** DCMTK's "private generic file" class: what Orthanc puts in the meta header of an instance without SOPClassUID. */
const GENERIC_FILE_SOP_CLASS = '1.2.276.0.7230010.3.1.0.1';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const BINARY_DATA_URI = 'data:application/octet-stream;base64,';

function setString(dataset: Dataset, tag: string, vr: string, value: string): void {
  dataset[tag] = { vr, Value: value === '' ? [] : [value] };
}

function setIfAbsent(dataset: Dataset, tag: string, vr: string, value: string): void {
  if (!dataset[tag]) setString(dataset, tag, vr, value);
}

function setNumber(dataset: Dataset, tag: string, value: number): void {
  dataset[tag] = { vr: 'US', Value: [value] };
}

function badParameterType(tag: string): CreateDicomError {
  return new CreateDicomError(400, 'Bad type for a parameter', `Bad Parameter type for tag ${toOrthancTag(tag)}`);
}

function outOfRange(tag: string, value: string): CreateDicomError {
  return new CreateDicomError(400, 'Bad file format', `While creating a DICOM instance, tag (${toOrthancTag(tag)}) has out-of-range value: "${value}"`);
}

/** Orthanc's ParseTag: "0010,0010", "00100010" or a keyword. */
function parseTagName(name: string): string {
  const tag = /^[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}$/.test(name) || /^[A-Za-z][A-Za-z0-9]*$/.test(name) ? normalizeTag(name) : undefined;
  // Orthanc answers 500 here; an unknown name is the caller's mistake
  if (tag === undefined) throw new CreateDicomError(400, 'Unknown DICOM tag', name);
  return tag;
}

/** Data URIs Orthanc decodes: "data:<type>;base64,<data>" and nothing else. */
export function parseDataUri(text: string): { mime: string; bytes: Buffer } | undefined {
  const match = /^data:([^;]+);base64,([a-zA-Z0-9=+/]*)$/.exec(text);
  return match ? { mime: match[1].toLowerCase(), bytes: Buffer.from(match[2], 'base64') } : undefined;
}

const INTEGER_RANGES: Readonly<Record<string, [number, number]>> = {
  US: [0, 0xffff],
  SS: [-0x8000, 0x7fff],
  UL: [0, 0xffffffff],
  SL: [-0x80000000, 0x7fffffff],
};

/** One element from a JSON string (Orthanc's FillElementWithString): text, a number, a tag, or bytes. */
function elementFromString(tag: string, vr: string, text: string, interpretBinary: boolean): dcmjs.data.DicomElement {
  let decoded: Buffer | undefined;
  if (interpretBinary && text.startsWith(BINARY_DATA_URI)) {
    decoded = parseDataUri(text)?.bytes;
    if (decoded === undefined) throw new CreateDicomError(400, 'Bad file format');
  }
  if (isBinaryVr(vr)) {
    const bytes = decoded ?? Buffer.from(text, 'utf8');
    if (vr === 'OW' && bytes.length % 2 !== 0) throw outOfRange(tag, text);
    return { vr, Value: [bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)] };
  }
  const value = decoded ? decoded.toString('latin1') : text;
  if (vr === 'SQ') throw outOfRange(tag, value);
  if (vr in INTEGER_RANGES) {
    const [min, max] = INTEGER_RANGES[vr];
    const number = Number(value);
    if (!/^[+-]?\d+$/.test(value) || number < min || number > max) throw outOfRange(tag, value);
    return { vr, Value: [number] };
  }
  if (vr === 'FL' || vr === 'FD') {
    const number = Number(value);
    if (value.trim() === '' || !Number.isFinite(number)) throw outOfRange(tag, value);
    return { vr, Value: [number] };
  }
  if (vr === 'AT') {
    const target = normalizeTag(value);
    if (target === undefined) throw outOfRange(tag, value);
    return { vr, Value: [parseInt(target, 16)] };
  }
  if (value === '') return { vr, Value: [] };
  return { vr, Value: SINGLE_VALUED_TEXT_VRS.has(vr) ? [value] : value.split('\\') };
}

/** One element from its JSON value (Orthanc's FromDcmtkBridge::FromJson): a string, null, or a sequence. */
function elementFromJson(tag: string, value: unknown, interpretBinary: boolean): dcmjs.data.DicomElement {
  const vr = vrOfTag(tag);
  if (typeof value === 'string') return elementFromString(tag, vr, value, interpretBinary);
  if (value === null) return elementFromString(tag, vr, '', interpretBinary);
  if (!Array.isArray(value) || vr !== 'SQ') throw badParameterType(tag);
  const items = value.map((item: unknown) => {
    // an empty array stands for an empty item (Lua cannot tell [] from {})
    if (Array.isArray(item) && item.length === 0) return {};
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw badParameterType(tag);
    const dataset: Dataset = {};
    for (const [name, member] of Object.entries(item as Record<string, unknown>)) {
      const child = parseTagName(name);
      dataset[child] = elementFromJson(child, member, interpretBinary);
    }
    return dataset;
  });
  return { vr: 'SQ', Value: items };
}

/** Orthanc's InjectTags: the caller's tags, refusing to change what the instance has unless `force`. */
function injectTags(dataset: Dataset, tags: Record<string, unknown>, options: InjectOptions): void {
  // Orthanc walks the members in sorted order (jsoncpp): the same request fails on the same tag
  for (const name of Object.keys(tags).sort()) {
    const tag = parseTagName(name);
    if (tag === T.SpecificCharacterSet || tag.endsWith('0000')) continue;
    if (!options.force && !OVERRIDABLE.has(tag) && dataset[tag]) {
      throw new CreateDicomError(400, 'Trying to override a value inherited from a parent module', name);
    }
    if (tag === T.PixelData) throw new CreateDicomError(400, 'Use "Content" to inject an image into a new DICOM instance');
    dataset[tag] = elementFromJson(tag, tags[name], options.interpretBinaryTags);
  }
}

// ------------------------------------------------------------------------------------------- content

async function embedImage(dataset: Dataset, bytes: Buffer): Promise<void> {
  let image = sharp(bytes, { failOn: 'error' });
  let info: Metadata;
  try {
    info = await image.metadata();
  } catch (error) {
    throw new CreateDicomError(400, 'Bad file format', (error as Error).message);
  }
  const channels = info.channels ?? 0;
  const grey = channels <= 2 && info.space !== 'srgb';
  const sixteen = grey && info.depth === 'ushort';
  if (grey) image = image.extractChannel(0).toColourspace(sixteen ? 'grey16' : 'b-w');
  else image = image.removeAlpha().toColourspace('srgb');
  let pixels: Buffer;
  try {
    pixels = await image.raw(sixteen ? { depth: 'ushort' } : {}).toBuffer();
  } catch (error) {
    throw new CreateDicomError(400, 'Bad file format', (error as Error).message);
  }
  // Orthanc's ParsedDicomFile::EmbedImage
  delete dataset[T.PixelData];
  setNumber(dataset, T.Columns, info.width ?? 0);
  setNumber(dataset, T.Rows, info.height ?? 0);
  setNumber(dataset, T.SamplesPerPixel, 1);
  setNumber(dataset, T.PixelRepresentation, 0);
  if (grey) setIfAbsent(dataset, T.PhotometricInterpretation, 'CS', 'MONOCHROME2');
  else {
    setString(dataset, T.PhotometricInterpretation, 'CS', 'RGB');
    setNumber(dataset, T.SamplesPerPixel, 3);
    setNumber(dataset, T.PlanarConfiguration, 0);
  }
  const bits = sixteen ? 16 : 8;
  setNumber(dataset, T.BitsAllocated, bits);
  setNumber(dataset, T.BitsStored, bits);
  setNumber(dataset, T.HighBit, bits - 1);
  // sharp hands out 16-bit samples in host order, little endian on every platform Node runs on
  const value = pixels.buffer.slice(pixels.byteOffset, pixels.byteOffset + pixels.length);
  dataset[T.PixelData] = { vr: sixteen ? 'OW' : 'OB', Value: [value] };
}

function embedPdf(dataset: Dataset, pdf: Buffer): void {
  if (pdf.length < 5 || pdf.subarray(0, 5).toString('latin1') !== '%PDF-') throw new CreateDicomError(400, 'Bad file format', 'Not a PDF file');
  setString(dataset, T.SOPClassUID, 'UI', ENCAPSULATED_PDF_STORAGE);
  setIfAbsent(dataset, T.Modality, 'CS', 'OT');
  setIfAbsent(dataset, T.ConversionType, 'CS', 'WSD');
  setIfAbsent(dataset, T.MIMETypeOfEncapsulatedDocument, 'LO', 'application/pdf');
  const even = Buffer.alloc(pdf.length + (pdf.length % 2)); // padded with a NUL byte, as Orthanc does
  pdf.copy(even);
  dataset[T.EncapsulatedDocument] = { vr: 'OB', Value: [even.buffer.slice(even.byteOffset, even.byteOffset + even.length)] };
}

/** Orthanc's EmbedContent: `content` must be a data URI of a PNG, a JPEG or a PDF. */
async function embedContent(dataset: Dataset, content: string): Promise<void> {
  const uri = parseDataUri(content);
  if (!uri) throw new CreateDicomError(400, 'Bad file format', 'The content must be a data URI ("data:<type>;base64,<data>")');
  if (uri.mime === 'image/png' || uri.mime === 'image/jpeg') await embedImage(dataset, uri.bytes);
  else if (uri.mime === 'application/pdf') embedPdf(dataset, uri.bytes);
  else throw new CreateDicomError(415, 'Unsupported media type', `Unsupported MIME type for the content of a new DICOM file: ${uri.mime}`);
}

// ------------------------------------------------------------------------------------------- request

export type ParentLevel = 'Patient' | 'Study' | 'Series';

export interface CreateDicomParent {
  level: ParentLevel;
  /** Values of the parent levels' module tags, taken from one of its instances ('' for an empty value). */
  values: Readonly<Record<string, string>>;
}

interface InjectOptions {
  interpretBinaryTags: boolean;
  force: boolean;
}

export interface CreateDicomRequest extends InjectOptions {
  tags: Record<string, unknown>;
  /** A data URI, or a list of them (each maybe `{Content, Tags}`): one instance per item, in a new series. */
  content?: unknown;
  parent?: CreateDicomParent;
  /** The Specific Character Set of the parent's instances, when it has one. */
  parentCharacterSet?: string;
  now?: Date;
}

export interface CreatedDicom {
  /** Part 10 files, in order. */
  files: Buffer[];
  /** True when `content` was a list: the files make a series (Orthanc then answers with the series). */
  series: boolean;
}

function usableCharacterSet(term: unknown): term is string {
  return typeof term === 'string' && term.trim() !== '' && isSupportedCharacterSet([term.trim()]);
}

/** The data set Orthanc's CreateDicomV2 builds before the content: identifiers, parent values, time stamps, tags. */
function baseDataset(request: CreateDicomRequest): Dataset {
  const dataset: Dataset = {};
  setString(dataset, T.PatientID, 'LO', generateUid('patient'));
  setString(dataset, T.StudyInstanceUID, 'UI', generateUid('study'));
  setString(dataset, T.SeriesInstanceUID, 'UI', generateUid('series'));
  setString(dataset, T.SOPInstanceUID, 'UI', generateUid('instance'));

  const requested = request.tags.SpecificCharacterSet;
  if (requested !== undefined && !usableCharacterSet(requested)) {
    throw new CreateDicomError(400, 'Parameter out of range', `Unknown specific character set: ${String(requested)}`);
  }
  const characterSet = usableCharacterSet(request.parentCharacterSet)
    ? request.parentCharacterSet
    : (requested as string | undefined)?.trim() ?? defaultCharacterSet();
  if (characterSet !== undefined) setString(dataset, T.SpecificCharacterSet, 'CS', characterSet);

  for (const [tag, value] of Object.entries(request.parent?.values ?? {})) dataset[tag] = elementFromString(tag, vrOfTag(tag), value, false);

  const { date, time } = dicomDateTime(request.now ?? new Date(), true);
  const stamps: Array<[string, string]> = [
    [T.AcquisitionDate, T.AcquisitionTime], [T.ContentDate, T.ContentTime], [T.InstanceCreationDate, T.InstanceCreationTime],
  ];
  const level = request.parent?.level;
  if (level !== 'Series') stamps.push([T.SeriesDate, T.SeriesTime]);
  if (level === undefined || level === 'Patient') stamps.push([T.StudyDate, T.StudyTime]);
  for (const [dateTag, timeTag] of stamps) {
    setString(dataset, dateTag, 'DA', date);
    setString(dataset, timeTag, 'TM', time);
  }

  injectTags(dataset, request.tags, request);
  return dataset;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const PAYLOAD_NOT_DATA_URI = 'The payload of the DICOM instance must be specified according to Data URI scheme';

/** The instances of a create-dicom request, as Part 10 files. */
export async function createDicom(request: CreateDicomRequest): Promise<CreatedDicom> {
  const base = baseDataset(request);
  const content = request.content;
  if (content === undefined || typeof content === 'string') {
    if (typeof content === 'string') await embedContent(base, content);
    return { files: [writePart10(base)], series: false };
  }
  if (!Array.isArray(content)) throw new CreateDicomError(400, PAYLOAD_NOT_DATA_URI);
  if (content.length === 0) return { files: [writePart10(base)], series: false };

  // Orthanc's CreateSeries: one instance per item, each a copy of the base with its own SOPInstanceUID
  setString(base, T.ImagesInAcquisition, 'IS', String(content.length));
  setString(base, T.NumberOfTemporalPositions, 'IS', '1');
  const files: Buffer[] = [];
  for (const [index, item] of content.entries()) {
    const dataset: Dataset = { ...base };
    setString(dataset, T.SOPInstanceUID, 'UI', generateUid('instance'));
    let payload: unknown = item;
    if (isObject(item)) {
      if (item.Content === undefined) throw new CreateDicomError(400, 'No payload is present for one instance in the series');
      payload = item.Content;
      if (item.Tags !== undefined) {
        if (!isObject(item.Tags)) throw new CreateDicomError(400, 'Tags field is not an array');
        injectTags(dataset, item.Tags, request);
      }
    }
    if (typeof payload !== 'string') throw new CreateDicomError(400, PAYLOAD_NOT_DATA_URI);
    await embedContent(dataset, payload);
    setString(dataset, T.InstanceNumber, 'IS', String(index + 1));
    setNumber(dataset, T.ImageIndex, index + 1);
    files.push(writePart10(dataset));
  }
  return { files, series: true };
}

// ------------------------------------------------------------------------------------------- writing

function hasNonAsciiText(dataset: Dataset): boolean {
  return Object.values(dataset).some((element) =>
    (element.Value ?? []).some((value: unknown) =>
      typeof value === 'string' ? /[^\x00-\x7f]/.test(value) : isObject(value) && element.vr === 'SQ' && hasNonAsciiText(value as Dataset),
    ),
  );
}

/**
 * Part 10 bytes in Explicit VR Little Endian. dcmjs writes text as UTF-8: a data set holding non-ASCII text
 * is labelled "ISO_IR 192" whatever character set was asked for, so that what is written is what is declared.
 */
function writePart10(dataset: Dataset): Buffer {
  const current = dataset[T.SpecificCharacterSet]?.Value?.[0];
  if (current !== 'ISO_IR 192' && hasNonAsciiText(dataset)) setString(dataset, T.SpecificCharacterSet, 'CS', 'ISO_IR 192');
  const dict = new dcmjs.data.DicomDict({ '00020010': { vr: 'UI', Value: [EXPLICIT_VR_LITTLE_ENDIAN] } });
  dict.dict = dataset;
  const file = Buffer.from(quietDcmjs(() => dict.write({ allowInvalidVRLength: true })));
  // keep dcmjs's data set, put our own meta group (implementation UID, SOP class and instance) in front of it
  const body = file.subarray(144 + file.readUInt32LE(140));
  const sopClassUid = dataset[T.SOPClassUID]?.Value?.[0];
  const header = part10Header({
    sopClassUid: typeof sopClassUid === 'string' ? sopClassUid : GENERIC_FILE_SOP_CLASS,
    sopInstanceUid: String(dataset[T.SOPInstanceUID]?.Value?.[0] ?? ''),
    transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN,
  });
  return Buffer.concat([header, body]);
}
