/**
 * An asynchronous POST /modalities/{name}/store ("Synchronous": false) to DCMTK's storescp: answered {ID, Path}
 * at once, the job then ends in Success with the synchronous answer as Content, and storescp holds the files.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeStudy } from '../helpers/dicom-factory';
import { startStorescp } from '../helpers/dcmtk';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('asynchronous /modalities/{name}/store to storescp', () => {
  let gateway: TestGateway;
  let storescp: ChildProcess | undefined;
  const received = mkdtempSync(join(tmpdir(), 'storescp-job-'));
  const study = makeStudy({ seed: 'store-job', seriesCount: 1, instancesPerSeries: 3, Rows: 8, Columns: 8 });

  beforeAll(async () => {
    const started = await startStorescp('STORESCP', received);
    storescp = started.child;
    const port = started.port;
    gateway = await startTestGateway('embedded');
    await request(gateway.app).put('/modalities/scp').send(['STORESCP', '127.0.0.1', port]).expect(200);
  }, 30_000);

  afterAll(async () => {
    storescp?.kill('SIGTERM');
    await gateway?.close();
    rmSync(received, { recursive: true, force: true });
  });

  it('answers {ID, Path}, then the job succeeds with the store answer as Content', async () => {
    let studyId = '';
    for (const buffer of study.buffers) {
      studyId = (await request(gateway.app).post('/instances').set('content-type', 'application/dicom').send(buffer).expect(200)).body.ParentStudy;
    }
    const answer = await request(gateway.app).post('/modalities/scp/store').send({ Resources: [studyId], Synchronous: false }).expect(200);
    expect(answer.body).toEqual({ ID: expect.any(String), Path: `/jobs/${answer.body.ID}` });
    let job: Record<string, unknown> = {};
    for (let tries = 0; tries < 200; tries++) {
      job = (await request(gateway.app).get(`/jobs/${answer.body.ID}`).expect(200)).body;
      if (job.State === 'Success' || job.State === 'Failure') break;
      await sleep(50);
    }
    expect(job).toMatchObject({
      Type: 'DicomModalityStore',
      State: 'Success',
      Progress: 100,
      Content: { Description: 'REST API', InstancesCount: 3, FailedInstancesCount: 0, ParentResources: [studyId], RemoteAet: 'STORESCP' },
    });
    expect(readdirSync(received)).toHaveLength(3);
  });
});
