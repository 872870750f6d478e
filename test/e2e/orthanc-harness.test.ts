/**
 * The shared harness against a real Orthanc 1.10 (+ DICOMweb plugin): every transfer syntax the
 * factory writes is accepted, indexed with the values that were set, and decodes to the pattern.
 */
import { existsSync } from 'node:fs';
import {
  CODEC_FACTORY_SYNTAXES,
  NATIVE_FACTORY_SYNTAXES,
  TransferSyntax,
  buildInstance,
  initCodecs,
  makeNonImage,
  makeStudy,
  newUid,
  patternValue,
  readInstance,
  type GeneratedInstance,
  type TransferSyntaxUid,
} from '../helpers/dicom-factory';
import {
  assertOrthancInstalled,
  basicAuthorization,
  startOrthanc,
  uploadToOrthanc,
  type OrthancProcess,
} from '../helpers/orthanc-process';

const ALL_SYNTAXES: readonly TransferSyntaxUid[] = [...NATIVE_FACTORY_SYNTAXES, ...CODEC_FACTORY_SYNTAXES];
/** Largest difference a decoded sample may show; lossless syntaxes are not listed (0). */
const LOSSY_TOLERANCE: Partial<Record<TransferSyntaxUid, number>> = {
  [TransferSyntax.JPEGBaseline8Bit]: 24,
  [TransferSyntax.JPEGLSNearLossless]: 2,
};
/** Orthanc 1.10 has no JPEG 2000 decoder of its own (it needs the GDCM plugin). */
const ORTHANC_CANNOT_DECODE: readonly string[] = [TransferSyntax.JPEG2000Lossless, TransferSyntax.JPEG2000];
const PRIVATE = { '00090010': { vr: 'LO', Value: ['Lunit'] }, '00091001': { vr: 'LO', Value: ['score 0.93'] } };

let plain: OrthancProcess | undefined;
let web: OrthancProcess | undefined;
const USERS = { alice: 'wonderland' };

beforeAll(async () => {
  assertOrthancInstalled({ dicomWeb: true });
  await initCodecs();
  [plain, web] = await Promise.all([startOrthanc({ users: USERS }), startOrthanc({ dicomWeb: true })]);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), web?.stop()]);
});

function started(orthanc: OrthancProcess | undefined): OrthancProcess {
  if (!orthanc) throw new Error('Orthanc did not start (see beforeAll)');
  return orthanc;
}

async function getJson(orthanc: OrthancProcess, path: string, headers: Record<string, string> = {}): Promise<unknown> {
  const response = await fetch(`${orthanc.url}${path}`, {
    headers: { ...(orthanc.authorization ? { authorization: orthanc.authorization } : {}), ...headers },
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** Values of a .npy answer (GET /instances/{id}/frames/{n}/numpy?rescale=0). */
function parseNumpy(bytes: Buffer): { shape: number[]; values: number[] } {
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLength).toString('latin1');
  const descr = /'descr':\s*'([<>|=])([uif])(\d)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape) throw new Error(`unexpected .npy header ${header}`);
  const [, order, kind, size] = descr;
  const little = order !== '>';
  const body = bytes.subarray(10 + headerLength);
  const width = Number(size);
  const values: number[] = [];
  for (let offset = 0; offset + width <= body.length; offset += width) {
    if (kind === 'f') values.push(little ? body.readFloatLE(offset) : body.readFloatBE(offset));
    else if (width === 1) values.push(kind === 'i' ? body.readInt8(offset) : body.readUInt8(offset));
    else if (kind === 'i') values.push(little ? body.readInt16LE(offset) : body.readInt16BE(offset));
    else values.push(little ? body.readUInt16LE(offset) : body.readUInt16BE(offset));
  }
  return { shape: shape[1].split(',').filter((s) => s.trim() !== '').map(Number), values };
}

function instanceFor(syntax: TransferSyntaxUid, index: number): GeneratedInstance {
  return buildInstance({
    transferSyntax: syntax,
    seed: `harness/${syntax}`,
    PatientID: 'HARNESS-1',
    PatientName: 'Doe^Harness',
    StudyInstanceUID: newUid('harness/study'),
    SeriesNumber: index + 1,
    Modality: 'MR',
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.4',
    BitsAllocated: syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 16,
    BitsStored: syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 12,
    Rows: 12,
    Columns: 20,
    NumberOfFrames: 2,
    WindowCenter: 300,
    WindowWidth: 600,
    extraElements: PRIVATE,
  });
}

describe('dicom-factory', () => {
  test('newUid is a 2.25 UID, random without a seed and stable with one', () => {
    const uid = newUid();
    expect(uid).toMatch(/^2\.25\.[1-9]\d{0,38}$/);
    expect(newUid()).not.toBe(uid);
    expect(newUid('abc')).toBe(newUid('abc'));
    expect(newUid('abc')).not.toBe(newUid('abd'));
  });

  test.each(ALL_SYNTAXES)('dcmjs reads back what was written in %s', (syntax) => {
    const generated = instanceFor(syntax, 0);
    const { meta, dataset } = readInstance(generated.buffer);
    expect(generated.buffer.toString('latin1', 128, 132)).toBe('DICM');
    expect(meta.TransferSyntaxUID).toBe(syntax);
    expect(meta.MediaStorageSOPInstanceUID).toBe(generated.tags.SOPInstanceUID);
    expect(dataset.SOPInstanceUID).toBe(generated.tags.SOPInstanceUID);
    expect(dataset.PatientName).toEqual([{ Alphabetic: 'Doe^Harness' }]);
    expect(dataset.Rows).toBe(12);
    expect(dataset.Columns).toBe(20);
    expect(Number(dataset.NumberOfFrames)).toBe(2);
  });

  test('native syntaxes hold exactly the pattern (big endian byte-swapped, deflated inflated)', () => {
    const layout = { Rows: 3, Columns: 5, BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1, SamplesPerPixel: 1 } as const;
    for (const syntax of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRBigEndian, TransferSyntax.DeflatedExplicitVRLittleEndian]) {
      const { buffer } = buildInstance({ ...layout, transferSyntax: syntax });
      const pixels = Buffer.from((readInstance(buffer).dataset.PixelData as ArrayBuffer[])[0]);
      const read = (i: number) => (syntax === TransferSyntax.ExplicitVRBigEndian ? pixels.readInt16BE(i * 2) : pixels.readInt16LE(i * 2));
      expect(read(0)).toBe(patternValue(layout, 0, 0, 0));
      expect(read(7)).toBe(patternValue(layout, 0, 1, 2));
      expect(read(0)).toBe(-2048);
    }
  });

  test('non-ASCII text gets SpecificCharacterSet ISO_IR 192 unless one is given', () => {
    expect(readInstance(buildInstance({ PatientName: 'Müller^Jürgen' }).buffer).dataset.SpecificCharacterSet).toBe('ISO_IR 192');
    expect(readInstance(buildInstance({ PatientName: 'Doe^John' }).buffer).dataset.SpecificCharacterSet).toBeUndefined();
  });

  test('the JPEG family needs 8 bits for baseline', () => {
    expect(() => buildInstance({ BitsAllocated: 16, transferSyntax: TransferSyntax.JPEGBaseline8Bit })).toThrow(/8-bit/);
  });
});

describe('Orthanc harness', () => {
  test('startOrthanc: loopback, own storage, authentication only with users, plugin only when asked', async () => {
    const secured = started(plain);
    const open = started(web);
    expect(secured.config).toMatchObject({ RemoteAccessAllowed: false, AuthenticationEnabled: true, DicomServerEnabled: false, Plugins: [] });
    expect(open.config).toMatchObject({ AuthenticationEnabled: false, DicomWeb: { Enable: true, Root: '/dicom-web/' } });
    expect(existsSync(secured.storageDir)).toBe(true);
    expect(secured.storageDir).not.toBe(open.storageDir);
    expect((await fetch(`${secured.url}/system`)).status).toBe(401);
    const wrong = await fetch(`${secured.url}/system`, { headers: { authorization: basicAuthorization('alice', 'nope') } });
    expect(wrong.status).toBe(401);
    expect(await getJson(secured, '/system')).toMatchObject({ Version: '1.10.1', HttpPort: secured.httpPort });
    expect(await getJson(secured, '/plugins')).not.toContain('dicom-web'); // only the built-in "explorer.js"
    expect(await getJson(open, '/plugins')).toContain('dicom-web');
  });

  test.each(ALL_SYNTAXES)('Orthanc accepts %s and gives back the values that were set', async (syntax) => {
    const orthanc = started(plain);
    const generated = instanceFor(syntax, ALL_SYNTAXES.indexOf(syntax));
    const answer = await uploadToOrthanc(orthanc.url, generated.buffer, { authorization: orthanc.authorization });
    expect(answer.Status).toBe('Success');

    const tags = (await getJson(orthanc, `/instances/${answer.ID}/tags?simplify`)) as Record<string, string>;
    expect(tags).toMatchObject({
      PatientName: 'Doe^Harness',
      PatientID: 'HARNESS-1',
      StudyInstanceUID: generated.tags.StudyInstanceUID,
      SeriesInstanceUID: generated.tags.SeriesInstanceUID,
      SOPInstanceUID: generated.tags.SOPInstanceUID,
      Modality: 'MR',
      Rows: '12',
      Columns: '20',
      NumberOfFrames: '2',
      WindowCenter: '300',
      PrivateCreator: 'Lunit',
    });
    expect(await (await fetch(`${orthanc.url}/instances/${answer.ID}/metadata/TransferSyntax`, { headers: { authorization: orthanc.authorization ?? '' } })).text()).toBe(syntax);
    const short = (await getJson(orthanc, `/instances/${answer.ID}/tags?short`)) as Record<string, unknown>;
    expect(short['0009,0010']).toBe('Lunit');
    if (syntax !== TransferSyntax.ImplicitVRLittleEndian) expect(short['0009,1001']).toBe('score 0.93'); // implicit: VR unknown, UN

    if (ORTHANC_CANNOT_DECODE.includes(syntax)) return;
    const layout = generated.tags;
    const tolerance = LOSSY_TOLERANCE[syntax] ?? 0;
    for (const frame of [0, 1]) {
      const response = await fetch(`${orthanc.url}/instances/${answer.ID}/frames/${frame}/numpy?rescale=0`, {
        headers: { authorization: orthanc.authorization ?? '' },
      });
      expect(response.status).toBe(200);
      const { shape, values } = parseNumpy(Buffer.from(await response.arrayBuffer()));
      expect(shape).toEqual([12, 20, 1]);
      let worst = 0;
      values.forEach((value, i) => {
        const expected = patternValue(layout, frame, Math.floor(i / 20), i % 20);
        worst = Math.max(worst, Math.abs(value - expected));
      });
      expect(worst).toBeLessThanOrEqual(tolerance);
    }
  });

  test('RGB images (RLE, JPEG baseline) decode in Orthanc to the pattern', async () => {
    const orthanc = started(plain);
    for (const syntax of [TransferSyntax.RLELossless, TransferSyntax.JPEGBaseline8Bit, TransferSyntax.JPEGLSLossless]) {
      const generated = buildInstance({ SamplesPerPixel: 3, Rows: 8, Columns: 8, transferSyntax: syntax, SOPClassUID: '1.2.840.10008.5.1.4.1.1.7', Modality: 'OT' });
      const answer = await uploadToOrthanc(orthanc.url, generated.buffer, { authorization: orthanc.authorization });
      expect(answer.Status).toBe('Success');
      const response = await fetch(`${orthanc.url}/instances/${answer.ID}/frames/0/numpy?rescale=0`, {
        headers: { authorization: orthanc.authorization ?? '' },
      });
      const { shape, values } = parseNumpy(Buffer.from(await response.arrayBuffer()));
      expect(shape).toEqual([8, 8, 3]);
      const tolerance = syntax === TransferSyntax.JPEGBaseline8Bit ? 24 : 0;
      const worst = Math.max(...values.map((v, i) => Math.abs(v - generated.pixels[i])));
      expect(worst).toBeLessThanOrEqual(tolerance);
    }
  });

  test('the DICOMweb plugin lists a generated study with its image, PDF and SR series', async () => {
    const orthanc = started(web);
    const study = makeStudy({ seed: 'harness/web', seriesCount: 2, instancesPerSeries: 3, PatientID: 'WEB-1', Modality: 'CT' });
    const pdf = makeNonImage({ kind: 'pdf', PatientID: 'WEB-1', StudyInstanceUID: study.StudyInstanceUID });
    const sr = makeNonImage({ kind: 'sr', PatientID: 'WEB-1', StudyInstanceUID: study.StudyInstanceUID });
    for (const buffer of [...study.buffers, pdf, sr]) {
      expect((await uploadToOrthanc(orthanc.url, buffer)).Status).toBe('Success');
    }
    const studies = (await getJson(orthanc, '/dicom-web/studies', { accept: 'application/dicom+json' })) as Array<
      Record<string, { Value?: unknown[] }>
    >;
    const found = studies.find((s) => s['0020000D']?.Value?.[0] === study.StudyInstanceUID);
    expect(found).toBeDefined();
    expect(found?.['00080061']?.Value).toEqual(['CT', 'DOC', 'SR']);
    expect(found?.['00201206']?.Value).toEqual([4]);
    expect(found?.['00201208']?.Value).toEqual([8]);
    const series = (await getJson(orthanc, `/dicom-web/studies/${study.StudyInstanceUID}/series`)) as unknown[];
    expect(series).toHaveLength(4);
  });

  test('stop() ends Orthanc and removes its directory', async () => {
    const orthanc = await startOrthanc();
    expect((await fetch(`${orthanc.url}/system`)).status).toBe(200);
    await orthanc.stop();
    expect(existsSync(orthanc.storageDir)).toBe(false);
    await expect(fetch(`${orthanc.url}/system`)).rejects.toThrow();
    await orthanc.stop(); // twice is harmless
  });
});
