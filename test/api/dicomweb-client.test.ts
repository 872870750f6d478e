import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeStudy } from '../helpers/dicom-factory';

const SERVERS = '/dicom-web/servers';

async function orthancGet(orthanc: OrthancProcess, path: string): Promise<unknown> {
  const response = await fetch(`${orthanc.url}${path}`, { headers: { authorization: orthanc.authorization ?? '' } });
  expect(response.status).toBe(200);
  return response.json();
}

describe('DICOMweb client against a real Orthanc + DICOMweb plugin (Basic auth)', () => {
  let orthanc: OrthancProcess;
  let gateway: TestGateway;
  const study = makeStudy({ seed: 'client-orthanc', seriesCount: 2, instancesPerSeries: 2, Rows: 8, Columns: 8 });

  beforeAll(async () => {
    orthanc = await startOrthanc({ dicomWeb: true, users: { u: 'p' } });
    gateway = await startTestGateway('embedded', {
      DicomWeb: {
        Servers: {
          orthanc: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'p', HttpHeaders: { 'X-Token': 'very-secret' } },
          wrongpass: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'nope-secret' },
        },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  it('lists servers, with secrets hidden when expanded', async () => {
    const names = await request(gateway.app).get(SERVERS).expect(200);
    expect(names.body).toEqual(['orthanc', 'wrongpass']);
    const expanded = await request(gateway.app).get(`${SERVERS}?expand`).expect(200);
    expect(expanded.body.orthanc).toMatchObject({ Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: null, HttpHeaders: { 'X-Token': null } });
    expect(JSON.stringify(expanded.body)).not.toMatch(/very-secret|"p"|nope-secret/);
    const ops = await request(gateway.app).get(`${SERVERS}/orthanc`).expect(200);
    expect(ops.body).toEqual(['get', 'post', 'qido', 'retrieve', 'stow', 'wado']);
    await request(gateway.app).get(`${SERVERS}/nope`).expect(404);
  });

  it('creates, replaces and deletes servers at runtime', async () => {
    await request(gateway.app).put(`${SERVERS}/extra`).send({ Url: 'http://127.0.0.1:9/dicom-web', HasDelete: true, Password: 'x' }).expect(400);
    await request(gateway.app).put(`${SERVERS}/extra`).send({ Url: 'ftp://127.0.0.1/' }).expect(400);
    await request(gateway.app).put(`${SERVERS}/extra`).send({ Url: 'http://127.0.0.1:9/dicom-web', HasDelete: true }).expect(200);
    expect((await request(gateway.app).get(`${SERVERS}/extra`).expect(200)).body).toEqual(['delete', 'get', 'post', 'qido', 'retrieve', 'stow', 'wado']);
    const expanded = await request(gateway.app).get(`${SERVERS}?expand`).expect(200);
    expect(expanded.body.extra.Url).toBe('http://127.0.0.1:9/dicom-web/');
    await request(gateway.app).put(`${SERVERS}/extra`).send({ Url: 'http://127.0.0.1:9/other/' }).expect(200);
    expect((await request(gateway.app).get(`${SERVERS}/extra`).expect(200)).body).not.toContain('delete');
    await request(gateway.app).delete(`${SERVERS}/extra`).expect(200);
    await request(gateway.app).delete(`${SERVERS}/extra`).expect(404);
    await request(gateway.app).get(`${SERVERS}/extra`).expect(404);
  });

  it('refuses URIs outside the server base (SSRF guard) and unknown servers', async () => {
    for (const Uri of ['http://127.0.0.1:1/x', '//evil.example/x', '../system', 'studies/../../system', '%2e%2e/system', 'a\\..\\b']) {
      const res = await request(gateway.app).post(`${SERVERS}/orthanc/get`).send({ Uri });
      expect([Uri, res.status]).toEqual([Uri, 400]);
      expect(res.body.Message).toMatch(/Uri/);
    }
    await request(gateway.app).post(`${SERVERS}/unknown/get`).send({ Uri: '/studies' }).expect(404);
    await request(gateway.app).post(`${SERVERS}/orthanc/get`).send({}).expect(400);
  });

  it('stows instances of the embedded core to Orthanc, then reads them back with get and qido', async () => {
    let studyId = '';
    for (const buffer of study.buffers) {
      const res = await request(gateway.app).post('/instances').set('content-type', 'application/dicom').send(buffer).expect(200);
      studyId = res.body.ParentStudy as string;
    }
    const stow = await request(gateway.app).post(`${SERVERS}/orthanc/stow`).send({ Resources: [studyId], Synchronous: true }).expect(200);
    expect(stow.body).toMatchObject({ Server: 'orthanc', InstancesCount: '4', FailedInstancesCount: '0', NetworkSizeMB: '0' });
    expect(await orthancGet(orthanc, '/instances')).toHaveLength(4);

    const get = await request(gateway.app).post(`${SERVERS}/orthanc/get`).send({ Uri: '/studies', Arguments: { StudyInstanceUID: study.StudyInstanceUID } }).expect(200);
    expect(get.headers['content-type']).toMatch(/application\/dicom\+json/);
    expect(JSON.parse(get.text as string)).toHaveLength(1);

    const qido = await request(gateway.app).post(`${SERVERS}/orthanc/qido`).send({ Uri: '/studies/' + study.StudyInstanceUID + '/series' }).expect(200);
    expect(qido.body).toHaveLength(2);
    expect(qido.body[0].StudyInstanceUID).toBe(study.StudyInstanceUID);

    // asynchronous: a job whose Content is the synchronous answer (bounded polling)
    const async = await request(gateway.app).post(`${SERVERS}/orthanc/stow`).send({ Resources: [studyId], Synchronous: false }).expect(200);
    let job: Record<string, unknown> = {};
    for (let tries = 0; tries < 200 && job.State !== 'Success' && job.State !== 'Failure'; tries++) {
      if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      job = (await request(gateway.app).get(async.body.Path as string).expect(200)).body;
    }
    expect(job).toMatchObject({ State: 'Success', Content: { Server: 'orthanc', InstancesCount: '4', FailedInstancesCount: '0' } });
    await request(gateway.app).post(`${SERVERS}/orthanc/stow`).send({ Resources: ['unknown-id'] }).expect(404);
  });

  it('answers 502 with the remote status when Orthanc refuses, without echoing credentials', async () => {
    const [first] = (await request(gateway.app).get('/instances').expect(200)).body as string[];
    const res = await request(gateway.app).post(`${SERVERS}/wrongpass/stow`).send({ Resources: [first] }).expect(502);
    expect(res.body).toMatchObject({ HttpStatus: 502 });
    expect(res.body.Message).toMatch(/HTTP 401/);
    expect(JSON.stringify(res.body)).not.toMatch(/nope-secret|Basic /);
  });

  it('retrieves a study from Orthanc into a fresh embedded gateway', async () => {
    const fresh = await startTestGateway('embedded', {
      DicomWeb: { Servers: { orthanc: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'p' } } },
    });
    try {
      const res = await request(fresh.app)
        .post(`${SERVERS}/orthanc/retrieve`)
        .send({ Resources: [{ Study: study.StudyInstanceUID }, { Study: study.StudyInstanceUID, Series: study.series[0].SeriesInstanceUID }] })
        .expect(200);
      expect(res.body.ReceivedInstancesCount).toBe('6');
      const ids = (await request(fresh.app).get('/instances').expect(200)).body as string[];
      expect(ids.sort()).toEqual([...new Set(res.body.Instances as string[])].sort());
      expect(ids).toHaveLength(4);
      await request(fresh.app).post(`${SERVERS}/orthanc/retrieve`).send({ Resources: [{ Instance: '1.2' }] }).expect(400);
    } finally {
      await fresh.close();
    }
  });

  // a remote core stores several received parts at once: every one must arrive, whatever order they end in
  it('retrieves a study from Orthanc into a gateway over another Orthanc (remote core)', async () => {
    const over = await startTestGateway('remote', {
      DicomWeb: { Servers: { orthanc: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'p' } } },
    });
    try {
      const res = await request(over.app)
        .post(`${SERVERS}/orthanc/retrieve`)
        .send({ Resources: [{ Study: study.StudyInstanceUID }, { Study: study.StudyInstanceUID, Series: study.series[0].SeriesInstanceUID }] })
        .expect(200);
      expect(res.body.ReceivedInstancesCount).toBe('6');
      expect(res.body.Instances).toHaveLength(6);
      const held = (await request(over.app).get('/instances').expect(200)).body as string[];
      expect(held.sort()).toEqual([...new Set(res.body.Instances as string[])].sort());
      expect(held).toHaveLength(4);
    } finally {
      await over.close();
    }
  });

  it('stows a whole patient from a gateway over another Orthanc (remote core)', async () => {
    const over = await startTestGateway('remote', {
      DicomWeb: { Servers: { orthanc: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'p' } } },
    });
    try {
      const patient = makeStudy({ seed: 'client-remote-patient', PatientID: 'REMOTE-PATIENT', seriesCount: 1, instancesPerSeries: 3, Rows: 4, Columns: 4 });
      let patientId = '';
      for (const buffer of patient.buffers) patientId = (await over.core.storeInstance({ buffer })).ParentPatient;
      const stow = await request(over.app).post(`${SERVERS}/orthanc/stow`).send({ Resources: [patientId] }).expect(200);
      expect(stow.body).toMatchObject({ InstancesCount: '3', FailedInstancesCount: '0' });
      expect(await orthancGet(orthanc, `/patients/${patientId}/instances`)).toHaveLength(3);
      await request(over.app).post(`${SERVERS}/orthanc/stow`).send({ Resources: ['0000-no-such-id'] }).expect(404);
    } finally {
      await over.close();
    }
  });

  it('wado stores one series from Orthanc, byte-identical', async () => {
    const fresh = await startTestGateway('embedded', {
      DicomWeb: { Servers: { orthanc: { Url: `${orthanc.url}/dicom-web/`, Username: 'u', Password: 'p' } } },
    });
    try {
      const series = study.series[1];
      const res = await request(fresh.app)
        .post(`${SERVERS}/orthanc/wado`)
        .send({ Uri: `/studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}` })
        .expect(200);
      expect(res.body.InstancesCount).toBe(2);
      for (const id of res.body.Instances as string[]) {
        const ours = await request(fresh.app).get(`/instances/${id}/file`).buffer(true).parse((r, cb) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => cb(null, Buffer.concat(chunks)));
        });
        const theirs = await fetch(`${orthanc.url}/instances/${id}/file`, { headers: { authorization: orthanc.authorization ?? '' } });
        expect(Buffer.compare(ours.body as Buffer, Buffer.from(await theirs.arrayBuffer()))).toBe(0);
      }
    } finally {
      await fresh.close();
    }
  });
});

interface Recorded {
  parts: number;
  bytes: number;
  chunked: boolean;
  contentLength?: number;
}

/** A loopback STOW-RS server that records every request and accepts every instance (or fails the first). */
async function startRecorder(failFirst = false): Promise<{ url: string; requests: Recorded[]; close(): Promise<void> }> {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const boundary = /boundary="?([^";]+)"?/.exec(req.headers['content-type'] ?? '')?.[1] ?? '<none>';
      const parts = body.toString('latin1').split(`--${boundary}\r\n`).length - 1;
      const cl = req.headers['content-length'];
      requests.push({ parts, bytes: body.length, chunked: req.headers['transfer-encoding'] === 'chunked', contentLength: cl ? Number(cl) : undefined });
      const item = { '00081150': { vr: 'UI', Value: ['1.2'] } };
      const answer: Record<string, unknown> = { '00081199': { vr: 'SQ', Value: Array.from({ length: parts }, () => item) } };
      if (failFirst && requests.length === 1) answer['00081198'] = { vr: 'SQ', Value: [item] };
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/dicom-web/`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('STOW-RS client chunking (StowMaxInstances / StowMaxSize)', () => {
  // 400 x 400 x 16 bits ≈ 320 kB per file: three fit in 1 MB, four do not.
  const study = makeStudy({ seed: 'client-chunks', seriesCount: 1, instancesPerSeries: 7, Rows: 400, Columns: 400, BitsAllocated: 16 });

  async function stowWith(dicomWeb: Record<string, unknown>, server: { url: string }, chunked = true): Promise<request.Response> {
    const gateway = await startTestGateway('embedded', {
      DicomWeb: { ...dicomWeb, Servers: { rec: { Url: server.url, ChunkedTransfers: chunked } } },
    });
    try {
      let studyId = '';
      for (const buffer of study.buffers) studyId = (await gateway.core.storeInstance({ buffer })).ParentStudy;
      return await request(gateway.app).post(`${SERVERS}/rec/stow`).send({ Resources: [studyId] });
    } finally {
      await gateway.close();
    }
  }

  it.each([
    [3, 0, [3, 3, 1]],
    [0, 0, [7]],
    [0, 1, [3, 3, 1]],
    [2, 1, [2, 2, 2, 1]],
    [10, 1, [3, 3, 1]],
  ])('StowMaxInstances %i, StowMaxSize %i MB → requests of %j instances', async (maxInstances, maxSize, expected) => {
    const recorder = await startRecorder();
    try {
      const res = await stowWith({ StowMaxInstances: maxInstances, StowMaxSize: maxSize }, recorder);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ InstancesCount: '7', FailedInstancesCount: '0', NetworkSizeMB: '2' });
      expect(recorder.requests.map((r) => r.parts)).toEqual(expected);
      const fileSize = study.buffers[0].length;
      for (const r of recorder.requests) {
        expect(r.chunked).toBe(true);
        expect(r.bytes).toBeGreaterThan(r.parts * fileSize);
        if (maxSize > 0) expect(r.bytes).toBeLessThan(maxSize * 1024 * 1024 + r.parts * 1024);
      }
    } finally {
      await recorder.close();
    }
  });

  it('sends Content-Length instead of chunks when ChunkedTransfers is false, and counts failures', async () => {
    const recorder = await startRecorder(true);
    try {
      const res = await stowWith({ StowMaxInstances: 4, StowMaxSize: 0 }, recorder, false);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ InstancesCount: '7', FailedInstancesCount: '1' });
      expect(recorder.requests.map((r) => r.parts)).toEqual([4, 3]);
      for (const r of recorder.requests) {
        expect(r.chunked).toBe(false);
        expect(r.contentLength).toBe(r.bytes);
      }
    } finally {
      await recorder.close();
    }
  });
});
