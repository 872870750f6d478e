/**
 * The benchmark data sets, generated with the test factory and cached under bench/data/ (git-ignored):
 * a CT series of N slices 512x512 16-bit, M small studies of two 64x64 instances, and one multi-frame
 * 512x512 instance. Each set lives in its own folder with a manifest.json written last, so an
 * interrupted generation is simply redone.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

export interface DataSets {
  ct: SeriesSet;
  small: SmallStudiesSet;
  multiframe: SeriesSet;
}

export const DATA_ROOT = join(__dirname, '..', '..', 'bench', 'data');

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
      RescaleSlope: 1,
      RescaleIntercept: -1024,
      WindowCenter: 1024,
      WindowWidth: 4096,
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

export function prepareDataSets(settings: BenchSettings): DataSets {
  mkdirSync(DATA_ROOT, { recursive: true });
  const started = Date.now();
  const sets = {
    ct: ctSeries(settings.ctSlices),
    small: smallStudies(settings.smallStudies),
    multiframe: multiframe(settings.frames),
  };
  log(`data ready in ${((Date.now() - started) / 1000).toFixed(1)} s under ${DATA_ROOT}`);
  return sets;
}
