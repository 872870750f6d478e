/**
 * QIDO-RS (PS3.18 §10.6) on both cores: matching, returned attributes, media types, paging, bad input,
 * character sets, and a diff against the reference Orthanc DICOMweb plugin fed with the same files.
 *
 * Differences with the reference plugin (1.7), all deliberate (see the diff tests at the end):
 *  - (0008,0005) is "ISO_IR 192" here: the core decodes every value to Unicode; the plugin re-encodes its
 *    answer in Orthanc's DefaultEncoding ("ISO_IR 100"), which loses characters outside Latin-1.
 *  - (0008,0056) InstanceAvailability "ONLINE" is returned (Table 10.6.3-3/-5); the plugin copies it only
 *    from files that happen to hold it.
 *  - /studies/{study}/series and /studies/{study}/instances do not repeat study-level attributes (§10.6.3.3.2:
 *    only when the target is All Series / All Instances); the plugin adds them whenever StudyInstanceUID was
 *    not a query key.
 *  - Attributes of a lower level named in includefield are not returned (§10.6.3.3.1: "Series or Instance
 *    Level Attributes contained in includefield parameters shall not be returned"); the plugin returns them.
 *  - A private data element comes with its private creator (§10.6.3.3); the plugin returns neither.
 *  - Unknown keywords, bad dates, limit=-1, offset=abc, a bad Accept are 400/406 with an Orthanc-style JSON
 *    body; the plugin ignores unknown keys, answers 500 to limit=-1 and JSON to any Accept.
 *  - multipart/related; type="application/dicom+xml" gives XML here; plugin 1.7 answers JSON.
 */
import { Readable } from 'node:stream';
import request from 'supertest';
import type { Response } from 'supertest';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeStudy, type GeneratedStudy, type InstanceOptions } from '../helpers/dicom-factory';
import { getMultipartBoundary, parseMultipart } from '../../src/dicom/multipart-parser';

type Attribute = { vr: string; Value?: unknown[]; InlineBinary?: string; BulkDataURI?: string };
type Dataset = Record<string, Attribute>;

const ROOT = '/dicom-web';
const HOST = 'gateway.test:8042';
const PRIVATE_CREATOR = { '00090010': { vr: 'LO', Value: ['Lunit'] }, '00091001': { vr: 'LO', Value: ['x1'] } };

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Part 10 bytes whose PatientName is `raw` (bytes as a latin1 string) under `charset`: dcmjs writes UTF-8 only. */
function withRawPatientName(options: InstanceOptions, charset: string, raw: string): Buffer {
  const bytes = Buffer.from(raw.length % 2 === 1 ? `${raw} ` : raw, 'latin1');
  const placeholder = 'Q'.repeat(bytes.length);
  const file = makeInstance({ ...options, PatientName: placeholder, SpecificCharacterSet: charset });
  const at = file.indexOf(placeholder, 0, 'latin1');
  if (at < 0) throw new Error('placeholder not found');
  bytes.copy(file, at);
  return file;
}

interface Fixtures {
  a: GeneratedStudy;
  b: GeneratedStudy;
  c: GeneratedStudy;
  /** PatientID → expected PatientName (PS3.5 Annex H/I/J examples and ISO 8859 sets). */
  charsets: Array<{ patientId: string; name: string; files: Buffer[] }>;
  files: Buffer[];
}

function makeFixtures(): Fixtures {
  const a = makeStudy({
    seed: 'qido-a',
    PatientID: 'QIDO-A',
    PatientName: 'Doe^Jane',
    PatientBirthDate: '19800101',
    PatientSex: 'F',
    StudyDate: '20240105',
    StudyTime: '101500',
    AccessionNumber: 'ACC-A',
    StudyDescription: 'Chest CT',
    StudyID: 'SA',
    ReferringPhysicianName: 'Who^Doctor',
    seriesCount: 2,
    instancesPerSeries: 2,
    seriesOptions: (s) =>
      s === 0 ? { Modality: 'CT', SeriesDescription: 'Axial', extraElements: PRIVATE_CREATOR } : { Modality: 'MR', SeriesDescription: 'Sagittal' },
  });
  const b = makeStudy({
    seed: 'qido-b',
    PatientID: 'QIDO-B',
    PatientName: 'Smith^John',
    StudyDate: '20230615',
    StudyTime: '083000',
    AccessionNumber: 'ACC-B',
    StudyDescription: 'Brain MR',
    Modality: 'MR',
    seriesCount: 1,
    instancesPerSeries: 1,
  });
  const c = makeStudy({
    seed: 'qido-c',
    PatientID: 'QIDO-C',
    PatientName: 'SMITH^Anna',
    StudyDate: '20221231',
    StudyTime: '235959',
    AccessionNumber: '',
    StudyDescription: 'Knee',
    Modality: 'CR',
    NumberOfFrames: 3,
    seriesCount: 1,
    instancesPerSeries: 1,
  });
  const charsetCases: Array<[string, string | undefined, string, string]> = [
    // [PatientID, charset (undefined: UTF-8 written by the factory), raw bytes or text, expected name]
    ['QIDO-CS-UTF8-ZH', undefined, 'Wang^XiaoDong=王^小東=', 'Wang^XiaoDong=王^小東'],
    ['QIDO-CS-UTF8-KO', undefined, 'Hong^Gildong=洪^吉洞=홍^길동', 'Hong^Gildong=洪^吉洞=홍^길동'],
    ['QIDO-CS-LATIN1', 'ISO_IR 100', 'Buc^J\xe9r\xf4me', 'Buc^Jérôme'],
    ['QIDO-CS-CYRILLIC', 'ISO_IR 144', '\xbb\xee\xdace\xdc\xd1yp\xd3', 'Люкceмбypг'],
    // PS3.5 H.3.1: ISO 2022 IR 87 (JIS X 0208) designated by escape sequences, no default G1 set
    [
      'QIDO-CS-JIS',
      '\\ISO 2022 IR 87',
      'Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B',
      'Yamada^Tarou=山田^太郎=やまだ^たろう',
    ],
    // PS3.5 I.2: ISO 2022 IR 149 (KS X 1001) in G1
    [
      'QIDO-CS-KSX',
      '\\ISO 2022 IR 149',
      'Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf',
      'Hong^Gildong=洪^吉洞=홍^길동',
    ],
  ];
  const charsets = charsetCases.map(([patientId, charset, raw, name]) => {
    const options: InstanceOptions = { seed: `qido-${patientId}`, PatientID: patientId, StudyDescription: 'Charset' };
    const file = charset === undefined ? makeInstance({ ...options, PatientName: raw }) : withRawPatientName(options, charset, raw);
    return { patientId, name, files: [file] };
  });
  return { a, b, c, charsets, files: [...a.buffers, ...b.buffers, ...c.buffers, ...charsets.flatMap((x) => x.files)] };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function values(dataset: Dataset, tag: string): unknown[] | undefined {
  return dataset[tag]?.Value;
}

function first(dataset: Dataset, tag: string): unknown {
  return dataset[tag]?.Value?.[0];
}

function uidsOf(answer: Dataset[], tag = '0020000D'): string[] {
  return answer.map((d) => String(first(d, tag))).sort();
}

/** JSON with object keys sorted, to compare attributes whatever the key order of each server. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record).sort().map((k) => `${JSON.stringify(k)}:${canonical(record[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function binary(res: NodeJS.ReadableStream & { setEncoding(e: string): void }, done: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}

async function xmlParts(response: Response): Promise<Array<{ headers: Record<string, string>; text: string }>> {
  const boundary = getMultipartBoundary(response.headers['content-type']);
  const parts: Array<{ headers: Record<string, string>; text: string }> = [];
  for await (const part of parseMultipart(Readable.from([response.body as Buffer]), boundary)) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.body) chunks.push(chunk as Buffer);
    parts.push({ headers: { ...part.headers }, text: Buffer.concat(chunks).toString('utf8') });
  }
  return parts;
}

describe.each(CORE_KINDS)('QIDO-RS on the %s core', (kind: CoreKind) => {
  let gateway: TestGateway;
  let fx: Fixtures;

  beforeAll(async () => {
    gateway = await startTestGateway(kind);
    fx = makeFixtures();
    for (const file of fx.files) await gateway.core.storeInstance({ buffer: file });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  // supertest listens on a new port per request: a fixed Host keeps RetrieveURL comparable between requests
  const qido = (path: string): request.Test => request(gateway.app).get(`${ROOT}${path}`).set('Host', HOST);
  const search = async (path: string): Promise<Dataset[]> => {
    const response = await qido(path);
    expect(response.status).toBe(200);
    return response.body as Dataset[];
  };
  /** The QIDO test studies only (leaves the charset studies out where a test is about A, B and C). */
  const ABC = 'PatientID=QIDO-A,QIDO-B,QIDO-C';

  // ------------------------------------------------------------------------------------------- matching

  describe('matching', () => {
    it('finds every study, and one by PatientID given as keyword or as tag', async () => {
      const all = await search('/studies');
      expect(all).toHaveLength(3 + fx.charsets.length);
      expect(uidsOf(all)).toEqual(expect.arrayContaining([fx.a, fx.b, fx.c].map((s) => s.StudyInstanceUID)));
      expect(all.map((d) => first(d, '00100020')).sort()).toEqual(['QIDO-A', 'QIDO-B', 'QIDO-C', ...fx.charsets.map((c) => c.patientId)].sort());
      for (const key of ['PatientID', '00100020', 'patientid']) {
        expect(uidsOf(await search(`/studies?${key}=QIDO-B`))).toEqual([fx.b.StudyInstanceUID]);
      }
      expect(await search('/studies?PatientID=NOBODY')).toEqual([]);
    });

    it('matches wildcards * and ? and is case-sensitive by default', async () => {
      expect(uidsOf(await search('/studies?PatientName=Smi*'))).toEqual([fx.b.StudyInstanceUID]);
      expect(uidsOf(await search('/studies?PatientName=?oe%5EJane'))).toEqual([fx.a.StudyInstanceUID]);
      expect(uidsOf(await search('/studies?PatientName=*mith*'))).toEqual([fx.b.StudyInstanceUID]);
      expect(await search('/studies?PatientName=smith*')).toEqual([]);
    });

    it('accepts fuzzymatching=true|false; fuzzy person-name matching ignores case', async () => {
      expect(uidsOf(await search('/studies?PatientName=smith*&fuzzymatching=true'))).toEqual(
        [fx.b.StudyInstanceUID, fx.c.StudyInstanceUID].sort(),
      );
      expect(await search('/studies?PatientName=smith*&fuzzymatching=false')).toEqual([]);
    });

    it('treats comma lists, backslash lists and repeated keys as one list', async () => {
      const expected = [fx.a.StudyInstanceUID, fx.b.StudyInstanceUID].sort();
      expect(uidsOf(await search('/studies?PatientID=QIDO-A,QIDO-B'))).toEqual(expected);
      expect(uidsOf(await search('/studies?PatientID=QIDO-A%5CQIDO-B'))).toEqual(expected);
      expect(uidsOf(await search('/studies?PatientID=QIDO-A&PatientID=QIDO-B'))).toEqual(expected);
      expect(uidsOf(await search(`/studies?StudyInstanceUID=${fx.a.StudyInstanceUID},${fx.c.StudyInstanceUID}`))).toEqual(
        [fx.a.StudyInstanceUID, fx.c.StudyInstanceUID].sort(),
      );
      expect(uidsOf(await search(`/studies?StudyInstanceUID=${fx.a.StudyInstanceUID}&StudyInstanceUID=${fx.b.StudyInstanceUID}`))).toEqual(expected);
    });

    it('matches date and time ranges', async () => {
      expect(uidsOf(await search(`/studies?${ABC}&StudyDate=20230101-20231231`))).toEqual([fx.b.StudyInstanceUID]);
      expect(uidsOf(await search(`/studies?${ABC}&StudyDate=20240101-`))).toEqual([fx.a.StudyInstanceUID]);
      expect(uidsOf(await search(`/studies?${ABC}&StudyDate=-20221231`))).toEqual([fx.c.StudyInstanceUID]);
      expect(uidsOf(await search(`/studies?${ABC}&StudyDate=20240105`))).toEqual([fx.a.StudyInstanceUID]);
      expect(uidsOf(await search(`/studies?${ABC}&StudyTime=080000-110000`))).toEqual([fx.a.StudyInstanceUID, fx.b.StudyInstanceUID].sort());
    });

    it('matches ModalitiesInStudy, and Modality on a study search without returning it', async () => {
      const withMr = [fx.a.StudyInstanceUID, fx.b.StudyInstanceUID].sort();
      expect(uidsOf(await search(`/studies?${ABC}&ModalitiesInStudy=MR`))).toEqual(withMr);
      const byModality = await search(`/studies?${ABC}&Modality=MR`);
      expect(uidsOf(byModality)).toEqual(withMr);
      expect(byModality[0]['00080060']).toBeUndefined();
    });

    it('searches series and instances, at every path', async () => {
      const [ct, mr] = fx.a.series;
      expect(uidsOf(await search('/series?Modality=CT&PatientID=QIDO-A'), '0020000E')).toEqual([ct.SeriesInstanceUID]);
      expect(uidsOf(await search(`/studies/${fx.a.StudyInstanceUID}/series`), '0020000E')).toEqual(
        [ct.SeriesInstanceUID, mr.SeriesInstanceUID].sort(),
      );
      expect(uidsOf(await search(`/studies/${fx.a.StudyInstanceUID}/series?Modality=MR`), '0020000E')).toEqual([mr.SeriesInstanceUID]);
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/series?SeriesNumber=7`)).toEqual([]);
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/instances`)).toHaveLength(4);
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/series/${mr.SeriesInstanceUID}/instances`)).toHaveLength(2);
      const second = await search(`/studies/${fx.a.StudyInstanceUID}/series/${mr.SeriesInstanceUID}/instances?InstanceNumber=2`);
      expect(uidsOf(second, '00080018')).toEqual([mr.instances[1].tags.SOPInstanceUID]);
      const sop = ct.instances[0].tags.SOPInstanceUID;
      expect(uidsOf(await search(`/instances?SOPInstanceUID=${sop}`), '00080018')).toEqual([sop]);
      expect(uidsOf(await search(`/instances?00080018=${sop}`), '00080018')).toEqual([sop]);
    });

    it('matches private data elements (checked on the files) and returns them with their creator', async () => {
      const [ct, mr] = fx.a.series;
      const inCt = await search(`/studies/${fx.a.StudyInstanceUID}/series/${ct.SeriesInstanceUID}/instances?00090010=Lunit&00091001=x1`);
      expect(inCt).toHaveLength(2);
      expect(inCt[0]['00090010']).toEqual({ vr: 'LO', Value: ['Lunit'] });
      // the native model carries no VR for private data elements: UN with the bytes inline (PS3.18 F.2.7)
      expect(inCt[0]['00091001']).toEqual({ vr: 'UN', InlineBinary: Buffer.from('x1').toString('base64') });
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/series/${ct.SeriesInstanceUID}/instances?00091001=other`)).toEqual([]);
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/series/${mr.SeriesInstanceUID}/instances?00091001=x1`)).toEqual([]);
    });

    it('answers InstanceAvailability matching itself: every instance is ONLINE', async () => {
      expect(await search(`/studies?${ABC}&InstanceAvailability=ONLINE`)).toHaveLength(3);
      expect(await search(`/studies?${ABC}&InstanceAvailability=OFFLINE`)).toEqual([]);
    });
  });

  // ------------------------------------------------------------------------------------------- returned attributes

  describe('returned attributes', () => {
    it('returns the study attributes of Table 10.6.3-3 as DICOM JSON', async () => {
      const response = await qido('/studies?PatientID=QIDO-A');
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/dicom+json');
      const [study] = response.body as Dataset[];
      expect(Object.keys(study)).toEqual([
        '00080005', '00080020', '00080030', '00080050', '00080056', '00080061', '00080090', '00081190',
        '00100010', '00100020', '00100030', '00100040', '0020000D', '00200010', '00201206', '00201208',
      ]);
      expect(study['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
      expect(study['00080020']).toEqual({ vr: 'DA', Value: ['20240105'] });
      expect(study['00080030']).toEqual({ vr: 'TM', Value: ['101500'] });
      expect(study['00080050']).toEqual({ vr: 'SH', Value: ['ACC-A'] });
      expect(study['00080056']).toEqual({ vr: 'CS', Value: ['ONLINE'] });
      expect(study['00080061']).toEqual({ vr: 'CS', Value: ['CT', 'MR'] });
      expect(study['00080090']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Who^Doctor' }] });
      expect(study['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane' }] });
      expect(study['00100040']).toEqual({ vr: 'CS', Value: ['F'] });
      expect(study['0020000D']).toEqual({ vr: 'UI', Value: [fx.a.StudyInstanceUID] });
      expect(study['00201206']).toEqual({ vr: 'IS', Value: [2] });
      expect(study['00201208']).toEqual({ vr: 'IS', Value: [4] });
      const url = String(first(study, '00081190'));
      expect(study['00081190'].vr).toBe('UR');
      expect(url).toBe(`http://${HOST}/dicom-web/studies/${fx.a.StudyInstanceUID}`);
    });

    it('gives an attribute present with an empty value as { vr } only', async () => {
      const [study] = await search('/studies?PatientID=QIDO-C');
      expect(study['00080050']).toEqual({ vr: 'SH' });
    });

    it('returns series attributes; study ones only when searching all series', async () => {
      const [ct] = fx.a.series;
      const [inStudy] = await search(`/studies/${fx.a.StudyInstanceUID}/series?Modality=CT`);
      expect(inStudy['00080060']).toEqual({ vr: 'CS', Value: ['CT'] });
      expect(inStudy['0008103E']).toEqual({ vr: 'LO', Value: ['Axial'] });
      expect(inStudy['00200011']).toEqual({ vr: 'IS', Value: [1] });
      expect(inStudy['00201209']).toEqual({ vr: 'IS', Value: [2] });
      expect(inStudy['0020000E']).toEqual({ vr: 'UI', Value: [ct.SeriesInstanceUID] });
      expect(inStudy['0020000D']).toEqual({ vr: 'UI', Value: [fx.a.StudyInstanceUID] });
      expect(inStudy['00100010']).toBeUndefined();
      expect(String(first(inStudy, '00081190'))).toMatch(new RegExp(`/dicom-web/studies/${fx.a.StudyInstanceUID}/series/${ct.SeriesInstanceUID}$`));

      const [all] = await search('/series?Modality=CT&PatientID=QIDO-A');
      expect(all['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane' }] });
      expect(all['00080020']).toEqual({ vr: 'DA', Value: ['20240105'] });
      expect(all['00080056']).toEqual({ vr: 'CS', Value: ['ONLINE'] });
      // the cores compute counts for the resource searched, not for its study
      expect(all['00201206']).toBeUndefined();
      expect(Object.keys(all)).toEqual(Object.keys(all).sort());
    });

    it('returns instance attributes; series and study ones according to the path', async () => {
      const [ct] = fx.a.series;
      const sop = ct.instances[1].tags.SOPInstanceUID;
      const [deep] = await search(`/studies/${fx.a.StudyInstanceUID}/series/${ct.SeriesInstanceUID}/instances?SOPInstanceUID=${sop}`);
      expect(deep['00080016']).toEqual({ vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] });
      expect(deep['00080018']).toEqual({ vr: 'UI', Value: [sop] });
      expect(deep['00200013']).toEqual({ vr: 'IS', Value: [2] });
      expect(deep['00280010']).toEqual({ vr: 'US', Value: [16] });
      expect(deep['00280011']).toEqual({ vr: 'US', Value: [16] });
      expect(deep['00280100']).toEqual({ vr: 'US', Value: [16] });
      expect(deep['00080056']).toEqual({ vr: 'CS', Value: ['ONLINE'] });
      expect(deep['0020000E']).toEqual({ vr: 'UI', Value: [ct.SeriesInstanceUID] });
      expect(deep['00080060']).toBeUndefined();
      expect(deep['00100010']).toBeUndefined();
      expect(String(first(deep, '00081190'))).toMatch(
        new RegExp(`/dicom-web/studies/${fx.a.StudyInstanceUID}/series/${ct.SeriesInstanceUID}/instances/${sop}$`),
      );

      const [inStudy] = await search(`/studies/${fx.a.StudyInstanceUID}/instances?SOPInstanceUID=${sop}`);
      expect(inStudy['00080060']).toEqual({ vr: 'CS', Value: ['CT'] });
      expect(inStudy['00100010']).toBeUndefined();

      const [all] = await search(`/instances?SOPInstanceUID=${sop}`);
      expect(all['00080060']).toEqual({ vr: 'CS', Value: ['CT'] });
      expect(all['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane' }] });

      const [multiframe] = await search('/instances?PatientID=QIDO-C');
      expect(multiframe['00280008']).toEqual({ vr: 'IS', Value: [3] });
    });

    it('adds includefield attributes: keywords, tags, comma lists, repeated keys and "all"', async () => {
      for (const include of ['StudyDescription', '00081030', 'StudyDescription,InstitutionName', 'InstitutionName&includefield=00081030']) {
        const [study] = await search(`/studies?PatientID=QIDO-A&includefield=${include}`);
        expect(study['00081030']).toEqual({ vr: 'LO', Value: ['Chest CT'] });
      }
      const [all] = await search('/studies?PatientID=QIDO-A&includefield=all');
      expect(all['00081030']).toEqual({ vr: 'LO', Value: ['Chest CT'] });
      expect(all['00200010']).toEqual({ vr: 'SH', Value: ['SA'] });
      const [series] = await search(`/studies/${fx.a.StudyInstanceUID}/series?Modality=CT&includefield=all`);
      expect(series['00080070']).toBeUndefined(); // no Manufacturer in the files
      expect(series['0008103E']).toEqual({ vr: 'LO', Value: ['Axial'] });
      expect(series['00081030']).toBeUndefined(); // "all" means all attributes of the level searched
    });

    it('does not return lower-level attributes named in includefield (§10.6.3.3.1)', async () => {
      const [study] = await search('/studies?PatientID=QIDO-A&includefield=SeriesDescription,Modality,SOPInstanceUID');
      expect(study['0008103E']).toBeUndefined();
      expect(study['00080060']).toBeUndefined();
      expect(study['00080018']).toBeUndefined();
      const [series] = await search('/series?PatientID=QIDO-B&includefield=StudyDescription,SOPClassUID');
      expect(series['00081030']).toEqual({ vr: 'LO', Value: ['Brain MR'] });
      expect(series['00080016']).toBeUndefined();
    });

    it('returns the matching keys, universal ones included', async () => {
      const [study] = await search('/studies?PatientID=QIDO-A&StudyDescription=*&InstitutionName=');
      expect(study['00081030']).toEqual({ vr: 'LO', Value: ['Chest CT'] });
      expect(study['00080080']).toBeUndefined(); // asked for, absent from the files: nothing to return
    });

    it('builds RetrieveURL from X-Forwarded-Host/-Proto, Forwarded and Host', async () => {
      const url = async (headers: Record<string, string>): Promise<string> => {
        let test = qido('/studies?PatientID=QIDO-B');
        for (const [name, value] of Object.entries(headers)) test = test.set(name, value);
        const response = await test;
        return String(first((response.body as Dataset[])[0], '00081190'));
      };
      const uid = fx.b.StudyInstanceUID;
      expect(await url({ Host: 'pacs.local:8042' })).toBe(`http://pacs.local:8042/dicom-web/studies/${uid}`);
      expect(await url({ 'X-Forwarded-Host': 'proxy.example.org', 'X-Forwarded-Proto': 'https' })).toBe(
        `https://proxy.example.org/dicom-web/studies/${uid}`,
      );
      expect(await url({ Forwarded: 'for=10.0.0.1;host="viewer.example.org:8443";proto=https, for=10.0.0.2' })).toBe(
        `https://viewer.example.org:8443/dicom-web/studies/${uid}`,
      );
    });
  });

  // ------------------------------------------------------------------------------------------- paging

  describe('paging', () => {
    it('passes limit and offset to the core: pages are stable and follow the full answer', async () => {
      const full = await search(`/studies?${ABC}`);
      expect(full).toHaveLength(3);
      expect(await search(`/studies?${ABC}&limit=1&offset=1`)).toEqual([full[1]]);
      const pages = [
        ...(await search(`/studies?${ABC}&limit=2`)),
        ...(await search(`/studies?${ABC}&limit=2&offset=2`)),
      ];
      expect(pages).toEqual(full);
      expect(await search(`/studies?${ABC}&offset=3`)).toEqual([]);
      expect(await search(`/studies?${ABC}&limit=0`)).toEqual(full);
    });

    it('pages correctly with a filter the core checks on files', async () => {
      const [ct] = fx.a.series;
      const path = `/studies/${fx.a.StudyInstanceUID}/instances?00091001=x1`;
      const full = await search(path);
      expect(uidsOf(full, '00080018')).toEqual(ct.instances.map((i) => i.tags.SOPInstanceUID).sort());
      expect(await search(`${path}&limit=1&offset=1`)).toEqual([full[1]]);
    });
  });

  // ------------------------------------------------------------------------------------------- media types

  describe('media types', () => {
    it('answers application/json when asked, honouring q-values', async () => {
      const plain = await qido('/studies?PatientID=QIDO-B').set('Accept', 'application/json');
      expect(plain.headers['content-type']).toBe('application/json');
      expect(uidsOf(plain.body as Dataset[])).toEqual([fx.b.StudyInstanceUID]);
      const preferred = await qido('/studies?PatientID=QIDO-B').set('Accept', 'application/json;q=0.5, application/dicom+json');
      expect(preferred.headers['content-type']).toBe('application/dicom+json');
      const wildcard = await qido('/studies?PatientID=QIDO-B').set('Accept', '*/*');
      expect(wildcard.headers['content-type']).toBe('application/dicom+json');
    });

    it('answers one Native DICOM Model XML part per match for multipart/related; type="application/dicom+xml"', async () => {
      const response = await qido(`/studies?${ABC}`)
        .set('Accept', 'application/dicom+json;q=0.2, multipart/related; type="application/dicom+xml"')
        .buffer(true)
        .parse(binary);
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom\+xml"; boundary=/);
      const parts = await xmlParts(response);
      expect(parts).toHaveLength(3);
      expect(parts[0].headers['content-type']).toBe('application/dicom+xml; charset=utf-8');
      const doe = parts.find((p) => p.text.includes(fx.a.StudyInstanceUID));
      expect(doe?.text).toContain('<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">');
      expect(doe?.text).toContain(
        '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName><GivenName>Jane</GivenName></Alphabetic></PersonName></DicomAttribute>',
      );
      expect(doe?.text).toContain('<DicomAttribute tag="00201208" vr="IS" keyword="NumberOfStudyRelatedInstances"><Value number="1">4</Value></DicomAttribute>');
    });

    it('accepts the "accept" query parameter (PS3.18 §8.3.3.1)', async () => {
      const response = await qido('/studies?PatientID=QIDO-B&accept=application/json').set('Accept', 'application/dicom+json');
      expect(response.headers['content-type']).toBe('application/json');
    });

    it('answers an empty search with 200 and []', async () => {
      const response = await qido('/studies?PatientID=NOBODY');
      expect(response.status).toBe(200);
      expect(response.text).toBe('[]');
    });

    it('answers 406 with what it offers, and 400 to a malformed Accept', async () => {
      const refused = await qido('/studies').set('Accept', 'image/png');
      expect(refused.status).toBe(406);
      expect(refused.body).toMatchObject({ HttpStatus: 406, HttpError: 'Not Acceptable' });
      expect(refused.body.Details).toContain('application/dicom+json');
      expect(refused.body.Details).toContain('multipart/related; type="application/dicom+xml"');
      const plainXml = await qido('/studies').set('Accept', 'application/dicom+xml');
      expect(plainXml.status).toBe(406);
      const malformed = await qido('/studies').set('Accept', ';;;');
      expect(malformed.status).toBe(400);
      expect(malformed.body).toMatchObject({ HttpStatus: 400 });
    });
  });

  // ------------------------------------------------------------------------------------------- bad input

  describe('bad input and other methods', () => {
    it.each([
      ['an unknown keyword', '/studies?NotAKeyword=x', /NotAKeyword/],
      ['a malformed tag', '/studies?0010002X=x', /0010002X/],
      ['a date that is not YYYYMMDD', '/studies?StudyDate=2024-01-01', /StudyDate/],
      ['an impossible date', '/studies?StudyDate=20241301', /StudyDate/],
      ['a range that ends before it starts', '/studies?StudyDate=20240201-20240101', /starts after it ends/],
      ['a bad time', '/studies?StudyTime=2500', /StudyTime/],
      ['limit=-1', '/studies?limit=-1', /limit/],
      ['offset=abc', '/studies?offset=abc', /offset/],
      ['fuzzymatching=maybe', '/studies?fuzzymatching=maybe', /fuzzymatching/],
      ['an unknown includefield', '/studies?includefield=NoSuchThing', /NoSuchThing/],
      ['matching inside a sequence', '/studies?ReferencedStudySequence.ReferencedSOPInstanceUID=1.2', /sequence/],
      ['a wildcard in a path UID', '/studies/1.2.*/series', /path/],
    ])('answers 400 with an Orthanc-style JSON body to %s', async (_what, path, message) => {
      const response = await qido(path);
      expect(response.status).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.body).toMatchObject({ HttpError: 'Bad Request', HttpStatus: 400, Method: 'GET', Uri: `${ROOT}${path}` });
      expect(String(response.body.Message)).toMatch(message);
    });

    it('answers 200 [] for an unknown study or series in the path (a path UID is a match key)', async () => {
      for (const path of ['/studies/1.2.3.4/series', '/studies/1.2.3.4/instances', `/studies/${fx.a.StudyInstanceUID}/series/1.2.3.4/instances`]) {
        const response = await qido(path);
        expect(response.status).toBe(200);
        expect(response.body).toEqual([]);
      }
      // a query UID that contradicts the path matches nothing
      expect(await search(`/studies/${fx.a.StudyInstanceUID}/series?StudyInstanceUID=${fx.b.StudyInstanceUID}`)).toEqual([]);
    });

    it('answers 405 with Allow to methods no DICOMweb service handles', async () => {
      for (const path of ['/series', '/instances', `/studies/${fx.a.StudyInstanceUID}/series`, `/studies/${fx.a.StudyInstanceUID}/instances`]) {
        const response = await request(gateway.app).put(`${ROOT}${path}`);
        expect(response.status).toBe(405);
        expect(response.headers.allow).toBe('GET');
        expect(response.body).toMatchObject({ HttpStatus: 405 });
      }
      const deleted = await request(gateway.app).delete(`${ROOT}/studies`);
      expect(deleted.status).toBe(405);
      expect(deleted.headers.allow).toBe('GET, POST');
      // POST /studies belongs to STOW-RS
      expect((await request(gateway.app).post(`${ROOT}/studies`).send('')).status).not.toBe(405);
    });
  });

  // ------------------------------------------------------------------------------------------- character sets

  describe('character sets (PS3.5 examples)', () => {
    it('returns names decoded from UTF-8, Latin-1, Cyrillic, JIS and KS X 1001 files, as UTF-8 with ISO_IR 192', async () => {
      for (const { patientId, name } of fx.charsets) {
        const [study] = await search(`/studies?PatientID=${patientId}`);
        const [alphabetic, ideographic, phonetic] = name.split('=');
        const expected: Record<string, string> = { Alphabetic: alphabetic };
        if (ideographic) expected.Ideographic = ideographic;
        if (phonetic) expected.Phonetic = phonetic;
        expect(study['00100010']).toEqual({ vr: 'PN', Value: [expected] });
        expect(study['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
      }
    });

    it('matches non-ASCII values given percent-encoded in UTF-8', async () => {
      const latin1 = fx.charsets.find((c) => c.patientId === 'QIDO-CS-LATIN1');
      expect((await search(`/studies?PatientName=${encodeURIComponent('Buc^Jé*')}`)).map((d) => first(d, '00100020'))).toEqual([latin1?.patientId]);
      expect((await search(`/studies?PatientName=${encodeURIComponent('*王*')}`)).map((d) => first(d, '00100020'))).toEqual(['QIDO-CS-UTF8-ZH']);
      expect((await search(`/studies?PatientName=${encodeURIComponent('Люк*')}`)).map((d) => first(d, '00100020'))).toEqual(['QIDO-CS-CYRILLIC']);
      expect((await search(`/studies?PatientName=${encodeURIComponent('*山田*')}`)).map((d) => first(d, '00100020'))).toEqual(['QIDO-CS-JIS']);
    });
  });

  // ------------------------------------------------------------------------------------------- reference plugin

  describe('diff against the reference Orthanc DICOMweb plugin', () => {
    let reference: OrthancProcess;
    beforeAll(async () => {
      reference = await startOrthanc({ dicomWeb: true });
      for (const file of fx.files) await uploadToOrthanc(reference.url, file);
    });
    afterAll(async () => {
      await reference?.stop();
    });

    /** Differences per attribute over all matches: "+tag" only ours, "-tag" only theirs, "~tag" other value. */
    async function diff(path: string, key: string): Promise<string[]> {
      const ours = await search(path);
      const response = await fetch(`${reference.url}${ROOT}${path}`, { headers: { Forwarded: `host=${HOST};proto=http`, Accept: 'application/dicom+json' } });
      expect(response.status).toBe(200);
      const theirs = (await response.json()) as Dataset[];
      expect(uidsOf(ours, key)).toEqual(uidsOf(theirs, key));
      const byKey = new Map(theirs.map((d) => [String(first(d, key)), d]));
      const found = new Set<string>();
      for (const mine of ours) {
        const other = byKey.get(String(first(mine, key))) as Dataset;
        for (const tag of new Set([...Object.keys(mine), ...Object.keys(other)])) {
          if (!(tag in other)) found.add(`+${tag}`);
          else if (!(tag in mine)) found.add(`-${tag}`);
          else if (canonical(mine[tag]) !== canonical(other[tag])) found.add(`~${tag}`);
        }
      }
      return [...found].sort();
    }

    // documented differences (see the top of this file): everything else must be identical
    const OURS_ONLY_AVAILABILITY = '+00080056';
    const CHARSET = '~00080005';
    const STUDY_LEVEL = ['00080020', '00080030', '00080050', '00080090', '00100010', '00100020', '00100030', '00100040', '00200010'];
    const SERIES_LEVEL = ['00080060', '0008103E', '00200011'];
    const theirsOnly = (tags: string[]): string[] => tags.map((tag) => `-${tag}`);
    const sorted = (list: string[]): string[] => [...list].sort();

    it('agrees on study searches (lists, ranges)', async () => {
      expect(await diff(`/studies?${ABC}`, '0020000D')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET]));
      expect(await diff('/studies?StudyDate=20230101-20231231', '0020000D')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET]));
    });

    it('agrees on series and instance searches of the whole store', async () => {
      expect(await diff('/series?PatientID=QIDO-A', '0020000E')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET]));
      expect(await diff('/instances?PatientID=QIDO-A', '00080018')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET]));
    });

    it('differs where the plugin repeats parent attributes below a study or series of the path', async () => {
      const a = fx.a.StudyInstanceUID;
      const ct = fx.a.series[0].SeriesInstanceUID;
      expect(await diff(`/studies/${a}/series`, '0020000E')).toEqual(sorted([CHARSET, ...theirsOnly(STUDY_LEVEL)]));
      expect(await diff(`/studies/${a}/instances`, '00080018')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET, ...theirsOnly(STUDY_LEVEL)]));
      expect(await diff(`/studies/${a}/series/${ct}/instances`, '00080018')).toEqual(
        sorted([OURS_ONLY_AVAILABILITY, CHARSET, ...theirsOnly(STUDY_LEVEL), ...theirsOnly(SERIES_LEVEL)]),
      );
    });

    it('differs on lower-level includefields and private data elements', async () => {
      const a = fx.a.StudyInstanceUID;
      const ct = fx.a.series[0].SeriesInstanceUID;
      expect(await diff('/studies?PatientID=QIDO-A&includefield=StudyDescription,SeriesDescription', '0020000D')).toEqual(
        sorted([OURS_ONLY_AVAILABILITY, CHARSET, '-0008103E']),
      );
      expect(await diff(`/studies/${a}/series/${ct}/instances?00090010=Lunit&00091001=x1`, '00080018')).toEqual(
        sorted([OURS_ONLY_AVAILABILITY, CHARSET, '+00090010', '+00091001', ...theirsOnly(STUDY_LEVEL), ...theirsOnly(SERIES_LEVEL)]),
      );
    });

    it('agrees on Latin-1 names; the plugin loses characters outside Latin-1', async () => {
      expect(await diff('/studies?PatientID=QIDO-CS-*', '0020000D')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET, '~00100010']));
      expect(await diff('/studies?PatientID=QIDO-CS-LATIN1', '0020000D')).toEqual(sorted([OURS_ONLY_AVAILABILITY, CHARSET]));
    });
  });

  // ------------------------------------------------------------------------------------------- configuration

  describe('configuration', () => {
    let configured: TestGateway;
    beforeAll(async () => {
      configured = await startTestGateway(kind, {
        DicomWeb: { QidoCaseSensitive: false, Host: 'pacs.example.org:8443', Ssl: true, PublicRoot: '/pacs/dicom-web/' },
      });
      for (const file of [...fx.b.buffers, ...fx.c.buffers]) await configured.core.storeInstance({ buffer: file });
    });
    afterAll(async () => {
      await configured?.close();
    });

    it('honours QidoCaseSensitive=false and DicomWeb Host/Ssl/PublicRoot (over forwarding headers)', async () => {
      const response = await request(configured.app).get(`${ROOT}/studies?PatientName=smith*`).set('X-Forwarded-Host', 'other.example.org');
      const answer = response.body as Dataset[];
      expect(uidsOf(answer)).toEqual([fx.b.StudyInstanceUID, fx.c.StudyInstanceUID].sort());
      expect(answer.map((d) => first(d, '00081190')).sort()).toEqual(
        [fx.b.StudyInstanceUID, fx.c.StudyInstanceUID].map((uid) => `https://pacs.example.org:8443/pacs/dicom-web/studies/${uid}`).sort(),
      );
    });
  });
});
