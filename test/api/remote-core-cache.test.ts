import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance, newUid } from '../helpers/dicom-factory';

/**
 * The remote core caches what it computes from Orthanc (counts, modalities, file values) while the core is unchanged.
 * Orthanc 1.10 records no change for a deletion, so a delete made behind the gateway's back must still be seen.
 */
describe('remote core caches follow changes made directly in Orthanc', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway('remote');
  });
  afterAll(async () => {
    await gateway.close();
  });

  it('sees a deleted older series in computed study attributes', async () => {
    const study = newUid();
    const first = await gateway.core.storeInstance({ buffer: makeInstance({ PatientID: 'CACHE', StudyInstanceUID: study, Modality: 'CT' }) });
    await gateway.core.storeInstance({ buffer: makeInstance({ PatientID: 'CACHE', StudyInstanceUID: study, Modality: 'MR' }) });
    const ask = async (): Promise<Record<string, string> | undefined> =>
      (
        await gateway.core.find({
          Level: 'Study',
          Query: { StudyInstanceUID: study },
          RequestedTags: ['NumberOfStudyRelatedSeries', 'NumberOfStudyRelatedInstances', 'ModalitiesInStudy'],
        })
      )[0]?.RequestedTags;
    expect(await ask()).toMatchObject({ NumberOfStudyRelatedSeries: '2', NumberOfStudyRelatedInstances: '2', ModalitiesInStudy: 'CT\\MR' });
    // a newer resource, so that deleting the older series leaves Orthanc's last change number as it is
    await gateway.core.storeInstance({ buffer: makeInstance({ PatientID: 'OTHER' }) });
    expect(await ask()).toMatchObject({ NumberOfStudyRelatedSeries: '2' });
    const orthanc = gateway.orthanc;
    if (!orthanc) throw new Error('the remote core runs a real Orthanc');
    const deleted = await fetch(`${orthanc.url}/series/${first.ParentSeries}`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    expect(await ask()).toMatchObject({ NumberOfStudyRelatedSeries: '1', NumberOfStudyRelatedInstances: '1', ModalitiesInStudy: 'MR' });
  });
});
