/**
 * A DICOMDIR (PS3.10 basic directory, PS3.3 F) for the media archives of the native API, laid out as
 * Orthanc 1.10 writes it through DCMTK: explicit VR little endian, one PATIENT → STUDY → SERIES → IMAGE
 * tree (every instance is an IMAGE record, as in Orthanc), records and items of undefined length, the
 * records of the tree in pre-order, and offsets counted from the first byte of the file (preamble included).
 *
 * Records take their keys from the first file added under them (Orthanc's DicomDirWriter): a study is
 * identified by its Study Instance UID alone, a patient by its Patient ID. Values are reduced to ASCII, and
 * the record keeps the file's Specific Character Set, as Orthanc does.
 */
import { randomUUID } from 'node:crypto';
import { datasetString, type DicomDataset } from './dicom-file';

const MEDIA_STORAGE_DIRECTORY_STORAGE = '1.2.840.10008.1.3.10';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** Ours, under the 2.25 (UUID) root. */
const IMPLEMENTATION_CLASS_UID = '2.25.147689901262320325614586663641531976992';
const IMPLEMENTATION_VERSION_NAME = 'DICOMWEB_GW';
/** Orthanc's File-set ID. */
const ORTHANC_FILE_SET_ID = 'ORTHANC_MEDIA';

/** The data a record holds: the file's header (text decoded) and where the file lies on the medium. */
export interface DicomDirFile {
  /** File ID components, e.g. ["IMAGES", "IM0"]. */
  fileId: readonly string[];
  /** Data set of the file, Pixel Data not needed (dataset-reader shape). */
  dataset: DicomDataset;
  transferSyntax: string;
}

export interface DicomDirOptions {
  /** Orthanc's "extended" DICOMDIR: Series Description (a type 3 key) in SERIES records. */
  extended?: boolean;
  fileSetId?: string;
  /** The Study Date/Time of a study whose files have none (Orthanc: now, UTC). */
  now?: Date;
}

type RecordType = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';
type Vr = 'CS' | 'DA' | 'TM' | 'PN' | 'LO' | 'SH' | 'UI' | 'IS';

/** A key of a record: the tag (group << 16 | element), its VR, its value (already ASCII). */
interface Key {
  tag: number;
  vr: Vr;
  value: string;
}

interface DirRecord {
  type: RecordType;
  keys: Key[];
  children: DirRecord[];
  /** Offsets of this record and of its next sibling (0: none), set by encode(). */
  offset: number;
  next: number;
}

const TAGS = {
  SpecificCharacterSet: [0x00080005, 'CS'],
  StudyDate: [0x00080020, 'DA'],
  SeriesDate: [0x00080021, 'DA'],
  AcquisitionDate: [0x00080022, 'DA'],
  ContentDate: [0x00080023, 'DA'],
  StudyTime: [0x00080030, 'TM'],
  SeriesTime: [0x00080031, 'TM'],
  AcquisitionTime: [0x00080032, 'TM'],
  ContentTime: [0x00080033, 'TM'],
  AccessionNumber: [0x00080050, 'SH'],
  Modality: [0x00080060, 'CS'],
  StudyDescription: [0x00081030, 'LO'],
  SeriesDescription: [0x0008103e, 'LO'],
  PatientName: [0x00100010, 'PN'],
  PatientID: [0x00100020, 'LO'],
  StudyInstanceUID: [0x0020000d, 'UI'],
  SeriesInstanceUID: [0x0020000e, 'UI'],
  StudyID: [0x00200010, 'SH'],
  SeriesNumber: [0x00200011, 'IS'],
  InstanceNumber: [0x00200013, 'IS'],
  SOPClassUID: [0x00080016, 'UI'],
  SOPInstanceUID: [0x00080018, 'UI'],
} as const satisfies Record<string, readonly [number, Vr]>;
type TagName = keyof typeof TAGS;

const OFFSET_OF_NEXT = 0x00041400;
const RECORD_IN_USE = 0x00041410;
const OFFSET_OF_LOWER = 0x00041420;
const RECORD_TYPE = 0x00041430;
const REFERENCED_FILE_ID = 0x00041500;
const REFERENCED_SOP_CLASS = 0x00041510;
const REFERENCED_SOP_INSTANCE = 0x00041511;
const REFERENCED_TRANSFER_SYNTAX = 0x00041512;

/** Orthanc's Toolbox::ConvertToAscii: printable ASCII and '\n' only, everything else dropped. */
export function toAscii(text: string): string {
  let out = '';
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (c.length === 1 && ((code >= 32 && code < 127) || code === 10)) out += c;
  }
  return out;
}

function tagKey(tag: number): string {
  return tag.toString(16).toUpperCase().padStart(8, '0');
}

/** The file's value of a key: undefined when the element is absent, '' when present but empty. */
function valueOf(dataset: DicomDataset, name: TagName): string | undefined {
  const key = tagKey(TAGS[name][0]);
  return dataset[key] === undefined ? undefined : (datasetString(dataset, key) ?? '');
}

/** UTC date and time as DICOM DA / TM. */
function dicomNow(now: Date): { date: string; time: string } {
  const iso = now.toISOString(); // 2026-11-23T04:05:06.789Z
  return { date: iso.slice(0, 10).replace(/-/g, ''), time: iso.slice(11, 19).replace(/:/g, '') };
}

/** Builds one record's keys with DCMTK's type rules, as Orthanc's DicomDirWriter applies them. */
class KeyCollector {
  readonly keys: Key[] = [];
  constructor(private readonly dataset: DicomDataset) {}

  set(name: TagName, value: string): void {
    const [tag, vr] = TAGS[name];
    this.keys.push({ tag, vr, value: toAscii(value) });
  }

  /** Type 1 and 2: always written, empty when the file has no value. */
  always(name: TagName): void {
    this.set(name, valueOf(this.dataset, name) ?? '');
  }

  /** Type 1C: only when the file has a non-empty value. */
  ifValued(name: TagName): void {
    const value = valueOf(this.dataset, name);
    if (value) this.set(name, value);
  }

  /** Type 3 (extended keys): when the file has the element, even empty. */
  ifPresent(name: TagName): void {
    const value = valueOf(this.dataset, name);
    if (value !== undefined) this.set(name, value);
  }
}

export class DicomDirBuilder {
  private readonly roots: DirRecord[] = [];
  private readonly index = new Map<string, DirRecord>();
  private readonly extended: boolean;
  private readonly fileSetId: string;
  private readonly now: Date;

  constructor(options: DicomDirOptions = {}) {
    this.extended = options.extended === true;
    this.fileSetId = options.fileSetId ?? ORTHANC_FILE_SET_ID;
    this.now = options.now ?? new Date();
  }

  /** Adds a file; a SOP Instance UID already listed adds nothing (as in Orthanc). */
  add(file: DicomDirFile): void {
    const { dataset } = file;
    const sopInstanceUid = valueOf(dataset, 'SOPInstanceUID');
    const studyUid = valueOf(dataset, 'StudyInstanceUID');
    const seriesUid = valueOf(dataset, 'SeriesInstanceUID');
    if (sopInstanceUid === undefined || studyUid === undefined || seriesUid === undefined) {
      throw new Error('The file has no Study, Series or SOP Instance UID');
    }
    const image = this.record('IMAGE', sopInstanceUid, () => this.imageKeys(file));
    if (!image.created) return;
    const series = this.record('SERIES', seriesUid, () => this.seriesKeys(dataset));
    series.record.children.push(image.record);
    if (!series.created) return;
    const study = this.record('STUDY', studyUid, () => this.studyKeys(dataset));
    study.record.children.push(series.record);
    if (!study.created) return;
    const patient = this.record('PATIENT', valueOf(dataset, 'PatientID') ?? '', () => this.patientKeys(dataset));
    patient.record.children.push(study.record);
    if (patient.created) this.roots.push(patient.record);
  }

  /** The DICOMDIR file. */
  encode(): Buffer {
    const records = this.preorder();
    const meta = this.fileMeta();
    const head = (first: number, last: number): Buffer =>
      Buffer.concat([
        element(0x00041130, 'CS', this.fileSetId),
        element(0x00041200, 'UL', first),
        element(0x00041202, 'UL', last),
        element(0x00041212, 'US', 0),
        sequenceStart(0x00041220),
      ]);
    // a record's size does not depend on the offsets it holds (UL): size them all, then place them
    let offset = 128 + 4 + meta.length + head(0, 0).length;
    for (const record of records) {
      record.offset = offset;
      offset += encodeRecord(record).length;
    }
    const link = (siblings: DirRecord[]): void =>
      siblings.forEach((record, i) => {
        record.next = siblings[i + 1]?.offset ?? 0;
        link(record.children);
      });
    link(this.roots);
    return Buffer.concat([
      Buffer.alloc(128),
      Buffer.from('DICM', 'latin1'),
      meta,
      head(this.roots[0]?.offset ?? 0, this.roots[this.roots.length - 1]?.offset ?? 0),
      ...records.map((record) => encodeRecord(record)),
      delimiter(0xfffee0dd),
    ]);
  }

  private record(type: RecordType, id: string, keys: () => Key[]): { record: DirRecord; created: boolean } {
    const indexKey = `${type}|${id}`;
    const existing = this.index.get(indexKey);
    if (existing) return { record: existing, created: false };
    const record: DirRecord = { type, keys: keys(), children: [], offset: 0, next: 0 };
    this.index.set(indexKey, record);
    return { record, created: true };
  }

  private withCharset(collector: KeyCollector): Key[] {
    collector.ifValued('SpecificCharacterSet');
    return collector.keys.sort((a, b) => a.tag - b.tag);
  }

  private patientKeys(dataset: DicomDataset): Key[] {
    const keys = new KeyCollector(dataset);
    keys.ifValued('PatientID');
    keys.always('PatientName');
    return this.withCharset(keys);
  }

  private studyKeys(dataset: DicomDataset): Key[] {
    const keys = new KeyCollector(dataset);
    const now = dicomNow(this.now);
    const firstOf = (names: TagName[], fallback: string): string => {
      for (const name of names) {
        const value = valueOf(dataset, name);
        if (value !== undefined) return value;
      }
      return fallback;
    };
    keys.set('StudyDate', firstOf(['StudyDate', 'SeriesDate', 'AcquisitionDate', 'ContentDate'], now.date));
    keys.set('StudyTime', firstOf(['StudyTime', 'SeriesTime', 'AcquisitionTime', 'ContentTime'], now.time));
    keys.always('StudyDescription');
    keys.always('StudyInstanceUID');
    keys.ifValued('StudyID');
    keys.always('AccessionNumber');
    return this.withCharset(keys);
  }

  private seriesKeys(dataset: DicomDataset): Key[] {
    const keys = new KeyCollector(dataset);
    keys.always('Modality');
    keys.always('SeriesInstanceUID');
    keys.ifValued('SeriesNumber');
    if (this.extended) keys.ifPresent('SeriesDescription');
    return this.withCharset(keys);
  }

  private imageKeys(file: DicomDirFile): Key[] {
    const keys = new KeyCollector(file.dataset);
    keys.always('InstanceNumber');
    const text = (tag: number, value: string): Key => ({ tag, vr: tag === REFERENCED_FILE_ID ? 'CS' : 'UI', value: toAscii(value) });
    keys.keys.push(
      text(REFERENCED_FILE_ID, file.fileId.join('\\')),
      text(REFERENCED_SOP_CLASS, valueOf(file.dataset, 'SOPClassUID') ?? ''),
      text(REFERENCED_SOP_INSTANCE, valueOf(file.dataset, 'SOPInstanceUID') ?? ''),
      text(REFERENCED_TRANSFER_SYNTAX, file.transferSyntax),
    );
    return this.withCharset(keys);
  }

  /** Every record, parents before children, siblings in the order they were added. */
  private preorder(): DirRecord[] {
    const out: DirRecord[] = [];
    const visit = (records: DirRecord[]): void => {
      for (const record of records) {
        out.push(record);
        visit(record.children);
      }
    };
    visit(this.roots);
    return out;
  }

  private fileMeta(): Buffer {
    const body = Buffer.concat([
      element(0x00020001, 'OB', Buffer.from([0, 1])),
      element(0x00020002, 'UI', MEDIA_STORAGE_DIRECTORY_STORAGE),
      element(0x00020003, 'UI', newUid()),
      element(0x00020010, 'UI', EXPLICIT_VR_LITTLE_ENDIAN),
      element(0x00020012, 'UI', IMPLEMENTATION_CLASS_UID),
      element(0x00020013, 'SH', IMPLEMENTATION_VERSION_NAME),
    ]);
    return Buffer.concat([element(0x00020000, 'UL', body.length), body]);
  }
}

/** A UID under 2.25 (PS3.5 B.2: the decimal of a random UUID). */
function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

/** One directory record as an item of undefined length. */
function encodeRecord(record: DirRecord): Buffer {
  return Buffer.concat([
    itemStart(),
    element(OFFSET_OF_NEXT, 'UL', record.next),
    element(RECORD_IN_USE, 'US', 0xffff),
    element(OFFSET_OF_LOWER, 'UL', record.children[0]?.offset ?? 0),
    element(RECORD_TYPE, 'CS', record.type),
    ...record.keys.map((key) => element(key.tag, key.vr, key.value)),
    delimiter(0xfffee00d),
  ]);
}

function tagBytes(tag: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt16LE(tag >>> 16, 0);
  out.writeUInt16LE(tag & 0xffff, 2);
  return out;
}

/** An explicit VR little endian element; text padded to even length (UI with NUL, others with a space). */
function element(tag: number, vr: string, value: string | number | Buffer): Buffer {
  let bytes: Buffer;
  if (typeof value === 'number') {
    bytes = Buffer.alloc(vr === 'US' ? 2 : 4);
    if (vr === 'US') bytes.writeUInt16LE(value);
    else bytes.writeUInt32LE(value);
  } else if (Buffer.isBuffer(value)) {
    bytes = value;
  } else {
    bytes = Buffer.from(value, 'latin1');
    if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  }
  const longHeader = vr === 'OB';
  const header = Buffer.alloc(longHeader ? 8 : 4);
  header.write(vr, 0, 'latin1');
  if (longHeader) header.writeUInt32LE(bytes.length, 4);
  else header.writeUInt16LE(bytes.length, 2);
  return Buffer.concat([tagBytes(tag), header, bytes]);
}

function sequenceStart(tag: number): Buffer {
  const header = Buffer.alloc(8);
  header.write('SQ', 0, 'latin1');
  header.writeUInt32LE(0xffffffff, 4);
  return Buffer.concat([tagBytes(tag), header]);
}

function itemStart(): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(0xffffffff, 4);
  tagBytes(0xfffee000).copy(out);
  return out;
}

function delimiter(tag: number): Buffer {
  return Buffer.concat([tagBytes(tag), Buffer.alloc(4)]);
}
