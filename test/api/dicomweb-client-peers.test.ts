import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startGatewayProcess, removeDir, type GatewayProcess } from '../helpers/gateway-process';
import { makeStudy } from '../helpers/dicom-factory';
import { hasOpenssl, makeCertificates } from '../helpers/tls-certificates';

const SERVERS = '/dicom-web/servers';

describe('DICOMweb client against a second gateway process (embedded core, Basic auth)', () => {
  let peer: GatewayProcess;
  let gateway: TestGateway;
  const study = makeStudy({ seed: 'client-peer', seriesCount: 2, instancesPerSeries: 2, Rows: 8, Columns: 8 });
  const peerServers = (url: string): Record<string, unknown> => ({
    DicomWeb: {
      Servers: {
        peer: { Url: `${url}/dicom-web/`, Username: 'peer', Password: 'pw' },
        wrongpass: { Url: `${url}/dicom-web/`, Username: 'peer', Password: 'nope-secret' },
      },
    },
  });

  async function peerGet(path: string): Promise<unknown> {
    const response = await fetch(`${peer.url}${path}`, { headers: { authorization: `Basic ${Buffer.from('peer:pw').toString('base64')}` } });
    expect(response.status).toBe(200);
    return response.json();
  }

  // long: the first run may compile dist/ before the process can start
  beforeAll(async () => {
    peer = await startGatewayProcess({ AuthenticationEnabled: true, RegisteredUsers: { peer: 'pw' } });
    gateway = await startTestGateway('embedded', peerServers(peer.url));
  }, 300_000);

  afterAll(async () => {
    await gateway?.close();
    await peer?.stop();
    if (peer) removeDir(peer.dir);
  });

  it('stows to the peer, then reads back with get and qido', async () => {
    let studyId = '';
    for (const buffer of study.buffers) studyId = (await gateway.core.storeInstance({ buffer })).ParentStudy;
    const stow = await request(gateway.app).post(`${SERVERS}/peer/stow`).send({ Resources: [studyId], Synchronous: true }).expect(200);
    expect(stow.body).toMatchObject({ Server: 'peer', InstancesCount: '4', FailedInstancesCount: '0' });
    expect(await peerGet('/instances')).toHaveLength(4);

    const get = await request(gateway.app).post(`${SERVERS}/peer/get`).send({ Uri: '/studies', Arguments: { StudyInstanceUID: study.StudyInstanceUID } }).expect(200);
    expect(get.headers['content-type']).toMatch(/application\/dicom\+json/);
    expect(JSON.parse(get.text as string)).toHaveLength(1);
    const qido = await request(gateway.app).post(`${SERVERS}/peer/qido`).send({ Uri: `/studies/${study.StudyInstanceUID}/series` }).expect(200);
    expect(qido.body).toHaveLength(2);
  });

  it('answers 502 on a wrong password without echoing it', async () => {
    const [first] = (await request(gateway.app).get('/instances').expect(200)).body as string[];
    const stow = await request(gateway.app).post(`${SERVERS}/wrongpass/stow`).send({ Resources: [first] }).expect(502);
    const qido = await request(gateway.app).post(`${SERVERS}/wrongpass/qido`).send({ Uri: '/studies' }).expect(502);
    for (const res of [stow, qido]) {
      expect(res.body.Message).toMatch(/HTTP 401/);
      expect(JSON.stringify(res.body)).not.toMatch(/nope-secret|Basic /);
    }
    // get is a pass-through by design: the remote 401 is relayed, minus its WWW-Authenticate challenge
    const get = await request(gateway.app).post(`${SERVERS}/wrongpass/get`).send({ Uri: '/studies' }).expect(401);
    expect(get.headers['www-authenticate']).toBeUndefined();
    expect(get.text).not.toMatch(/nope-secret/);
  });

  it('retrieves the study from the peer into a fresh gateway', async () => {
    const fresh = await startTestGateway('embedded', peerServers(peer.url));
    try {
      const res = await request(fresh.app).post(`${SERVERS}/peer/retrieve`).send({ Resources: [{ Study: study.StudyInstanceUID }] }).expect(200);
      expect(res.body.ReceivedInstancesCount).toBe('4');
      expect((await request(fresh.app).get('/instances').expect(200)).body).toHaveLength(4);
    } finally {
      await fresh.close();
    }
  });

  it('wado stores what one WADO-RS Uri answers, synchronously or as a job', async () => {
    const fresh = await startTestGateway('embedded', peerServers(peer.url));
    try {
      const [first, second] = study.series;
      const sync = await request(fresh.app).post(`${SERVERS}/peer/wado`).send({ Uri: `/studies/${study.StudyInstanceUID}/series/${first.SeriesInstanceUID}` }).expect(200);
      expect(sync.body.InstancesCount).toBe(2);
      expect(((await request(fresh.app).get('/instances').expect(200)).body as string[]).sort()).toEqual([...(sync.body.Instances as string[])].sort());

      const job = await request(fresh.app)
        .post(`${SERVERS}/peer/wado`)
        .send({ Uri: `/studies/${study.StudyInstanceUID}/series/${second.SeriesInstanceUID}`, Synchronous: false })
        .expect(200);
      expect(job.body).toEqual({ ID: expect.any(String), Path: `/jobs/${job.body.ID}` });
      let state = '';
      for (let i = 0; i < 100 && state !== 'Success' && state !== 'Failure'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const info = await request(fresh.app).get(`/jobs/${job.body.ID}`).expect(200);
        state = info.body.State;
        if (state === 'Success') expect(info.body.Content).toMatchObject({ ReceivedInstancesCount: '2' });
      }
      expect(state).toBe('Success');
      expect((await request(fresh.app).get('/instances').expect(200)).body).toHaveLength(4);

      await request(fresh.app).post(`${SERVERS}/peer/wado`).send({ Uri: '/studies/1.2.3.4.5' }).expect(502);
      await request(fresh.app).post(`${SERVERS}/peer/wado`).send({ Uri: 'http://127.0.0.1:1/studies' }).expect(400);
    } finally {
      await fresh.close();
    }
  });

  it('delete removes a series, then a study, from a server with HasDelete only', async () => {
    const [first] = study.series;
    const body = { Level: 'Series', StudyInstanceUID: study.StudyInstanceUID, SeriesInstanceUID: first.SeriesInstanceUID };
    const refused = await request(gateway.app).post(`${SERVERS}/peer/delete`).send(body).expect(400);
    expect(refused.body.Message).toMatch(/HasDelete/);
    await request(gateway.app).put(`${SERVERS}/deleter`).send({ Url: `${peer.url}/dicom-web/`, Username: 'peer', Password: 'pw', HasDelete: true }).expect(200);
    await request(gateway.app).post(`${SERVERS}/deleter/delete`).send({ Level: 'Series', StudyInstanceUID: study.StudyInstanceUID }).expect(400);
    await request(gateway.app).post(`${SERVERS}/deleter/delete`).send({ Level: 'Patient', StudyInstanceUID: study.StudyInstanceUID }).expect(400);
    expect(await peerGet('/instances')).toHaveLength(4);
    await request(gateway.app).post(`${SERVERS}/deleter/delete`).send(body).expect(200, {});
    expect(await peerGet('/instances')).toHaveLength(2);
    // the series is gone: the remote 404 becomes a 502 naming it
    const again = await request(gateway.app).post(`${SERVERS}/deleter/delete`).send(body).expect(502);
    expect(again.body.Message).toMatch(/HTTP 404/);
    await request(gateway.app).post(`${SERVERS}/deleter/delete`).send({ Level: 'Study', StudyInstanceUID: study.StudyInstanceUID }).expect(200, {});
    expect(await peerGet('/instances')).toHaveLength(0);
  });
});

(hasOpenssl() ? describe : describe.skip)('DICOMweb client with an HTTPS server requiring a client certificate', () => {
  let dir = '';
  let server: https.Server;
  let gateway: TestGateway;
  const clientNames: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gateway-mtls-'));
    makeCertificates(dir);
    const file = (name: string): Buffer => readFileSync(join(dir, name));
    server = https.createServer({ key: file('server.key'), cert: file('server.crt'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      clientNames.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? ''));
      if (req.method === 'GET' && /\/studies(\?|$)/.test(req.url ?? '')) {
        res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]');
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web/`;
    gateway = await startTestGateway('embedded', {
      HttpsCACertificates: join(dir, 'ca.crt'),
      DicomWeb: {
        Servers: {
          mtls: { Url: url, CertificateFile: join(dir, 'client.crt'), CertificateKeyFile: join(dir, 'client.key') },
          nocert: { Url: url },
        },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sends the client certificate and trusts the server through HttpsCACertificates', async () => {
    const res = await request(gateway.app).post(`${SERVERS}/mtls/get`).send({ Uri: '/studies' }).expect(200);
    expect(JSON.parse(res.text as string)).toEqual([]);
    expect(clientNames).toEqual(['gateway-client']);
  });

  it('fails with 502 without a client certificate', async () => {
    const res = await request(gateway.app).post(`${SERVERS}/nocert/get`).send({ Uri: '/studies' });
    expect(res.status).toBe(502);
    expect(clientNames).toEqual(['gateway-client']);
  });
});
