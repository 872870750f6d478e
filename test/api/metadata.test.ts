import request from 'supertest';
import { makeStudy } from '../helpers/dicom-factory';
import { CORE_KINDS, startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';

jest.setTimeout(120_000);

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

const MODES = {
  StudiesMetadata: 'MainDicomTags',
  SeriesMetadata: 'Extrapolate',
  SeriesMetadataExtrapolatedTags: ['ImageOrientationPatient', '0028,0030', 'SliceThickness', 'ImagePositionPatient'],
};

async function metadata(gateway: TestGateway, path: string): Promise<DicomJson[]> {
  const res = await request(gateway.app).get(`/dicom-web/${path}/metadata`).expect(200);
  return res.body as DicomJson[];
}

describe.each(CORE_KINDS)('StudiesMetadata / SeriesMetadata modes (%s core)', (kind) => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const study = makeStudy({ seed: `metadata-modes-${kind}`, seriesCount: 2, instancesPerSeries: 3, Rows: 4, Columns: 4 });

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway(kind, { DicomWeb: MODES }), startOrthanc({ dicomWeb: true, extraConfig: { DicomWeb: MODES } })]);
    for (const buffer of study.buffers) {
      await gateway.core.storeInstance({ buffer });
      await uploadToOrthanc(orthanc.url, buffer);
    }
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  it('answers study metadata from the main DICOM tags alone, as the reference plugin does', async () => {
    const ours = await metadata(gateway, `studies/${study.StudyInstanceUID}`);
    const theirs = (await (await fetch(`${orthanc.url}/dicom-web/studies/${study.StudyInstanceUID}/metadata`)).json()) as DicomJson[];
    expect(ours).toHaveLength(6);
    // no file was read: no pixel data, no attribute outside the main DICOM tags
    expect(ours[0]['7FE00010']).toBeUndefined();
    expect(ours[0]['00280030']).toBeUndefined();
    expect(ours[0]['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Sample' }] });
    const sorted = (list: DicomJson[]): DicomJson[] => [...list].sort((a, b) => String(a['00080018'].Value).localeCompare(String(b['00080018'].Value)));
    expect(sorted(ours)).toEqual(sorted(theirs));
  });

  it('extrapolates the configured tags from sampled files, as the reference plugin does', async () => {
    const series = study.series[0];
    const ours = await metadata(gateway, `studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}`);
    expect(ours).toHaveLength(3);
    expect(ours.map((item) => item['00200013'].Value)).toEqual([[1], [2], [3]]);
    // an instance-level main DICOM tag: each instance's own value, whatever the extrapolation
    expect(ours.map((item) => item['00200032'].Value)).toEqual([[0, 0, 1], [0, 0, 2], [0, 0, 3]]);
    expect(ours[0]['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 100'] });
    for (const item of ours) {
      expect(item['00200037']).toEqual({ vr: 'DS', Value: [1, 0, 0, 0, 1, 0] });
      expect(item['00280030']).toEqual({ vr: 'DS', Value: [1, 1] });
      expect(item['00180050']).toEqual({ vr: 'DS', Value: [1] });
      expect(item['7FE00010']).toBeUndefined();
    }
    const theirs = (await (await fetch(`${orthanc.url}/dicom-web/studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}/metadata`)).json()) as DicomJson[];
    const sorted = (list: DicomJson[]): DicomJson[] => [...list].sort((a, b) => String(a['00080018'].Value).localeCompare(String(b['00080018'].Value)));
    expect(sorted(ours)).toEqual(sorted(theirs));
  });

  it('still reads every file for one instance', async () => {
    const series = study.series[0];
    const [item] = await metadata(gateway, `studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}/instances/${series.instances[0].tags.SOPInstanceUID}`);
    expect(item['00200032']).toBeDefined();
    expect(item['7FE00010']).toHaveProperty('BulkDataURI');
  });
});
