import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGatewayProcess, removeDir, type GatewayProcess } from '../helpers/gateway-process';
import { freePort } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';
import { runTool } from '../helpers/dcmtk';

/** ReadOnly refuses writes that arrive over the DICOM network too, not only over HTTP. */
describe('ReadOnly and the DICOM server', () => {
  let gateway: GatewayProcess;
  let dicomPort: number;
  const work = mkdtempSync(join(tmpdir(), 'read-only-dicom-'));

  beforeAll(async () => {
    dicomPort = await freePort();
    gateway = await startGatewayProcess({ ReadOnly: true, DicomServerEnabled: true, DicomAet: 'GATEWAY', DicomPort: dicomPort });
  }, 300_000);
  afterAll(async () => {
    await gateway.stop();
    removeDir(gateway.dir);
    removeDir(work);
  });

  it('answers C-STORE with "not authorized" and stores nothing, while C-ECHO still works', async () => {
    const file = join(work, 'one.dcm');
    writeFileSync(file, makeInstance({ PatientID: 'READONLY' }));
    const store = await runTool('storescu', ['-v', '-aet', 'STORESCU', '-aec', 'GATEWAY', '127.0.0.1', String(dicomPort), file]);
    expect(store.output).toMatch(/Received Store Response \(.*0x0?124\)/);
    expect(await (await fetch(`${gateway.url}/instances`)).json()).toEqual([]);
    const echo = await runTool('echoscu', ['-v', '-aet', 'STORESCU', '-aec', 'GATEWAY', '127.0.0.1', String(dicomPort)]);
    expect(echo.output).toMatch(/Received Echo Response \(Success\)/);
  });
});
