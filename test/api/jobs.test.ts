import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { JobEngine, type JobContext } from '../../src/server/jobs';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeStudy } from '../helpers/dicom-factory';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `done` holds, at most `limitMs` (bounded: a stuck job fails the test instead of hanging it). */
async function until<T>(read: () => T | Promise<T>, done: (value: T) => boolean, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met after ${limitMs} ms: ${JSON.stringify(value)}`);
    await sleep(25);
  }
}

/** A job that waits for `release()` (or its signal). */
function gatedJob(): { work: (context: JobContext) => Promise<Record<string, unknown>>; release: () => void; started: () => boolean } {
  let release = (): void => undefined;
  let started = false;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    started: () => started,
    release: () => release(),
    work: async ({ signal }) => {
      started = true;
      await new Promise<void>((resolve, reject) => {
        void gate.then(resolve);
        signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
      return { done: true };
    },
  };
}

describe('JobEngine', () => {
  it('runs two jobs at once, the highest priority of the waiting ones next', async () => {
    const engine = new JobEngine({ concurrency: 2 });
    const jobs = [gatedJob(), gatedJob(), gatedJob(), gatedJob()];
    const ids = jobs.map((job, n) => engine.submit({ type: 'Test', priority: n === 3 ? 5 : 0, work: job.work }));
    expect(ids.map((id) => engine.describe(id)?.State)).toEqual(['Running', 'Running', 'Pending', 'Pending']);
    jobs[0].release();
    await until(() => engine.describe(ids[3])?.State, (state) => state === 'Running');
    expect(engine.describe(ids[2])?.State).toBe('Pending');
    expect(engine.describe(ids[0])).toMatchObject({ State: 'Success', Progress: 100, ErrorCode: 0, Content: { done: true } });
    jobs.forEach((job) => job.release());
    await until(() => ids.map((id) => engine.describe(id)?.State), (states) => states.every((s) => s === 'Success'));
    await engine.close();
  });

  it('pauses and resumes a waiting job, refuses to pause a running one, cancels and resubmits', async () => {
    const engine = new JobEngine({ concurrency: 1 });
    const first = gatedJob();
    const second = gatedJob();
    const a = engine.submit({ type: 'Test', work: first.work });
    const b = engine.submit({ type: 'Test', work: second.work });
    expect(() => engine.pause(a)).toThrow(/running job cannot be paused/);
    engine.pause(b);
    engine.cancel(a);
    await until(() => engine.describe(a)?.State, (state) => state === 'Failure');
    expect(engine.describe(a)).toMatchObject({ ErrorCode: 37, ErrorDescription: 'Canceled job' });
    expect(engine.describe(b)?.State).toBe('Paused'); // a paused job does not take the free slot
    engine.resume(b);
    expect(engine.describe(b)?.State).toBe('Running');
    expect(() => engine.resubmit(b)).toThrow(/Only a failed job/);
    second.release();
    await until(() => engine.describe(b)?.State, (state) => state === 'Success');
    first.release(); // its gate is open now: the resubmitted run succeeds
    engine.resubmit(a);
    await until(() => engine.describe(a)?.State, (state) => state === 'Success');
    expect(engine.describe(a)).toMatchObject({ ErrorCode: 0, ErrorDescription: 'Success' });
    await engine.close();
  });

  it('reports failures with Orthanc error codes and forgets the oldest finished jobs', async () => {
    const engine = new JobEngine({ historySize: 2 });
    const failing = engine.submit({ type: 'Test', work: () => Promise.reject(new Error('boom')) });
    await until(() => engine.describe(failing)?.State, (state) => state === 'Failure');
    expect(engine.describe(failing)).toMatchObject({ ErrorCode: -1, ErrorDescription: 'Internal error', ErrorDetails: 'boom' });
    expect(engine.describe(failing)?.CompletionTime).toMatch(/^\d{8}T\d{6}\.\d{6}$/);
    const more = [1, 2].map(() => engine.submit({ type: 'Test', work: () => Promise.resolve({}) }));
    await until(() => more.map((id) => engine.describe(id)?.State), (states) => states.every((s) => s === 'Success'));
    expect(engine.has(failing)).toBe(false);
    expect(engine.ids()).toEqual(more);
    await engine.close();
  });
});

interface Recorder {
  url: string;
  requests: number;
  server: http.Server;
}

/** A STOW-RS server that answers each request after `delayMs`, counting what it received. */
async function startSlowStowServer(delayMs: number): Promise<Recorder> {
  const recorder = { url: '', requests: 0 } as Recorder;
  recorder.server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      recorder.requests++;
      setTimeout(() => {
        if (res.destroyed) return;
        res.setHeader('content-type', 'application/dicom+json');
        // one referenced instance per request (StowMaxInstances 1)
        res.end(JSON.stringify({ '00081199': { vr: 'SQ', Value: [{}] } }));
      }, delayMs);
    });
    req.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => recorder.server.listen(0, '127.0.0.1', resolve));
  recorder.url = `http://127.0.0.1:${(recorder.server.address() as AddressInfo).port}/dicom-web/`;
  return recorder;
}

/** A WADO-RS server that sends one whole instance, starts a second one, then stalls until the client goes away. */
async function startStallingWadoServer(first: Buffer, second: Buffer): Promise<Recorder> {
  const recorder = { url: '', requests: 0 } as Recorder;
  recorder.server = http.createServer((req, res) => {
    recorder.requests++;
    res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=B0UND' });
    res.write(Buffer.concat([Buffer.from('--B0UND\r\nContent-Type: application/dicom\r\n\r\n'), first]));
    res.write(Buffer.concat([Buffer.from('\r\n--B0UND\r\nContent-Type: application/dicom\r\n\r\n'), second.subarray(0, 100)]));
    req.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => recorder.server.listen(0, '127.0.0.1', resolve));
  recorder.url = `http://127.0.0.1:${(recorder.server.address() as AddressInfo).port}/dicom-web/`;
  return recorder;
}

describe('/jobs on the embedded core', () => {
  let gateway: TestGateway;
  let fast: Recorder;
  let slow: Recorder;
  let stalling: Recorder;
  let studyId = '';
  const study = makeStudy({ seed: 'jobs', seriesCount: 1, instancesPerSeries: 4, Rows: 8, Columns: 8 });
  const remoteStudy = makeStudy({ seed: 'jobs-remote', seriesCount: 1, instancesPerSeries: 2, Rows: 8, Columns: 8 });

  beforeAll(async () => {
    fast = await startSlowStowServer(150);
    slow = await startSlowStowServer(800);
    stalling = await startStallingWadoServer(remoteStudy.buffers[0], remoteStudy.buffers[1]);
    gateway = await startTestGateway('embedded', {
      DicomWeb: { StowMaxInstances: 1, Servers: { fast: { Url: fast.url }, slow: { Url: slow.url }, stalling: { Url: stalling.url } } },
    });
    for (const buffer of study.buffers) {
      const res = await request(gateway.app).post('/instances').set('content-type', 'application/dicom').send(buffer).expect(200);
      studyId = res.body.ParentStudy as string;
    }
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    for (const recorder of [fast, slow, stalling]) {
      recorder?.server.closeAllConnections();
      await new Promise((resolve) => recorder?.server.close(resolve));
    }
  });

  const job = async (id: string): Promise<Record<string, unknown>> => (await request(gateway.app).get(`/jobs/${id}`).expect(200)).body;

  it('runs an asynchronous stow as a job, listed in /jobs, with the synchronous answer as Content', async () => {
    const answer = await request(gateway.app).post('/dicom-web/servers/fast/stow').send({ Resources: [studyId], Synchronous: false }).expect(200);
    expect(answer.body).toEqual({ ID: expect.any(String), Path: `/jobs/${answer.body.ID}` });
    const running = await job(answer.body.ID);
    expect(running).toMatchObject({ Type: 'DicomWebStowClient', State: 'Running', ErrorCode: 0, Priority: 0 });
    const done = await until(() => job(answer.body.ID), (body) => body.State === 'Success');
    expect(done).toMatchObject({
      Progress: 100,
      ErrorDescription: 'Success',
      Content: { Resources: [studyId], Server: 'fast', InstancesCount: '4', FailedInstancesCount: '0', NetworkSizeMB: '0' },
    });
    expect(done.CompletionTime).toEqual(expect.any(String));
    expect(fast.requests).toBe(4);
    expect((await request(gateway.app).get('/jobs').expect(200)).body).toContain(answer.body.ID);
    const expanded = await request(gateway.app).get('/jobs?expand').expect(200);
    expect(expanded.body).toEqual(expect.arrayContaining([expect.objectContaining({ ID: answer.body.ID, State: 'Success' })]));
  });

  it('cancels a stow mid-transfer: Failure with "Canceled job", fewer requests sent', async () => {
    const answer = await request(gateway.app).post('/dicom-web/servers/slow/stow').send({ Resources: [studyId], Asynchronous: true }).expect(200);
    const id = answer.body.ID as string;
    await until(() => slow.requests, (n) => n >= 1);
    await request(gateway.app).post(`/jobs/${id}/cancel`).send('').expect(200, {});
    const failed = await until(() => job(id), (body) => body.State === 'Failure', 5000);
    expect(failed).toMatchObject({ ErrorCode: 37, ErrorDescription: 'Canceled job' });
    await sleep(900); // what would have been the next request's turn
    expect(slow.requests).toBeLessThan(4);
    await request(gateway.app).post(`/jobs/${id}/pause`).expect(200); // finished: nothing to do, as Orthanc
    await request(gateway.app).post(`/jobs/${id}/resume`).expect(400);
  });

  it('cancels a retrieve mid-answer: the instance already received stays, and the Content says so', async () => {
    const Resources = [{ Study: '1.2.3.4' }];
    const answer = await request(gateway.app).post('/dicom-web/servers/stalling/retrieve').send({ Resources, Synchronous: false }).expect(200);
    const id = answer.body.ID as string;
    const running = await until(() => job(id), (body) => (body.Content as { ReceivedInstancesCount?: string }).ReceivedInstancesCount === '1');
    expect(running).toMatchObject({ Type: 'DicomWebWadoRetrieveClient', State: 'Running' });
    await request(gateway.app).post(`/jobs/${id}/cancel`).expect(200);
    const failed = await until(() => job(id), (body) => body.State === 'Failure', 5000);
    const content = failed.Content as { Instances: string[]; ReceivedInstancesCount: string };
    expect(failed).toMatchObject({ ErrorCode: 37 });
    expect(content.ReceivedInstancesCount).toBe('1');
    await request(gateway.app).get(`/instances/${content.Instances[0]}`).expect(200);
  });

  it('answers 404 JSON for unknown jobs and 400 for asynchronous calls with bad fields', async () => {
    const res = await request(gateway.app).get('/jobs/no-such-job').expect(404);
    expect(res.body).toMatchObject({ HttpStatus: 404, Message: 'Unknown job: no-such-job' });
    await request(gateway.app).post('/jobs/no-such-job/cancel').expect(404);
    await request(gateway.app).post('/dicom-web/servers/fast/stow').send({ Resources: ['nope'], Synchronous: false }).expect(404);
    await request(gateway.app).post('/dicom-web/servers/fast/stow').send({ Resources: [studyId], Synchronous: false, Priority: 'high' }).expect(400);
  });
});

describe('/jobs with a remote core', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await startTestGateway('remote');
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
  });

  it("lists Orthanc's jobs and ours, and passes ids that are not ours to Orthanc", async () => {
    const created = await request(gateway.app).post('/tools/create-archive').send({ Resources: [], Asynchronous: true }).expect(200);
    const id = created.body.ID as string;
    expect((await request(gateway.app).get('/jobs').expect(200)).body).toContain(id);
    expect((await request(gateway.app).get(`/jobs/${id}`).expect(200)).body.ID).toBe(id); // Orthanc's own job, through the proxy
    const unknown = await request(gateway.app).get('/jobs/not-a-job').expect(404);
    expect(unknown.body.Message).not.toBe('Unknown job: not-a-job'); // Orthanc's answer, not ours
  });
});
