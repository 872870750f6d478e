/**
 * The benchmark data sets, generated with the test factory and cached under bench/data/ (git-ignored;
 * BENCH_DATA_DIR moves it): a CT series of N slices 512x512 16-bit, M small studies of two 64x64
 * instances, one multi-frame 512x512 instance, and the big study (S series x K slices, 2 GB at full
 * scale). Each set lives in its own folder with a manifest.json written last, so an interrupted
 * generation is simply redone.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeInstance, makePixelData, makeStudy } from '../test/helpers/dicom-factory';
import type { BenchSettings } from './settings';

export interface SeriesSet {
  studyUid: string;
  seriesUid: string;
  sopUids: string[];
  files: string[];
  bytes: number;
  /** Frames per instance (multi-frame set). */
  frames?: number;
}

export interface SmallStudy {
  patientId: string;
  studyUid: string;
}

export interface SmallStudiesSet {
  studies: SmallStudy[];
  files: string[];
  bytes: number;
}

/** The big study: one patient, several series of identical-size slices. */
export interface BigStudySet {
  patientId: string;
  studyUid: string;
  seriesUids: string[];
  files: string[];
  bytes: number;
}

export interface DataSets {
  ct: SeriesSet;
  small: SmallStudiesSet;
  multiframe: SeriesSet;
  big: BigStudySet;
}

export const DATA_ROOT = process.env.BENCH_DATA_DIR ? resolve(process.env.BENCH_DATA_DIR) : join(__dirname, '..', '..', 'bench', 'data');

/** Hounsfield rescale and a full-range window, the same for every CT slice the bench generates. */
const CT_DISPLAY = { RescaleSlope: 1, RescaleIntercept: -1024, WindowCenter: 1024, WindowWidth: 4096 } as const;

const SURNAMES = [
  'SMITH', 'JOHNSON', 'BROWN', 'GARCIA', 'MÜLLER', 'DUPONT', 'SMITHERS', 'NGUYEN', 'ØSTERGÅRD', 'KOWALSKI',
  'SMITH', 'IVANOVA', 'GONZÁLEZ', 'TANAKA', 'SMITHSON', 'LEFÈVRE', 'WILSON', 'ΠΑΠΑΔΟΠΟΥΛΟΣ', 'ROSSI', 'SCHMIDT',
];
const GIVEN = ['JOHN', 'MARY', 'JÜRGEN', 'ANNE', 'JOSÉ', 'LI', 'OLGA', 'PIERRE', 'ZOË', 'AHMED', 'SØREN'];
const MODALITIES = ['CT', 'MR', 'US', 'CR', 'DX', 'MG', 'PT', 'NM'];

function log(message: string): void {
  process.stdout.write(`[data] ${message}\n`);
}

function readManifest<T>(dir: string): T | undefined {
  const file = join(dir, 'manifest.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

function freshDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

/** The study date of small study i: spread over 2015-2024. */
function studyDate(i: number): string {
  const year = 2015 + (i % 10);
  const month = 1 + ((i * 7) % 12);
  const day = 1 + ((i * 13) % 28);
  return `${year}${String(month).padStart(2, '0')}${String(day).padStart(2, '0')}`;
}

function ctSeries(slices: number): SeriesSet {
  const dir = join(DATA_ROOT, `ct-${slices}`);
  const cached = readManifest<SeriesSet>(dir);
  if (cached) return cached;
  log(`generating the CT series: ${slices} slices 512x512 16-bit`);
  freshDir(dir);
  const layout = { Rows: 512, Columns: 512, BitsAllocated: 16 as const, BitsStored: 12, PixelRepresentation: 0 as const, SamplesPerPixel: 1 as const };
  const pixels = makePixelData(layout, 1);
  const seed = `bench-ct-${slices}`;
  const set: SeriesSet = { studyUid: '', seriesUid: '', sopUids: [], files: [], bytes: 0 };
  for (let i = 0; i < slices; i++) {
    const buffer = makeInstance({
      seed: `${seed}/${i}`,
      PatientID: 'BENCH-CT',
      PatientName: 'BENCH^CT',
      StudyInstanceUID: uidFor(seed),
      SeriesInstanceUID: uidFor(`${seed}/series`),
      SOPInstanceUID: uidFor(`${seed}/instance/${i}`),
      InstanceNumber: i + 1,
      StudyDate: '20230615',
      StudyDescription: 'Benchmark CT',
      ...layout,
      ...CT_DISPLAY,
      pixelData: pixels,
    });
    const file = join(dir, `${String(i).padStart(4, '0')}.dcm`);
    writeFileSync(file, buffer);
    set.files.push(file);
    set.sopUids.push(uidFor(`${seed}/instance/${i}`));
    set.bytes += buffer.length;
  }
  set.studyUid = uidFor(seed);
  set.seriesUid = uidFor(`${seed}/series`);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(set));
  return set;
}

/** A deterministic UID under 2.25 (UUID-derived form), from a label. */
function uidFor(label: string): string {
  let hash = 0n;
  for (const byte of Buffer.from(label, 'utf8')) hash = (hash * 131n + BigInt(byte)) % (1n << 120n);
  return `2.25.${hash.toString()}`;
}

function smallStudies(count: number): SmallStudiesSet {
  const dir = join(DATA_ROOT, `small-${count}`);
  const cached = readManifest<SmallStudiesSet>(dir);
  if (cached) return cached;
  log(`generating ${count} small studies (2 instances 64x64 each)`);
  freshDir(dir);
  const set: SmallStudiesSet = { studies: [], files: [], bytes: 0 };
  for (let i = 0; i < count; i++) {
    const patientNumber = i % Math.max(1, Math.ceil(count * 0.8));
    const patientId = `BENCH-P${String(patientNumber).padStart(5, '0')}`;
    const study = makeStudy({
      seed: `bench-small/${i}`,
      PatientID: patientId,
      PatientName: `${SURNAMES[patientNumber % SURNAMES.length]}^${GIVEN[patientNumber % GIVEN.length]}`,
      StudyInstanceUID: uidFor(`bench-small/${i}`),
      StudyDate: studyDate(i),
      AccessionNumber: `A${i}`,
      StudyDescription: `Small study ${i}`,
      Modality: MODALITIES[i % MODALITIES.length],
      seriesCount: 1,
      instancesPerSeries: 2,
      Rows: 64,
      Columns: 64,
    });
    study.buffers.forEach((buffer, k) => {
      const file = join(dir, `${String(i).padStart(5, '0')}-${k}.dcm`);
      writeFileSync(file, buffer);
      set.files.push(file);
      set.bytes += buffer.length;
    });
    set.studies.push({ patientId, studyUid: study.StudyInstanceUID });
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(set));
  return set;
}

function multiframe(frames: number): SeriesSet {
  const dir = join(DATA_ROOT, `multiframe-${frames}`);
  const cached = readManifest<SeriesSet>(dir);
  if (cached) return cached;
  log(`generating the multi-frame instance: ${frames} frames 512x512 16-bit`);
  freshDir(dir);
  const seed = `bench-mf-${frames}`;
  const set: SeriesSet = {
    studyUid: uidFor(seed),
    seriesUid: uidFor(`${seed}/series`),
    sopUids: [uidFor(`${seed}/instance`)],
    files: [join(dir, 'multiframe.dcm')],
    bytes: 0,
    frames,
  };
  const buffer = makeInstance({
    seed,
    PatientID: 'BENCH-MF',
    PatientName: 'BENCH^MULTIFRAME',
    StudyInstanceUID: set.studyUid,
    SeriesInstanceUID: set.seriesUid,
    SOPInstanceUID: set.sopUids[0],
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.7.3',
    Modality: 'OT',
    StudyDate: '20230616',
    Rows: 512,
    Columns: 512,
    BitsAllocated: 16,
    BitsStored: 12,
    NumberOfFrames: frames,
    WindowCenter: 2048,
    WindowWidth: 4096,
  });
  writeFileSync(set.files[0], buffer);
  set.bytes = buffer.length;
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(set));
  return set;
}

/**
 * A UID of fixed length (33 characters, even: no padding byte) so that it can be patched into a
 * template file in place: 2.25.<20 digits of the label's hash><kind digit><7-digit number>.
 */
function fixedUid(label: string, kind: number, n: number): string {
  const base = uidFor(label).slice('2.25.'.length).padEnd(20, '7').slice(0, 20);
  return `2.25.${base}${kind}${String(n).padStart(7, '0')}`;
}

/**
 * The big study, written cheaply: one template file per series (the factory's output), then each slice
 * is that template with its SOPInstanceUID (and the meta header's copy of it) replaced in place and
 * written straight to disk, so only one slice is ever in memory.
 */
function bigStudy(seriesCount: number, slices: number): BigStudySet {
  const dir = join(DATA_ROOT, `big-${seriesCount}x${slices}`);
  const cached = readManifest<BigStudySet>(dir);
  if (cached) return cached;
  log(`generating the big study: ${seriesCount} series x ${slices} slices 512x512 16-bit`);
  freshDir(dir);
  const seed = `bench-big-${seriesCount}x${slices}`;
  const layout = { Rows: 512, Columns: 512, BitsAllocated: 16 as const, BitsStored: 12, PixelRepresentation: 0 as const, SamplesPerPixel: 1 as const };
  const pixels = makePixelData(layout, 1);
  const set: BigStudySet = { patientId: 'BENCH-BIG', studyUid: fixedUid(seed, 1, 0), seriesUids: [], files: [], bytes: 0 };
  for (let s = 0; s < seriesCount; s++) {
    const seriesUid = fixedUid(seed, 2, s);
    const placeholder = fixedUid(seed, 3, 0);
    const template = makeInstance({
      seed: `${seed}/${s}`,
      PatientID: set.patientId,
      PatientName: 'BENCH^BIG',
      StudyInstanceUID: set.studyUid,
      SeriesInstanceUID: seriesUid,
      SeriesNumber: s + 1,
      SOPInstanceUID: placeholder,
      StudyDate: '20230617',
      StudyDescription: 'Benchmark big study',
      ...layout,
      ...CT_DISPLAY,
      pixelData: pixels,
    });
    const offsets = occurrences(template, Buffer.from(placeholder, 'latin1'));
    if (offsets.length !== 2) throw new Error(`big study template: SOPInstanceUID found ${offsets.length} times, expected 2`);
    set.seriesUids.push(seriesUid);
    for (let i = 0; i < slices; i++) {
      const sop = Buffer.from(fixedUid(seed, 3, s * slices + i + 1), 'latin1');
      for (const offset of offsets) sop.copy(template, offset);
      const file = join(dir, `${s}-${String(i).padStart(5, '0')}.dcm`);
      writeFileSync(file, template);
      set.files.push(file);
      set.bytes += template.length;
    }
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(set));
  return set;
}

function occurrences(haystack: Buffer, needle: Buffer): number[] {
  const found: number[] = [];
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) found.push(at);
  return found;
}

export function prepareDataSets(settings: BenchSettings): DataSets {
  mkdirSync(DATA_ROOT, { recursive: true });
  const started = Date.now();
  const sets = {
    ct: ctSeries(settings.ctSlices),
    small: smallStudies(settings.smallStudies),
    multiframe: multiframe(settings.frames),
    // generated only when measured: 2 GB of disk at full scale
    big: settings.sections.includes('big') || settings.sections.includes('client') ? bigStudy(settings.bigSeries, settings.bigSlices) : emptyBigStudy(),
  };
  log(`data ready in ${((Date.now() - started) / 1000).toFixed(1)} s under ${DATA_ROOT}`);
  return sets;
}

function emptyBigStudy(): BigStudySet {
  return { patientId: '', studyUid: '', seriesUids: [], files: [], bytes: 0 };
}
