/**
 * GET /tools/metrics-prometheus (server/metrics.ts), parsed as Prometheus text exposition format 0.0.4, on both
 * cores and beside a real Orthanc 1.10 holding the same files.
 *
 * Same as Orthanc: the route, MetricsEnabled (false: 200 with an empty exposition), GET|PUT /tools/metrics, and the
 * store and job gauges under Orthanc's names with Orthanc's values. Deliberate differences: our exposition has
 * HELP/TYPE lines and no timestamps (both optional in the format), our content type adds "charset=utf-8", and we
 * add our own metrics (dicomweb_gateway_*: requests, latency and bytes by route family and status, jobs by state,
 * the image work limiter, process metrics).
 */
import request from 'supertest';
import { CORE_KINDS, startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeStudy } from '../helpers/dicom-factory';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

/** A strict reader of the text format: any line it cannot read fails the test. */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      expect(types.has(type[1])).toBe(false);
      types.set(type[1], type[2]);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!sample) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const match of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]] = match[2];
    const value = sample[3] === '+Inf' ? Infinity : sample[3] === '-Inf' ? -Infinity : Number(sample[3]);
    // Go's ParseFloat, which Prometheus uses, takes NaN in any case (prom-client writes "Nan")
    if (Number.isNaN(value) && !/^nan$/i.test(sample[3])) throw new Error(`bad value in ${JSON.stringify(line)}`);
    samples.push({ name: sample[1], labels, value });
  }
  return { types, samples };
}

function valueOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.length === 0 ? undefined : found.reduce((sum, s) => sum + s.value, 0);
}

const study = makeStudy({ seed: 'metrics', PatientID: 'METRICS-1', seriesCount: 1, instancesPerSeries: 2 });
const instancePath = `/dicom-web/studies/${study.StudyInstanceUID}/series/${study.series[0].SeriesInstanceUID}/instances/${study.series[0].instances[0].tags.SOPInstanceUID}`;

describe.each(CORE_KINDS)('metrics, %s core', (kind) => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  let stowBytes = 0;

  beforeAll(async () => {
    gateway = await startTestGateway(kind, { DicomWeb: { Servers: { down: { Url: 'http://127.0.0.1:1/dicom-web/', Timeout: 1 } } } });
    // the reference: the remote core's own Orthanc, or one with the same files
    orthanc = gateway.orthanc ?? (await startOrthanc());
    const boundary = 'metrics-boundary';
    const body = Buffer.concat([
      ...study.buffers.flatMap((file) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from('\r\n')]),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    stowBytes = body.length;
    await request(gateway.app).post('/dicom-web/studies').type(`multipart/related; type="application/dicom"; boundary=${boundary}`).send(body).expect(200);
    if (!gateway.orthanc) for (const file of study.buffers) await uploadToOrthanc(orthanc.url, file);
  });
  afterAll(async () => {
    await gateway?.close();
    if (!gateway?.orthanc) await orthanc?.stop();
  });

  async function scrape(): Promise<Exposition> {
    const res = await request(gateway.app).get('/tools/metrics-prometheus');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    return parseExposition(res.text);
  }

  it('counts requests and their latency by route family and status', async () => {
    await request(gateway.app).get('/dicom-web/studies').expect(200);
    await request(gateway.app).get(`/dicom-web/studies/${study.StudyInstanceUID}/series`).expect(200);
    await request(gateway.app).get(`${instancePath}/metadata`).expect(200);
    await request(gateway.app).get(`${instancePath}/rendered`).expect(200);
    await request(gateway.app).get('/no/such/route').expect(404);
    await request(gateway.app).get('/dicom-web/studies?limit=x').expect(400);
    const before = await scrape();
    await request(gateway.app).get('/dicom-web/studies').expect(200);
    const after = await scrape();

    const requests = 'dicomweb_gateway_http_requests_total';
    expect(after.types.get(requests)).toBe('counter');
    expect(valueOf(after, requests, { family: 'stow', status: '200' })).toBe(1);
    expect(valueOf(after, requests, { family: 'qido', status: '200' })).toBe(3);
    expect(valueOf(after, requests, { family: 'qido', status: '400' })).toBe(1);
    expect(valueOf(after, requests, { family: 'wado', status: '200' })).toBe(1);
    expect(valueOf(after, requests, { family: 'rendered', status: '200' })).toBe(1);
    expect(valueOf(after, requests, { family: 'native', status: '404' })).toBe(1);
    // the scrape counts itself once answered: one more in the second scrape
    expect((valueOf(after, requests, { family: 'metrics' }) ?? 0) - (valueOf(before, requests, { family: 'metrics' }) ?? 0)).toBe(1);

    const latency = 'dicomweb_gateway_http_request_duration_seconds';
    expect(after.types.get(latency)).toBe('histogram');
    expect(valueOf(after, `${latency}_count`, { family: 'qido', status: '200' })).toBe(3);
    const buckets = after.samples.filter((s) => s.name === `${latency}_bucket` && s.labels.family === 'qido' && s.labels.status === '200');
    expect(buckets.length).toBeGreaterThan(5);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(buckets[buckets.length - 1]).toMatchObject({ labels: { le: '+Inf' }, value: 3 });
    expect(valueOf(after, `${latency}_sum`, { family: 'qido', status: '200' })).toBeGreaterThan(0);
  });

  it('counts bytes received and sent by family', async () => {
    const before = await scrape();
    const file = await request(gateway.app).get(instancePath).set('Accept', 'multipart/related; type="application/dicom"').responseType('blob').expect(200);
    expect(Buffer.isBuffer(file.body)).toBe(true);
    const after = await scrape();
    const sent = (valueOf(after, 'dicomweb_gateway_http_sent_bytes_total', { family: 'wado' }) ?? 0) - (valueOf(before, 'dicomweb_gateway_http_sent_bytes_total', { family: 'wado' }) ?? 0);
    expect(sent).toBeGreaterThanOrEqual(file.body.length);
    expect(sent).toBeLessThan(file.body.length + 4096);
    // the STOW-RS request of beforeAll, headers included
    const received = valueOf(after, 'dicomweb_gateway_http_received_bytes_total', { family: 'stow' }) ?? 0;
    expect(received).toBeGreaterThanOrEqual(stowBytes);
    expect(received).toBeLessThan(stowBytes + 4096);
  });

  it('reports the store under Orthanc’s names, with Orthanc’s values for the same files', async () => {
    const ours = await scrape();
    const theirs = parseExposition(await (await fetch(`${orthanc.url}/tools/metrics-prometheus`)).text());
    for (const name of ['orthanc_count_patients', 'orthanc_count_studies', 'orthanc_count_series', 'orthanc_count_instances']) {
      expect(theirs.samples.some((s) => s.name === name)).toBe(true);
      expect([name, valueOf(ours, name)]).toEqual([name, valueOf(theirs, name)]);
    }
    // sizes are fractional MB; Orthanc prints fewer digits
    for (const name of ['orthanc_disk_size_mb', 'orthanc_uncompressed_size_mb']) {
      expect(valueOf(theirs, name)).toBeGreaterThan(0);
      expect(valueOf(ours, name)).toBeCloseTo(valueOf(theirs, name) ?? NaN, 9);
    }
    expect(valueOf(ours, 'orthanc_count_instances')).toBe(2);
    // Orthanc's job and activity gauges are there too (not its caches, which we do not have, nor its last-request duration)
    for (const name of ['orthanc_jobs_pending', 'orthanc_jobs_running', 'orthanc_jobs_success', 'orthanc_jobs_failed', 'orthanc_jobs_completed', 'orthanc_rest_api_active_requests']) {
      expect([name, theirs.samples.some((s) => s.name === name), ours.samples.some((s) => s.name === name)]).toEqual([name, true, true]);
    }
  });

  it('reports our jobs by state, and under Orthanc’s job names', async () => {
    const job = await request(gateway.app).post('/dicom-web/servers/down/retrieve').send({ Resources: [{ Study: study.StudyInstanceUID }], Synchronous: false }).expect(200);
    const id = job.body.ID as string;
    for (let i = 0; i < 100; i++) {
      if ((await request(gateway.app).get(`/jobs/${id}`)).body.State === 'Failure') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const exposition = await scrape();
    expect(exposition.types.get('dicomweb_gateway_jobs')).toBe('gauge');
    expect(valueOf(exposition, 'dicomweb_gateway_jobs', { state: 'Failure' })).toBe(1);
    expect(valueOf(exposition, 'dicomweb_gateway_jobs', { state: 'Running' })).toBe(0);
    expect(valueOf(exposition, 'orthanc_jobs_failed')).toBe(1);
    expect(valueOf(exposition, 'orthanc_jobs_completed')).toBe(1);
  });
});

describe('MetricsEnabled and /tools/metrics, beside Orthanc', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded', { MetricsEnabled: false }), startOrthanc({ extraConfig: { MetricsEnabled: false } })]);
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  it('off: the route answers 200 with an empty exposition, as Orthanc does', async () => {
    const theirs = await fetch(`${orthanc.url}/tools/metrics-prometheus`);
    const ours = await request(gateway.app).get('/tools/metrics-prometheus');
    expect([ours.status, ours.text]).toEqual([theirs.status, await theirs.text()]);
    expect(ours.status).toBe(200);
    expect(ours.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('GET /tools/metrics says "0"; PUT "1" turns them on; requests are counted from then on', async () => {
    const theirs = await fetch(`${orthanc.url}/tools/metrics`);
    const ours = await request(gateway.app).get('/tools/metrics');
    expect([ours.status, ours.text]).toEqual([theirs.status, await theirs.text()]);
    expect(ours.text).toBe('0');
    await request(gateway.app).get('/system').expect(200);
    const putTheirs = await fetch(`${orthanc.url}/tools/metrics`, { method: 'PUT', body: '1' });
    const putOurs = await request(gateway.app).put('/tools/metrics').send('1');
    expect(putOurs.status).toBe(putTheirs.status);
    expect((await request(gateway.app).get('/tools/metrics')).text).toBe('1');
    await request(gateway.app).get('/system').expect(200);
    const exposition = parseExposition((await request(gateway.app).get('/tools/metrics-prometheus')).text);
    // only the /system call made while on is counted
    expect(valueOf(exposition, 'dicomweb_gateway_http_requests_total', { family: 'native', status: '200' })).toBe(1);
    expect(valueOf(exposition, 'orthanc_count_instances')).toBe(0);
    expect((await request(gateway.app).put('/tools/metrics').send('maybe')).status).toBe(400);
  });
});

describe('metrics behind authentication and the image work limiter', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway('embedded', {
      AuthenticationEnabled: true,
      RegisteredUsers: { alice: 'metrics-password' },
      HttpLimits: { ImageWorkConcurrency: 1, ImageWorkQueueSize: 0 },
    });
  });
  afterAll(async () => {
    await gateway?.close();
  });
  const auth = `Basic ${Buffer.from('alice:metrics-password').toString('base64')}`;

  it('needs credentials like any other route; refused requests are counted', async () => {
    expect((await request(gateway.app).get('/tools/metrics-prometheus')).status).toBe(401);
    const exposition = parseExposition((await request(gateway.app).get('/tools/metrics-prometheus').set('Authorization', auth)).text);
    expect(valueOf(exposition, 'dicomweb_gateway_http_requests_total', { family: 'metrics', status: '401' })).toBe(1);
  });

  it('dicomweb_gateway_image_work_refused_total counts the 503 answers', async () => {
    const file = study.buffers[0];
    await request(gateway.app).post('/instances').set('Authorization', auth).send(file).expect(200);
    const answers = await Promise.all(Array.from({ length: 8 }, () => request(gateway.app).get(`${instancePath}/rendered`).set('Authorization', auth)));
    const refused = answers.filter((a) => a.status === 503).length;
    const exposition = parseExposition((await request(gateway.app).get('/tools/metrics-prometheus').set('Authorization', auth)).text);
    expect(exposition.types.get('dicomweb_gateway_image_work_refused_total')).toBe('counter');
    expect(valueOf(exposition, 'dicomweb_gateway_image_work_refused_total')).toBe(refused);
    expect(valueOf(exposition, 'dicomweb_gateway_http_requests_total', { family: 'rendered', status: '503' }) ?? 0).toBe(refused);
    expect(valueOf(exposition, 'dicomweb_gateway_image_work_active')).toBe(0);
  });
});
