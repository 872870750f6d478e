import request from 'supertest';
import { startTestGateway, uploadToBoth, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeNonImage } from '../helpers/dicom-factory';

/*
 * The embedded core against a real Orthanc 1.10.1, on the same files. Documented differences:
 *  - a malformed tag in /content (e.g. "zzzz") is 400 here, 500 ("Unknown DICOM tag") in Orthanc;
 *  - 404 answers carry an Orthanc-style JSON body here, an empty body in Orthanc.
 */
const STUDY = '1.2.826.0.1.3680043.8.498.4242';
const EXTRA = {
  '00090010': { vr: 'LO', Value: ['ACME 1.1'] },
  '00091001': { vr: 'LO', Value: ['secret value'] },
  '00091002': { vr: 'OB', Value: [new Uint8Array([1, 2, 3, 4]).buffer] },
  '00081250': {
    vr: 'SQ',
    Value: [
      { '00401101': { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['121'] }, '00080104': { vr: 'LO', Value: ['Meaning é'] } }] }, '00081155': { vr: 'UI', Value: ['1.2.3'] } },
      { '00081150': { vr: 'UI', Value: ['1.2.4'] } },
    ],
  },
  '00181310': { vr: 'US', Value: [1, 2, 3, 4] },
  '00189087': { vr: 'FD', Value: [0.1, 1000] },
  '00204000': { vr: 'LT', Value: ['x'.repeat(300)] },
  '00181030': { vr: 'LO', Value: [''] },
  '00280106': { vr: 'US', Value: [] },
};

function files(): Buffer[] {
  const common = { PatientID: 'P-TAGS', PatientName: 'Müller^Hans', StudyInstanceUID: STUDY, AccessionNumber: 'A-1', StudyDescription: 'Head/Neck' };
  return [
    makeInstance({ ...common, Modality: 'MR', SeriesDescription: 'T1', seed: 'tags-a', InstanceNumber: 1, extraElements: EXTRA as never }),
    makeInstance({ ...common, Modality: 'MR', SeriesDescription: 'T2', seed: 'tags-b', InstanceNumber: 2 }),
    makeNonImage({ ...common, kind: 'pdf', seed: 'tags-pdf', text: 'Odd length!' }),
  ];
}

describe('native tags and content routes: same answers as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const ids: Array<{ ID: string; ParentSeries: string; ParentStudy: string; ParentPatient: string }> = [];

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
    ids.push(...(await uploadToBoth(gateway, orthanc, files())));
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function theirs(path: string): Promise<{ status: number; type: string; body: Buffer }> {
    const response = await fetch(orthanc.url + path);
    return { status: response.status, type: response.headers.get('content-type') ?? '', body: Buffer.from(await response.arrayBuffer()) };
  }

  async function compareJson(path: string): Promise<unknown> {
    const ours = await request(gateway.app).get(path);
    const reference = await theirs(path);
    expect(reference.status).toBe(200);
    expect(ours.status).toBe(200);
    expect(ours.body).toEqual(JSON.parse(reference.body.toString('utf8')));
    return ours.body;
  }

  it('answers /tags in the full, simplify and short formats', async () => {
    for (const { ID } of ids) {
      for (const suffix of ['tags', 'tags?simplify', 'tags?short', 'simplified-tags', 'header', 'header?simplify', 'header?short', 'module']) {
        await compareJson(`/instances/${ID}/${suffix}`);
      }
    }
    const full = (await compareJson(`/instances/${ids[0].ID}/tags`)) as Record<string, { Type: string }>;
    expect(full['0008,1250'].Type).toBe('Sequence');
    expect(full['0020,4000'].Type).toBe('TooLong');
    expect(full['7fe0,0010'].Type).toBe('Null');
  });

  it('answers shared-tags, instances-tags and module at every level', async () => {
    const [{ ParentPatient, ParentStudy, ParentSeries }] = ids;
    for (const path of [`/patients/${ParentPatient}`, `/studies/${ParentStudy}`, `/series/${ParentSeries}`]) {
      for (const suffix of ['shared-tags', 'shared-tags?simplify', 'shared-tags?short', 'instances-tags', 'instances-tags?simplify', 'instances-tags?short', 'module', 'module?simplify']) {
        await compareJson(`${path}/${suffix}`);
      }
    }
    await compareJson(`/studies/${ParentStudy}/module-patient`);
  });

  it('answers raw /content values with the bytes of Orthanc', async () => {
    const image = ids[0].ID;
    await compareJson(`/instances/${image}/content`);
    await compareJson(`/instances/${image}/content/0008-1250`);
    await compareJson(`/instances/${image}/content/0008-1250/0`);
    await compareJson(`/instances/${image}/content/7fe0-0010`);
    for (const path of ['0010-0010', '0008-1250/0/0040-1101/0/0008-0104', '0009-1002', '0018-1310', '0028-0106', '0020-4000', '7fe0-0010/0', 'PatientName']) {
      const ours = await request(gateway.app).get(`/instances/${image}/content/${path}`).buffer(true).parse(binary);
      const reference = await theirs(`/instances/${image}/content/${path}`);
      expect([path, ours.status]).toEqual([path, reference.status]);
      expect(Buffer.compare(ours.body as Buffer, reference.body)).toBe(0);
    }
    const pdf = ids[2].ID;
    for (const path of [`/instances/${pdf}/content/0042-0011`, `/instances/${pdf}/pdf`]) {
      const ours = await request(gateway.app).get(path).buffer(true).parse(binary);
      const reference = await theirs(path);
      expect(ours.status).toBe(200);
      expect(ours.headers['content-type']).toContain(reference.type);
      expect(Buffer.compare(ours.body as Buffer, reference.body)).toBe(0);
    }
    expect((await request(gateway.app).get(`/instances/${pdf}/pdf`)).body.toString('latin1')).toMatch(/^%PDF-1\.4[\s\S]*%%EOF\n$/);
  });

  it('answers errors: malformed tag 400, missing tag or item 404, not a PDF 404, unknown instance 404', async () => {
    const image = ids[0].ID;
    expect((await request(gateway.app).get(`/instances/${image}/content/zzzz`)).status).toBe(400);
    for (const path of [`/instances/${image}/content/0010-9999`, `/instances/${image}/content/0008-1250/5`, `/instances/${image}/content/0008-1250/x`, `/instances/${image}/pdf`]) {
      expect([path, (await request(gateway.app).get(path)).status]).toEqual([path, (await theirs(path)).status]);
    }
    const unknown = await request(gateway.app).get('/instances/00000000-00000000-00000000-00000000-00000000/tags');
    expect(unknown.status).toBe(404);
    expect(unknown.body.HttpStatus).toBe(404);
    expect((await request(gateway.app).get('/studies/nope/shared-tags')).status).toBe(404);
  });
});

function binary(res: NodeJS.ReadableStream & { setEncoding(e: string): void }, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}
