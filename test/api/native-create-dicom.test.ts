import request from 'supertest';
import sharp from 'sharp';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';

/*
 * POST /tools/create-dicom of the embedded core against a real Orthanc 1.10.1: the same request to both, then the
 * same tags (generated UIDs and time stamps aside) and the same pixel data or PDF bytes. Deliberate differences:
 *  - text with non-ASCII characters is written in UTF-8 and labelled "ISO_IR 192" (dcmjs writes UTF-8), where
 *    Orthanc writes the default encoding (ISO_IR 100); the decoded values are the same;
 *  - an unknown tag name is 400 here (Orthanc: 500 "Unknown DICOM tag"), an unsupported content type 415
 *    (Orthanc: 500 "Not implemented yet"), a bad first item of a Content list 400 (Orthanc: 404);
 *  - the pre-0.9.3 form without "Tags" is refused (400); Orthanc still accepts it;
 *  - private creator elements are written as LO (Orthanc: UN); private data elements are UN in both (there is no
 *    private dictionary here to look "PrivateCreator" up in, and Orthanc's knows no creator of the tests either);
 *  - error bodies carry our OrthancStatus for the HTTP status, not Orthanc's specific codes (2020, ...).
 */

const GENERATED = [
  '0010,0020', '0020,000d', '0020,000e', '0008,0018', // identifiers
  '0008,0012', '0008,0013', '0008,0020', '0008,0021', '0008,0022', '0008,0023', '0008,0030', '0008,0031', '0008,0032', '0008,0033',
];

type Json = Record<string, unknown>;

async function png(raw: Buffer, width: number, height: number, channels: 1 | 3 | 4, sixteen = false): Promise<string> {
  let image = sharp(raw, { raw: { width, height, channels, ...(sixteen ? { depth: 'ushort' as const } : {}) } });
  if (channels === 1) image = image.toColourspace(sixteen ? 'grey16' : 'b-w');
  return `data:image/png;base64,${(await image.png().toBuffer()).toString('base64')}`;
}

async function jpeg(raw: Buffer, width: number, height: number, channels: 1 | 3): Promise<string> {
  let image = sharp(raw, { raw: { width, height, channels } });
  if (channels === 1) image = image.toColourspace('b-w');
  return `data:image/jpeg;base64,${(await image.jpeg({ quality: 90 }).toBuffer()).toString('base64')}`;
}

function ramp(length: number, step: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * step) % 256));
}

const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');

describe('POST /tools/create-dicom: same instances as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function theirs(method: string, path: string, body?: string): Promise<{ status: number; type: string; body: Buffer }> {
    const response = await fetch(orthanc.url + path, { method, body });
    return { status: response.status, type: response.headers.get('content-type') ?? '', body: Buffer.from(await response.arrayBuffer()) };
  }

  async function theirsJson(path: string): Promise<Json> {
    const answer = await theirs('GET', path);
    expect(answer.status).toBe(200);
    return JSON.parse(answer.body.toString('utf8')) as Json;
  }

  async function oursBinary(path: string): Promise<Buffer> {
    const answer = await request(gateway.app).get(path).buffer(true).parse(binary);
    expect(answer.status).toBe(200);
    return answer.body as Buffer;
  }

  /** The same request to both; both must answer `status`. */
  async function create(body: unknown, status = 200): Promise<{ ours: Json; reference: Json }> {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const ours = await request(gateway.app).post('/tools/create-dicom').set('content-type', 'application/json').send(text);
    const reference = await theirs('POST', '/tools/create-dicom', text);
    expect([ours.status, reference.status]).toEqual([status, status]);
    return { ours: ours.body as Json, reference: reference.body.length > 0 ? (JSON.parse(reference.body.toString('utf8')) as Json) : {} };
  }

  function withoutGenerated(tags: Json): Json {
    const copy = { ...tags };
    for (const key of GENERATED) {
      // present in both or in neither
      expect([key, key in copy]).toEqual([key, key in tags]);
      delete copy[key];
    }
    return copy;
  }

  /** Same tags (generated values aside) and, for images, the same frame bytes. */
  async function compareInstances(ourId: string, theirId: string): Promise<Json> {
    const ours = (await request(gateway.app).get(`/instances/${ourId}/tags?short`)).body as Json;
    const reference = await theirsJson(`/instances/${theirId}/tags?short`);
    expect(withoutGenerated(ours)).toEqual(withoutGenerated(reference));
    for (const key of GENERATED) if (key in reference) expect(typeof ours[key]).toBe('string');
    if ('7fe0,0010' in reference) {
      const frame = await oursBinary(`/instances/${ourId}/frames/0/raw`);
      expect(Buffer.compare(frame, (await theirs('GET', `/instances/${theirId}/frames/0/raw`)).body)).toBe(0);
    }
    return ours;
  }

  it('creates an instance from tags alone, with generated identifiers and time stamps', async () => {
    const { ours, reference } = await create({ Tags: { PatientName: 'Doe^John', Modality: 'CT', StudyDescription: 'Head', SeriesNumber: '3' } });
    expect(Object.keys(ours).sort()).toEqual(Object.keys(reference).sort());
    expect(ours.Status).toBe('Success');
    expect(ours.Path).toBe(`/instances/${ours.ID}`);
    const tags = await compareInstances(ours.ID as string, reference.ID as string);
    expect(tags['0010,0020']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    for (const [key, level] of [['0020,000d', 2], ['0020,000e', 3], ['0008,0018', 4]] as const) {
      expect(tags[key]).toMatch(new RegExp(`^1\\.2\\.276\\.0\\.7230010\\.3\\.1\\.${level}\\.\\d+\\.\\d+\\.\\d+\\.\\d+$`));
    }
    expect(tags['0008,0013']).toMatch(/^\d{6}\.000000$/);
    // the instance is in the index: the patient it names exists
    expect((await request(gateway.app).get(`/patients/${ours.ParentPatient}`)).body.MainDicomTags.PatientName).toBe('Doe^John');
  });

  it('keeps identifiers given with Force, so both stores give the same Orthanc IDs', async () => {
    const tags = {
      PatientID: 'CREATE-1', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.77', SeriesInstanceUID: '1.2.826.0.1.3680043.8.498.77.1',
      SOPInstanceUID: '1.2.826.0.1.3680043.8.498.77.1.1', SOPClassUID: '1.2.840.10008.5.1.4.1.1.7', StudyDate: '20200102',
      ReferencedStudySequence: [{ ReferencedSOPClassUID: '1.2.3', ReferencedSOPInstanceUID: '1.2.3.4' }, {}],
      ImageType: 'DERIVED\\SECONDARY', SliceThickness: '1.50', Rows: '12', RescaleSlope: null,
      '0009,0010': 'ACME', '0009,1001': 'private',
    };
    const { ours, reference } = await create({ Tags: tags, Force: true });
    expect(ours).toEqual(reference);
    const compared = await compareInstances(ours.ID as string, reference.ID as string);
    expect(compared['0008,0020']).toBe('20200102');
    const header = (await request(gateway.app).get(`/instances/${ours.ID}/header?short`)).body as Json;
    expect(header['0002,0002']).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(header['0002,0003']).toBe(tags.SOPInstanceUID);
  });

  it('embeds PNG images: grey 8 and 16 bits, RGB and RGBA (alpha dropped)', async () => {
    const grey16 = Buffer.alloc(4 * 3 * 2);
    for (let i = 0; i < 12; i++) grey16.writeUInt16LE(i * 5000, i * 2);
    for (const content of [
      await png(ramp(5 * 4, 13), 5, 4, 1),
      await png(grey16, 4, 3, 1, true),
      await png(ramp(3 * 2 * 3, 29), 3, 2, 3),
      await png(ramp(3 * 2 * 4, 31), 3, 2, 4),
    ]) {
      const { ours, reference } = await create({ Tags: { PatientName: 'PNG', Modality: 'OT' }, Content: content });
      await compareInstances(ours.ID as string, reference.ID as string);
    }
  });

  it('embeds JPEG images (grey and colour) with the same decoded pixels', async () => {
    for (const content of [await jpeg(ramp(16 * 8, 7), 16, 8, 1), await jpeg(ramp(16 * 8 * 3, 11), 16, 8, 3)]) {
      const { ours, reference } = await create({ Tags: { PatientName: 'JPEG' }, Content: content });
      await compareInstances(ours.ID as string, reference.ID as string);
    }
  });

  it('embeds a PDF as Encapsulated PDF Storage, keeping a given Modality', async () => {
    for (const tags of [{ PatientName: 'PDF' }, { PatientName: 'PDF', Modality: 'DOC' }]) {
      const { ours, reference } = await create({ Tags: tags, Content: `data:application/pdf;base64,${PDF.toString('base64')}` });
      const compared = await compareInstances(ours.ID as string, reference.ID as string);
      expect(compared['0008,0016']).toBe('1.2.840.10008.5.1.4.1.1.104.1');
      const pdf = await oursBinary(`/instances/${ours.ID}/pdf`);
      expect(Buffer.compare(pdf, (await theirs('GET', `/instances/${reference.ID}/pdf`)).body)).toBe(0);
    }
  });

  it('creates a series from a list of contents, items with their own tags', async () => {
    const grey = await png(ramp(4 * 4, 17), 4, 4, 1);
    const body = { Tags: { PatientName: 'SERIES', Modality: 'OT' }, Content: [grey, { Content: grey, Tags: { SeriesDescription: 'second' } }, grey] };
    const { ours, reference } = await create(body);
    expect(Object.keys(ours).sort()).toEqual(['ID', 'Path', 'Status']);
    expect(ours.Path).toBe(`/series/${ours.ID}`);
    expect(ours.Status).toBe(reference.Status);
    const ourInstances = (await request(gateway.app).get(`/series/${ours.ID}/instances`)).body as Json[];
    const theirInstances = (await theirsJson(`/series/${reference.ID}/instances`)) as unknown as Json[];
    expect(ourInstances).toHaveLength(3);
    const byNumber = (list: Json[]): Json[] =>
      [...list].sort((a, b) => Number((a.MainDicomTags as Json).InstanceNumber) - Number((b.MainDicomTags as Json).InstanceNumber));
    const [mine, their] = [byNumber(ourInstances), byNumber(theirInstances)];
    for (let i = 0; i < 3; i++) await compareInstances(mine[i].ID as string, their[i].ID as string);
    expect(new Set(mine.map((i) => (i.MainDicomTags as Json).SOPInstanceUID)).size).toBe(3);
  });

  it('attaches to a parent study or series, inheriting the parent modules', async () => {
    const file = makeInstance({ PatientID: 'P-PARENT', PatientName: 'Parent^Pat', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.88', StudyDescription: 'Parent study', Modality: 'MR', SeriesDescription: 'Parent series', seed: 'parent' });
    const stored = (await request(gateway.app).post('/instances').send(file)).body as Json;
    const their = await uploadToOrthanc(orthanc.url, file);
    expect(stored.ParentStudy).toBe(their.ParentStudy);
    const parents: Array<[string, string[]]> = [
      [stored.ParentPatient as string, ['ParentPatient']],
      [stored.ParentStudy as string, ['ParentPatient', 'ParentStudy']],
      [stored.ParentSeries as string, ['ParentPatient', 'ParentStudy', 'ParentSeries']],
    ];
    for (const [parent, inherited] of parents) {
      const { ours, reference } = await create({ Tags: { InstanceNumber: '7' }, Parent: parent });
      for (const key of inherited) expect([key, ours[key]]).toEqual([key, stored[key]]);
      for (const key of inherited) expect([key, reference[key]]).toEqual([key, stored[key]]);
      await compareInstances(ours.ID as string, reference.ID as string);
    }
    // inherited values cannot be overridden without Force
    await create({ Tags: { PatientName: 'Other' }, Parent: stored.ParentStudy }, 400);
  });

  it('labels non-ASCII text as UTF-8 (a deliberate difference), with the same decoded values', async () => {
    const { ours, reference } = await create({ Tags: { PatientName: 'Jodogne^Sébastien', StudyDescription: 'Crâne' } });
    const mine = (await request(gateway.app).get(`/instances/${ours.ID}/tags?short`)).body as Json;
    const their = await theirsJson(`/instances/${reference.ID}/tags?short`);
    expect([mine['0008,0005'], their['0008,0005']]).toEqual(['ISO_IR 192', 'ISO_IR 100']);
    expect([mine['0010,0010'], mine['0008,1030']]).toEqual(['Jodogne^Sébastien', 'Crâne']);
    expect([their['0010,0010'], their['0008,1030']]).toEqual(['Jodogne^Sébastien', 'Crâne']);
  });

  it('answers errors with the status and message of Orthanc', async () => {
    // fixed identifiers: the same instance ID in both stores
    const fixed = { PatientID: 'ERR', StudyInstanceUID: '1.2.3.1', SeriesInstanceUID: '1.2.3.1.1', SOPInstanceUID: '1.2.3.1.1.1' };
    const instance = (await create({ Tags: fixed, Force: true })).ours.ID;
    const cases: unknown[] = [
      'nope', [], { Tags: [] }, { Tags: { StudyInstanceUID: '1.2.3' } }, { Tags: { PixelData: 'x' } },
      { Tags: {}, Content: 'notdata' }, { Tags: {}, Content: 'data:application/pdf;base64,aGVsbG8=' }, { Tags: {}, Content: 12 },
      { Tags: {}, Parent: 'nope' }, { Tags: {}, Parent: instance }, { Tags: {}, Force: 'yes' }, { Tags: {}, InterpretBinaryTags: 1 },
      { Tags: {}, PrivateCreator: 1 }, { Tags: { SpecificCharacterSet: 'Klingon' } }, { Tags: { Rows: 'abc' } },
      { Tags: { Rows: ['a'] } }, { Tags: { Rows: 12 } }, { Tags: { PatientName: ['x'] } }, { Tags: { '0018,1310': '1\\2' } },
    ];
    for (const body of cases) {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const ours = await request(gateway.app).post('/tools/create-dicom').send(text);
      const reference = await theirs('POST', '/tools/create-dicom', text);
      const expected = JSON.parse(reference.body.toString('utf8')) as Json;
      expect([text, ours.status, ours.body.Message]).toEqual([text, reference.status, expected.Message]);
      if (expected.Details !== undefined) expect([text, ours.body.Details]).toEqual([text, expected.Details]);
    }
  });

  it('answers the documented differences: unknown tag 400, unsupported content 415, bad first item 400, no Tags 400', async () => {
    const cases: Array<[unknown, number, number]> = [
      [{ Tags: { Foo: 'x' } }, 400, 500],
      [{ Tags: {}, Content: 'data:text/plain;base64,aGVsbG8=' }, 415, 500],
      [{ Tags: {}, Content: [12] }, 400, 404],
      [{ PatientName: 'V1' }, 400, 200],
    ];
    for (const [body, ourStatus, theirStatus] of cases) {
      const text = JSON.stringify(body);
      expect([text, (await request(gateway.app).post('/tools/create-dicom').send(text)).status]).toEqual([text, ourStatus]);
      expect([text, (await theirs('POST', '/tools/create-dicom', text)).status]).toEqual([text, theirStatus]);
    }
  });

  it('stores nothing when an item of a series fails', async () => {
    const before = (await request(gateway.app).get('/series')).body.length;
    const theirsBefore = ((await theirsJson('/series')) as unknown as unknown[]).length;
    const grey = await png(ramp(4, 1), 2, 2, 1);
    await create({ Tags: {}, Content: [grey, 'notdata'] }, 400);
    expect((await request(gateway.app).get('/series')).body.length).toBe(before);
    expect(((await theirsJson('/series')) as unknown as unknown[]).length).toBe(theirsBefore);
  });
});

function binary(res: NodeJS.ReadableStream & { setEncoding(e: string): void }, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}
