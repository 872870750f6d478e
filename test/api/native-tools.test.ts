import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';

/*
 * The small /tools helpers of the embedded core against a real Orthanc 1.10.1. Deliberate differences:
 *  - 403, 404 and 405 answers carry an Orthanc-style JSON body here, an empty body in Orthanc;
 *  - /tools/dicom-conformance is our own statement (Orthanc answers its own text);
 *  - the log levels map onto the one pino logger: "default" = warn, "verbose" = info, "trace" = trace; a gateway
 *    started at pino's "info" level reports "verbose" (under jest the logger is silent: "default", as Orthanc);
 *  - the default encoding is one setting for the whole process (every gateway in it).
 */

const UID_OF_LEVEL = { study: 2, series: 3, instance: 4 } as const;

describe('native /tools helpers: same answers as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function theirs(method: string, path: string, body?: string): Promise<{ status: number; type: string; text: string; allow: string | null }> {
    const response = await fetch(orthanc.url + path, { method, body });
    return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text(), allow: response.headers.get('allow') };
  }

  async function ours(method: string, path: string, body?: string): Promise<request.Response> {
    const test = request(gateway.app)[method.toLowerCase() as 'get' | 'put' | 'post' | 'delete'](path);
    return body === undefined ? test : test.set('content-type', 'text/plain').send(body);
  }

  /** Same status, and for 2xx the same text/plain body. */
  async function compareText(method: string, path: string, body?: string): Promise<string> {
    const [mine, reference] = [await ours(method, path, body), await theirs(method, path, body)];
    expect([method, path, mine.status]).toEqual([method, path, reference.status]);
    if (reference.status < 300) {
      expect(mine.headers['content-type']).toContain(reference.type);
      expect([path, mine.text]).toEqual([path, reference.text]);
    }
    return mine.text;
  }

  it('gets and sets the default encoding as Orthanc does', async () => {
    expect(await compareText('GET', '/tools/default-encoding')).toBe('Latin1');
    expect(await compareText('PUT', '/tools/default-encoding', 'utf8')).toBe('Utf8');
    expect(await compareText('GET', '/tools/default-encoding')).toBe('Utf8');
    for (const bad of ['Klingon', ' Latin1', '']) {
      const mine = await ours('PUT', '/tools/default-encoding', bad);
      const reference = await theirs('PUT', '/tools/default-encoding', bad);
      expect([bad, mine.status, mine.body.Message]).toEqual([bad, reference.status, JSON.parse(reference.text).Message]);
    }
    expect(await compareText('PUT', '/tools/default-encoding', 'Windows1251')).toBe('Windows1251');
    expect(await compareText('PUT', '/tools/default-encoding', 'LATIN1')).toBe('Latin1');
  });

  it('decodes text without Specific Character Set with the default encoding, in the native routes and DICOMweb', async () => {
    // "Xavier" becomes the 6 UTF-8 bytes of "Jérô", in a file without (0008,0005)
    const template = makeInstance({ PatientID: 'P-ENC', PatientName: 'Xavier^Q', seed: 'encoding' });
    const at = template.indexOf('Xavier');
    expect(template.indexOf('Xavier', at + 1)).toBe(-1);
    const file = Buffer.concat([template.subarray(0, at), Buffer.from('J\xc3\xa9r\xc3\xb4', 'latin1'), template.subarray(at + 6)]);
    expect(file.includes('ISO_IR')).toBe(false);

    const stored = (await request(gateway.app).post('/instances').send(file)).body as Record<string, string>;
    const their = await uploadToOrthanc(orthanc.url, file);
    expect(stored.ID).toBe(their.ID);
    const name = async (path: string): Promise<[unknown, unknown]> => {
      const mine = (await request(gateway.app).get(path)).body;
      const reference = JSON.parse((await theirs('GET', path)).text);
      return [mine, reference];
    };
    const latin1 = 'J\u00c3\u00a9r\u00c3\u00b4^Q';
    let [mine, reference] = await name(`/instances/${stored.ID}/tags?short`);
    expect([(mine as Record<string, string>)['0010,0010'], (reference as Record<string, string>)['0010,0010']]).toEqual([latin1, latin1]);

    await compareText('PUT', '/tools/default-encoding', 'Utf8');
    [mine, reference] = await name(`/instances/${stored.ID}/tags?short`);
    expect([(mine as Record<string, string>)['0010,0010'], (reference as Record<string, string>)['0010,0010']]).toEqual(['Jérô^Q', 'Jérô^Q']);
    // the index keeps what was decoded when the instance arrived, in both
    [mine, reference] = await name(`/patients/${stored.ParentPatient}`);
    expect([(mine as { MainDicomTags: { PatientName: string } }).MainDicomTags.PatientName, (reference as { MainDicomTags: { PatientName: string } }).MainDicomTags.PatientName]).toEqual([latin1, latin1]);
    // DICOMweb reads the file with the same setting
    const tags = (await request(gateway.app).get(`/instances/${stored.ID}/tags?short`)).body as Record<string, string>;
    const metadata = await request(gateway.app).get(`/dicom-web/studies/${tags['0020,000d']}/series/${tags['0020,000e']}/instances/${tags['0008,0018']}/metadata`);
    expect(metadata.status).toBe(200);
    expect(JSON.parse(metadata.text)[0]['00100010'].Value[0].Alphabetic).toBe('Jérô^Q');

    await compareText('PUT', '/tools/default-encoding', 'Latin1');
  });

  it('generates UIDs in Orthanc format for each level, 404 for another level', async () => {
    for (const level of ['study', 'series', 'instance'] as const) {
      const pattern = new RegExp(`^1\\.2\\.276\\.0\\.7230010\\.3\\.1\\.${UID_OF_LEVEL[level]}\\.\\d+\\.\\d+\\.\\d+\\.\\d+$`);
      const [first, second] = [await ours('GET', `/tools/generate-uid?level=${level}`), await ours('GET', `/tools/generate-uid?level=${level}`)];
      const reference = await theirs('GET', `/tools/generate-uid?level=${level}`);
      expect(reference.text).toMatch(pattern);
      expect(first.text).toMatch(pattern);
      expect(first.text.length).toBeLessThanOrEqual(64);
      expect(second.text).not.toBe(first.text);
      expect(first.headers['content-type']).toContain(reference.type);
    }
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    expect((await theirs('GET', '/tools/generate-uid?level=patient')).text).toMatch(uuid);
    expect((await ours('GET', '/tools/generate-uid?level=patient')).text).toMatch(uuid);
    for (const path of ['/tools/generate-uid', '/tools/generate-uid?level=foo', '/tools/generate-uid?level=Study']) {
      expect([path, (await ours('GET', path)).status]).toEqual([path, (await theirs('GET', path)).status]);
    }
  });

  it('answers the UTC and local time as Orthanc, to the second', async () => {
    for (const path of ['/tools/now', '/tools/now-local']) {
      const [mine, reference] = [await ours('GET', path), await theirs('GET', path)];
      expect(mine.text).toMatch(/^\d{8}T\d{6}$/);
      expect(reference.text).toMatch(/^\d{8}T\d{6}$/);
      const parse = (t: string): number => Date.UTC(+t.slice(0, 4), +t.slice(4, 6) - 1, +t.slice(6, 8), +t.slice(9, 11), +t.slice(11, 13), +t.slice(13, 15));
      expect(Math.abs(parse(mine.text) - parse(reference.text))).toBeLessThanOrEqual(5_000);
    }
  });

  it('answers a DICOM conformance statement as text', async () => {
    const [mine, reference] = [await ours('GET', '/tools/dicom-conformance'), await theirs('GET', '/tools/dicom-conformance')];
    expect([mine.status, reference.status]).toEqual([200, 200]);
    expect(mine.headers['content-type']).toContain(reference.type);
    expect(mine.text).toContain('1.2.840.10008.1.1');
  });

  it('gets and sets the log levels, main and per category', async () => {
    expect(await compareText('GET', '/tools/log-level')).toBe('default');
    for (const category of ['generic', 'plugins', 'http', 'dicom', 'sqlite', 'jobs', 'lua']) {
      expect(await compareText('GET', `/tools/log-level-${category}`)).toBe('default');
    }
    await compareText('PUT', '/tools/log-level-http', 'verbose');
    expect(await compareText('GET', '/tools/log-level-http')).toBe('verbose');
    expect(await compareText('GET', '/tools/log-level-dicom')).toBe('default');
    expect(await compareText('GET', '/tools/log-level')).toBe('verbose');
    await compareText('PUT', '/tools/log-level', 'trace');
    expect(await compareText('GET', '/tools/log-level-dicom')).toBe('trace');
    for (const bad of ['VERBOSE', 'info', '']) {
      const mine = await ours('PUT', '/tools/log-level', bad);
      const reference = JSON.parse((await theirs('PUT', '/tools/log-level', bad)).text);
      expect([mine.status, mine.body.Message, mine.body.Details]).toEqual([reference.HttpStatus, reference.Message, reference.Details]);
    }
    expect((await ours('GET', '/tools/log-level-foo')).status).toBe((await theirs('GET', '/tools/log-level-foo')).status);
    await compareText('PUT', '/tools/log-level', 'default');
    expect(await compareText('GET', '/tools/log-level-http')).toBe('default');
  });

  it('refuses Lua scripts, accepts invalidate-tags, and answers 405 with Allow for other methods', async () => {
    expect((await ours('POST', '/tools/execute-script', 'print(1)')).status).toBe(403);
    expect((await theirs('POST', '/tools/execute-script', 'print(1)')).status).toBe(403);
    expect(await compareText('POST', '/tools/invalidate-tags')).toBe('');
    const cases: Array<[string, string]> = [
      ['PUT', '/tools/now'], ['POST', '/tools/now-local'], ['POST', '/tools/default-encoding'], ['DELETE', '/tools/log-level'],
      ['POST', '/tools/generate-uid'], ['GET', '/tools/execute-script'], ['PUT', '/tools/invalidate-tags'], ['POST', '/tools/dicom-conformance'],
      ['POST', '/tools/log-level-jobs'],
    ];
    for (const [method, path] of cases) {
      const [mine, reference] = [await ours(method, path), await theirs(method, path)];
      expect([method, path, mine.status, mine.headers.allow]).toEqual([method, path, reference.status, reference.allow]);
    }
  });
});
