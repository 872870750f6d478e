import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { freePort, startOrthanc } from '../helpers/orthanc-process';
import { makeInstance, newUid, readInstance, SopClass, TransferSyntax } from '../helpers/dicom-factory';
import { orthancId } from '../../src/core/orthanc-ids';
import { RemoteCore } from '../../src/core/remote/remote-core';
import type { FindRequest, NativeCore, Resource, StoreResult } from '../../src/core/native-model';

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A small store: 3 patients, 3 studies, 5 series, 7 instances, with values chosen for matching rules. */
function sampleFiles(): Buffer[] {
  const uid = (name: string): string => newUid(`remote-core-test/${name}`);
  const brain = { PatientID: 'PA', PatientName: 'Doe^Jane', StudyInstanceUID: uid('s1'), StudyDate: '20200105', StudyDescription: 'Brain MRI', AccessionNumber: 'ACC-1' };
  const chest = { PatientID: 'PB', PatientName: 'Smith^John', StudyInstanceUID: uid('s2'), StudyDate: '20210310', StudyDescription: 'chest CT', AccessionNumber: 'ACC-2' };
  const petct = { PatientID: 'PC', PatientName: 'Doe^John', StudyInstanceUID: uid('s3'), StudyDate: '20221120', StudyDescription: 'Whole body', AccessionNumber: 'ACC-3' };
  return [
    makeInstance({ ...brain, SeriesInstanceUID: uid('s1a'), Modality: 'MR', SOPClassUID: SopClass.MRImageStorage, SeriesNumber: 1, InstanceNumber: 1, SOPInstanceUID: uid('i1') }),
    makeInstance({ ...brain, SeriesInstanceUID: uid('s1a'), Modality: 'MR', SOPClassUID: SopClass.MRImageStorage, SeriesNumber: 1, InstanceNumber: 2, SOPInstanceUID: uid('i2') }),
    makeInstance({ ...chest, SeriesInstanceUID: uid('s2a'), Modality: 'CT', SeriesNumber: 1, InstanceNumber: 1, SOPInstanceUID: uid('i3'), Rows: 8, Columns: 8 }),
    makeInstance({ ...petct, SeriesInstanceUID: uid('s3a'), Modality: 'PT', SeriesNumber: 1, InstanceNumber: 1, SOPInstanceUID: uid('i4') }),
    makeInstance({ ...petct, SeriesInstanceUID: uid('s3b'), Modality: 'CT', SeriesNumber: 2, InstanceNumber: 1, SOPInstanceUID: uid('i5') }),
    makeInstance({ ...petct, SeriesInstanceUID: uid('s3b'), Modality: 'CT', SeriesNumber: 2, InstanceNumber: 2, SOPInstanceUID: uid('i6') }),
    makeInstance({ ...petct, SeriesInstanceUID: uid('s3c'), Modality: 'OT', SOPClassUID: SopClass.SecondaryCaptureImageStorage, SeriesNumber: 3, InstanceNumber: 1, SOPInstanceUID: uid('i7') }),
  ];
}

const STUDY_TAGS = [
  'ModalitiesInStudy',
  'NumberOfStudyRelatedSeries',
  'NumberOfStudyRelatedInstances',
  'SOPClassesInStudy',
  'PatientName',
  '0010,0020',
  'StudyDate',
  'Rows',
  'SeriesDescription',
  'TimezoneOffsetFromUTC',
];
const SERIES_TAGS = ['NumberOfSeriesRelatedInstances', 'Modality', 'StudyInstanceUID', 'PatientName', 'SOPClassUID'];
const PATIENT_TAGS = ['NumberOfPatientRelatedStudies', 'NumberOfPatientRelatedSeries', 'NumberOfPatientRelatedInstances', 'PatientSex'];
const INSTANCE_TAGS = ['Rows', 'Columns', 'SOPClassUID', 'PatientName', 'InstanceNumber'];

/** The searches whose answers both cores must agree on. */
const SEARCHES: FindRequest[] = [
  { Level: 'Patient', Query: {} },
  { Level: 'Patient', Query: { PatientName: 'doe*' } },
  { Level: 'Patient', Query: { PatientName: 'DOE*' }, CaseSensitive: true },
  { Level: 'Study', Query: { StudyDescription: 'CHEST ct' } },
  { Level: 'Study', Query: { StudyDescription: 'chest ct' }, CaseSensitive: true },
  { Level: 'Study', Query: { StudyDate: '20200101-20211231' } },
  { Level: 'Study', Query: { StudyDate: '20210101-' } },
  { Level: 'Study', Query: { StudyDate: '-20201231' } },
  { Level: 'Study', Query: { AccessionNumber: 'ACC-1\\ACC-3' } },
  { Level: 'Study', Query: { AccessionNumber: 'ACC-?' }, Limit: 2 },
  { Level: 'Study', Query: {}, Since: 1, Limit: 1 },
  { Level: 'Study', Query: { PatientID: '*', StudyInstanceUID: '' } },
  { Level: 'Study', Query: { Modality: 'CT' } },
  { Level: 'Study', Query: { ModalitiesInStudy: 'PT\\MR' } },
  { Level: 'Study', Query: { Modality: 'CT', PatientName: '*john' }, Since: 1 },
  { Level: 'Study', Query: { SOPInstanceUID: newUid('remote-core-test/i2') } },
  { Level: 'Study', Query: {}, Labels: ['x'] },
  { Level: 'Study', Query: {}, Labels: ['x'], LabelsConstraint: 'None' },
  { Level: 'Series', Query: { Modality: 'ct' } },
  { Level: 'Series', Query: { PatientName: 'Doe*', Modality: 'CT\\PT' } },
  { Level: 'Series', Query: { InstanceNumber: '2' } },
  { Level: 'Patient', Query: { Modality: 'OT' } },
  { Level: 'Instance', Query: { SeriesInstanceUID: newUid('remote-core-test/s3b') } },
  { Level: 'Instance', Query: { Rows: '8' } },
];

const sorted = (ids: string[]): string[] => [...ids].sort();
const sortedById = <T extends { ID: string }>(items: T[]): T[] => [...items].sort((a, b) => a.ID.localeCompare(b.ID));

function tagsFor(level: FindRequest['Level']): string[] {
  return { Patient: PATIENT_TAGS, Study: STUDY_TAGS, Series: SERIES_TAGS, Instance: INSTANCE_TAGS }[level];
}

/** What must be equal between cores: identifiers, main DICOM tags, requested tags, children. */
function comparable(resource: Resource): Record<string, unknown> {
  const { ID, Type, MainDicomTags, RequestedTags, Labels } = resource;
  const children = 'Studies' in resource ? resource.Studies : 'Series' in resource ? resource.Series : 'Instances' in resource ? resource.Instances : [];
  const parent = 'ParentPatient' in resource ? resource.ParentPatient : 'ParentStudy' in resource ? resource.ParentStudy : 'ParentSeries' in resource ? resource.ParentSeries : '';
  return { ID, Type, MainDicomTags, RequestedTags, Labels, children: [...children].sort(), parent };
}

describe('RemoteCore: the native model over a real Orthanc 1.10', () => {
  let gateway: TestGateway;
  let core: NativeCore;
  let stored: StoreResult[];
  const files = sampleFiles();

  beforeAll(async () => {
    gateway = await startTestGateway('remote');
    core = gateway.core;
    stored = [];
    for (const file of files) stored.push(await core.storeInstance({ buffer: file }));
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it('is a remote core that reports the Orthanc behind it', async () => {
    expect(core.kind).toBe('remote');
    const system = await core.getSystem();
    expect(system.Version).toMatch(/^1\.\d+\.\d+/);
    expect(system.ApiVersion).toBeGreaterThan(0);
    // fields Orthanc 1.10 lacks are filled in
    expect(system).toMatchObject({ HasLabels: expect.any(Boolean), UserMetadata: expect.any(Object), OverwriteInstances: false });
  });

  it('stores buffers and files with Orthanc identifiers, and takes ownership of files', async () => {
    const [first] = stored;
    const dicom = readInstance(files[0]).dataset as Record<string, string>;
    expect(first).toEqual({
      ID: orthancId('PA', dicom.StudyInstanceUID, dicom.SeriesInstanceUID, dicom.SOPInstanceUID),
      ParentPatient: orthancId('PA'),
      ParentStudy: orthancId('PA', dicom.StudyInstanceUID),
      ParentSeries: orthancId('PA', dicom.StudyInstanceUID, dicom.SeriesInstanceUID),
      Path: `/instances/${first.ID}`,
      Status: 'Success',
    });
    expect((await core.storeInstance({ buffer: files[0] })).Status).toBe('AlreadyStored');

    const dir = mkdtempSync(join(tmpdir(), 'remote-core-file-'));
    try {
      const path = join(dir, 'upload.dcm');
      const extra = makeInstance({ PatientID: 'PFILE', seed: 'remote-core/file' });
      writeFileSync(path, extra);
      const answer = await core.storeInstance({ file: path });
      expect(answer.Status).toBe('Success');
      expect(existsSync(path)).toBe(false);
      expect(await bytesOf((await core.readInstanceFile(answer.ID)).stream)).toEqual(extra);
      expect(await core.deleteResource('Patient', answer.ParentPatient)).toBe(true);

      const bad = join(dir, 'bad.dcm');
      writeFileSync(bad, 'not a DICOM file');
      await expect(core.storeInstance({ file: bad })).rejects.toMatchObject({ httpStatus: 400 });
      expect(existsSync(bad)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds with wildcards, case-insensitively unless asked, ranges, lists, Limit and Since', async () => {
    const studyOf = (i: number): string => stored[i].ParentStudy;
    const [s1, s2, s3] = [studyOf(0), studyOf(2), studyOf(3)];
    const ids = async (request: Omit<FindRequest, 'Level'>): Promise<string[]> => sorted(await core.findIds({ Level: 'Study', ...request }));
    expect(await ids({ Query: { PatientName: 'doe*' } })).toEqual(sorted([s1, s3]));
    expect(await ids({ Query: { PatientName: 'doe*' }, CaseSensitive: true })).toEqual([]);
    expect(await ids({ Query: { StudyDescription: 'CHEST CT' } })).toEqual([s2]);
    expect(await ids({ Query: { StudyDescription: 'CHEST CT' }, CaseSensitive: true })).toEqual([]);
    expect(await ids({ Query: { StudyDate: '20210101-20221231' } })).toEqual(sorted([s2, s3]));
    expect(await ids({ Query: { AccessionNumber: 'ACC-1\\ACC-3' } })).toEqual(sorted([s1, s3]));
    // '*' is universal, even on UIDs (Orthanc itself refuses wildcards there)
    expect(await ids({ Query: { StudyInstanceUID: '*' } })).toEqual(sorted([s1, s2, s3]));
    // Orthanc does not answer in storage order, but pages follow its order
    const all = await core.findIds({ Level: 'Study', Query: {} });
    expect(sorted(all)).toEqual(sorted([s1, s2, s3]));
    expect(await core.findIds({ Level: 'Study', Query: {}, Limit: 2 })).toEqual(all.slice(0, 2));
    expect(await core.findIds({ Level: 'Study', Query: {}, Since: 1, Limit: 1 })).toEqual(all.slice(1, 2));
    expect(await core.findIds({ Level: 'Study', Query: {}, Since: 2 })).toEqual(all.slice(2));
  });

  it('matches attributes of lower levels on descendants, as the embedded core does', async () => {
    const [s2, s3] = [stored[2].ParentStudy, stored[3].ParentStudy];
    const withCt = await core.findIds({ Level: 'Study', Query: { Modality: 'CT' } });
    expect(sorted(withCt)).toEqual(sorted([s2, s3]));
    expect(await core.findIds({ Level: 'Study', Query: { Modality: 'CT' }, Since: 1 })).toEqual(withCt.slice(1));
    expect(await core.findIds({ Level: 'Study', Query: { Modality: 'CT' }, Limit: 1 })).toEqual(withCt.slice(0, 1));
    expect(await core.findIds({ Level: 'Patient', Query: { Modality: 'ot' } })).toEqual([stored[6].ParentPatient]);
    expect(sorted(await core.findIds({ Level: 'Series', Query: { InstanceNumber: '2' } }))).toEqual(sorted([stored[1].ParentSeries, stored[5].ParentSeries]));
    const found = await core.find({ Level: 'Study', Query: { Modality: 'PT' } });
    expect(found.map((r) => r.ID)).toEqual([s3]);
    expect(found[0]).toMatchObject({ Type: 'Study', Labels: [], MainDicomTags: { StudyDescription: 'Whole body' } });
  });

  it('answers RequestedTags, computed ones included', async () => {
    const [study] = await core.find({ Level: 'Study', Query: { AccessionNumber: 'ACC-3' }, RequestedTags: STUDY_TAGS });
    expect(study.RequestedTags).toEqual({
      ModalitiesInStudy: 'CT\\OT\\PT',
      NumberOfStudyRelatedSeries: '3',
      NumberOfStudyRelatedInstances: '4',
      SOPClassesInStudy: `${SopClass.CTImageStorage}\\${SopClass.SecondaryCaptureImageStorage}`,
      PatientName: 'Doe^John',
      PatientID: 'PC',
      StudyDate: '20221120',
      Rows: expect.stringMatching(/^\d+$/),
      SeriesDescription: 'Generated test series',
    });
    const [patient] = await core.find({ Level: 'Patient', Query: { PatientID: 'PC' }, RequestedTags: PATIENT_TAGS });
    expect(patient.RequestedTags).toMatchObject({
      NumberOfPatientRelatedStudies: '1',
      NumberOfPatientRelatedSeries: '3',
      NumberOfPatientRelatedInstances: '4',
    });
    const series = await core.find({ Level: 'Series', Query: { PatientID: 'PC', Modality: 'CT' }, RequestedTags: SERIES_TAGS });
    expect(series.map((s) => s.RequestedTags)).toEqual([
      { NumberOfSeriesRelatedInstances: '2', Modality: 'CT', StudyInstanceUID: newUid('remote-core-test/s3'), PatientName: 'Doe^John', SOPClassUID: SopClass.CTImageStorage },
    ]);
  });

  it('refuses unknown tags and levels with 400', async () => {
    await expect(core.find({ Level: 'Study', Query: { NoSuchKeyword: 'x' } })).rejects.toMatchObject({ httpStatus: 400 });
    await expect(core.findIds({ Level: 'Nope' as 'Study', Query: {} })).rejects.toMatchObject({ httpStatus: 400 });
  });

  it('looks up DICOM identifiers', async () => {
    const dicom = readInstance(files[0]).dataset as Record<string, string>;
    expect(await core.lookup(dicom.SOPInstanceUID)).toEqual([{ ID: stored[0].ID, Path: `/instances/${stored[0].ID}`, Type: 'Instance' }]);
    expect(await core.lookup('PA')).toEqual([{ ID: stored[0].ParentPatient, Path: `/patients/${stored[0].ParentPatient}`, Type: 'Patient' }]);
    expect(await core.lookup('1.2.3.4.5.6.7.8.9')).toEqual([]);
  });

  it('answers resources with every field of the interface, undefined when unknown', async () => {
    const [first] = stored;
    const patient = await core.getResource('Patient', first.ParentPatient);
    expect(patient).toMatchObject({ Type: 'Patient', ID: first.ParentPatient, Studies: [first.ParentStudy], Labels: [], IsStable: expect.any(Boolean) });
    const study = await core.getResource('Study', first.ParentStudy);
    expect(study).toMatchObject({ Type: 'Study', ParentPatient: first.ParentPatient, PatientMainDicomTags: { PatientID: 'PA' }, Labels: [] });
    const series = await core.getResource('Series', first.ParentSeries);
    expect(series).toMatchObject({ Type: 'Series', ParentStudy: first.ParentStudy, Instances: expect.any(Array), ExpectedNumberOfInstances: null, Status: 'Unknown' });
    const instance = await core.getResource('Instance', first.ID);
    expect(instance).toMatchObject({ Type: 'Instance', ParentSeries: first.ParentSeries, FileSize: files[0].length, IndexInSeries: 1, Labels: [] });
    expect(await core.getResource('Study', first.ID)).toBeUndefined();
    expect(await core.getResource('Study', '00000000-00000000-00000000-00000000-00000000')).toBeUndefined();
    expect(await core.getResource('Study', '../system')).toBeUndefined();
  });

  it('lists instances in IndexInSeries order', async () => {
    const patientId = 'PORDER';
    const series = { PatientID: patientId, StudyInstanceUID: newUid(), SeriesInstanceUID: newUid() };
    const answers: StoreResult[] = [];
    for (const n of [3, 1, 2]) answers.push(await core.storeInstance({ buffer: makeInstance({ ...series, InstanceNumber: n }) }));
    const listed = await core.getInstances('Series', answers[0].ParentSeries);
    expect(listed?.map((i) => i.IndexInSeries)).toEqual([1, 2, 3]);
    expect(listed?.map((i) => i.ID)).toEqual([answers[1].ID, answers[2].ID, answers[0].ID]);
    expect((await core.getInstances('Study', answers[0].ParentStudy))?.length).toBe(3);
    expect((await core.getInstances('Instance', answers[0].ID))?.map((i) => i.ID)).toEqual([answers[0].ID]);
    expect(await core.getInstances('Series', '00000000-00000000-00000000-00000000-00000000')).toBeUndefined();
    expect(await core.deleteResource('Patient', answers[0].ParentPatient)).toBe(true);
  });

  it('streams files (same bytes), transcodes, reads raw frames and metadata', async () => {
    const file = await core.readInstanceFile(stored[2].ID);
    expect(file.size).toBe(files[2].length);
    expect(file.transferSyntax).toBe(TransferSyntax.ExplicitVRLittleEndian);
    expect(await bytesOf(file.stream)).toEqual(files[2]);

    const implicit = await core.readInstanceFile(stored[2].ID, { transcode: TransferSyntax.ImplicitVRLittleEndian });
    expect(implicit.transferSyntax).toBe(TransferSyntax.ImplicitVRLittleEndian);
    const transcoded = readInstance(await bytesOf(implicit.stream));
    expect(transcoded.meta.TransferSyntaxUID).toBe(TransferSyntax.ImplicitVRLittleEndian);
    // the instance keeps its identity
    expect(transcoded.dataset.SOPInstanceUID).toBe(readInstance(files[2]).dataset.SOPInstanceUID);
    await expect(core.readInstanceFile(stored[2].ID, { transcode: '1.2.3.4' })).rejects.toMatchObject({ httpStatus: 415 });

    const frame = await core.readFrameRaw(stored[2].ID, 0);
    expect(frame.length).toBe(8 * 8 * 2);
    await expect(core.readFrameRaw(stored[2].ID, 5)).rejects.toMatchObject({ httpStatus: 400 });

    expect(await core.getInstanceMetadata(stored[2].ID, 'TransferSyntax')).toBe(TransferSyntax.ExplicitVRLittleEndian);
    expect(await core.getInstanceMetadata(stored[2].ID, 'IndexInSeries')).toBe('1');
    expect(await core.getInstanceMetadata(stored[2].ID, 'NoSuchMetadata')).toBeUndefined();
    expect(await core.getInstanceMetadata('00000000-00000000-00000000-00000000-00000000', 'TransferSyntax')).toBeUndefined();
    await expect(core.readInstanceFile('00000000-00000000-00000000-00000000-00000000')).rejects.toMatchObject({ httpStatus: 404 });
  });

  it('deletes resources and records changes', async () => {
    const extra = await core.storeInstance({ buffer: makeInstance({ PatientID: 'PDEL' }) });
    const before = await core.getChanges(0, 1000);
    expect(before.Changes.some((c) => c.ChangeType === 'NewInstance' && c.ID === extra.ID)).toBe(true);
    expect(await core.deleteResource('Series', extra.ParentSeries)).toBe(true);
    expect(await core.deleteResource('Series', extra.ParentSeries)).toBe(false);
    expect(await core.getResource('Patient', extra.ParentPatient)).toBeUndefined();
    // Orthanc 1.10 does not log deletions in /changes (the embedded core does)
    const after = await core.getChanges(before.Last, 1000);
    expect(after).toMatchObject({ Done: true, Last: expect.any(Number) });
    expect(after.Changes.every((c) => c.Seq > before.Last)).toBe(true);
    const paged = await core.getChanges(0, 2);
    expect(paged).toMatchObject({ Done: false, Last: paged.Changes[1].Seq });
  });
});

describe('RemoteCore answers like the embedded core', () => {
  const gateways: Partial<Record<'embedded' | 'remote', TestGateway>> = {};
  const files = sampleFiles();

  beforeAll(async () => {
    [gateways.embedded, gateways.remote] = await Promise.all([startTestGateway('embedded'), startTestGateway('remote')]);
  });
  afterAll(async () => {
    await Promise.all([gateways.embedded?.close(), gateways.remote?.close()]);
  });

  /** Runs the same call on both cores and answers [embedded, remote]. */
  async function both<T>(call: (core: NativeCore) => Promise<T>): Promise<[T, T]> {
    const embedded = await call((gateways.embedded as TestGateway).core);
    const remote = await call((gateways.remote as TestGateway).core);
    return [embedded, remote];
  }

  it('stores with the same answers', async () => {
    for (const file of files) {
      const [embedded, remote] = await both((core) => core.storeInstance({ buffer: file }));
      expect(remote).toEqual(embedded);
    }
  });

  // Orthanc's order is not the storage order (neither promises one): answers are compared as sets, and a page
  // (Since/Limit) as the same slice of each core's own order
  it.each(SEARCHES.map((request) => [JSON.stringify(request), request] as const))('finds the same: %s', async (_name, request) => {
    const { Since, Limit, ...unpaged } = request;
    const [embeddedAll, remoteAll] = await both((core) => core.findIds(unpaged));
    expect(sorted(remoteAll)).toEqual(sorted(embeddedAll));
    const [embeddedIds, remoteIds] = await both((core) => core.findIds(request));
    const slice = (ids: string[]): string[] => ids.slice(Since ?? 0, Limit ? (Since ?? 0) + Limit : undefined);
    expect(embeddedIds).toEqual(slice(embeddedAll));
    expect(remoteIds).toEqual(slice(remoteAll));
    const withTags = { ...unpaged, RequestedTags: tagsFor(request.Level) };
    const [embedded, remote] = await both((core) => core.find(withTags));
    expect(sortedById(remote).map(comparable)).toEqual(sortedById(embedded).map(comparable));
    const [, remotePage] = await both((core) => core.find({ ...withTags, Since, Limit }));
    expect(remotePage.map((r) => r.ID)).toEqual(remoteIds);
  });

  it('answers the same resources, instances, lookups, files and metadata', async () => {
    const [stored] = await both((core) => core.findIds({ Level: 'Instance', Query: {} }));
    expect(stored).toHaveLength(files.length);
    const first = (await gateways.embedded?.core.getResource('Instance', stored[0])) as Resource & { ParentSeries: string };
    for (const level of ['Patient', 'Study', 'Series'] as const) {
      const [ids] = await both((core) => core.findIds({ Level: level, Query: {} }));
      for (const id of ids) {
        const [embedded, remote] = await both((core) => core.getResource(level, id));
        expect(remote && comparable(remote)).toEqual(embedded && comparable(embedded));
        expect(Object.keys(remote ?? {}).sort()).toEqual(expect.arrayContaining(Object.keys(embedded ?? {}).sort()));
        const [embeddedInstances, remoteInstances] = await both((core) => core.getInstances(level, id));
        expect(sortedById(remoteInstances ?? []).map(comparable)).toEqual(sortedById(embeddedInstances ?? []).map(comparable));
      }
    }
    for (const id of stored) {
      const [embedded, remote] = await both(async (core) => bytesOf((await core.readInstanceFile(id)).stream));
      expect(remote).toEqual(embedded);
      const [embeddedSyntax, remoteSyntax] = await both((core) => core.getInstanceMetadata(id, 'TransferSyntax'));
      expect(remoteSyntax).toBe(embeddedSyntax);
    }
    const uid = readInstance(files[0]).dataset.SeriesInstanceUID as string;
    const [embeddedLookup, remoteLookup] = await both((core) => core.lookup(uid));
    expect(remoteLookup).toEqual(embeddedLookup);
    expect(remoteLookup[0].ID).toBe(first.ParentSeries);
    const [embeddedMissing, remoteMissing] = await both((core) => core.getResource('Series', stored[0]));
    expect(remoteMissing).toEqual(embeddedMissing);
  });

  it('deletes the same way', async () => {
    const [patients] = await both((core) => core.findIds({ Level: 'Patient', Query: { PatientID: 'PB' } }));
    expect(await both((core) => core.deleteResource('Patient', patients[0]))).toEqual([true, true]);
    expect(await both((core) => core.deleteResource('Patient', patients[0]))).toEqual([false, false]);
    const [embedded, remote] = await both((core) => core.findIds({ Level: 'Study', Query: {} }));
    expect(sorted(remote)).toEqual(sorted(embedded));
    expect(remote).toHaveLength(2);
  });
});

describe('RemoteCore errors', () => {
  function remoteCore(url: string, extra: Partial<{ username: string; password: string; httpTimeout: number }> = {}): RemoteCore {
    return new RemoteCore({
      core: { url, username: extra.username, password: extra.password },
      httpTimeout: extra.httpTimeout ?? 5,
      httpsVerifyPeers: true,
    });
  }

  it('answers 503 when the core is down, and works once it is up', async () => {
    const port = await freePort();
    const core = remoteCore(`http://127.0.0.1:${port}`);
    // a stand-in for an Orthanc 1.10 that comes up later
    const standIn = createHttpServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/system' ? JSON.stringify({ Version: '1.10.1', ApiVersion: 16 }) : '[]');
    });
    try {
      await expect(core.getSystem()).rejects.toMatchObject({ httpStatus: 503, message: 'The core is not reachable' });
      await expect(core.find({ Level: 'Study', Query: {} })).rejects.toMatchObject({ httpStatus: 503 });
      expect(await core.checkConnection()).toBe(false);
      await new Promise<void>((resolve) => standIn.listen(port, '127.0.0.1', resolve));
      expect(await core.findIds({ Level: 'Study', Query: {} })).toEqual([]);
      expect(await core.checkConnection()).toBe(true);
    } finally {
      await core.close();
      standIn.close();
    }
  });

  it("answers 502 when the core refuses the gateway's credentials, without telling them", async () => {
    const orthanc = await startOrthanc({ users: { gatewayuser: 'core-secret-password' } });
    const wrong = remoteCore(orthanc.url, { username: 'gatewayuser', password: 'wrong-password' });
    const right = remoteCore(orthanc.url, { username: 'gatewayuser', password: 'core-secret-password' });
    try {
      const error = await wrong.find({ Level: 'Study', Query: {} }).catch((e: unknown) => e);
      expect(error).toMatchObject({ httpStatus: 502, message: "The core refused the gateway's credentials" });
      expect(JSON.stringify(error)).not.toContain('core-secret-password');
      expect(await right.findIds({ Level: 'Study', Query: {} })).toEqual([]);
    } finally {
      await Promise.all([wrong.close(), right.close()]);
      await orthanc.stop();
    }
  });

  it('uses the RequestedTags of cores that answer them (Orthanc 1.11+), named as ours', async () => {
    const bodies: unknown[] = [];
    const study = '11111111-22222222-33333333-44444444-55555555';
    const standIn = createHttpServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/system') return void res.end(JSON.stringify({ Version: '1.12.1', ApiVersion: 22, HasLabels: true }));
        bodies.push(JSON.parse(text));
        res.end(JSON.stringify([{ ID: study, Type: 'Study', MainDicomTags: {}, Series: [], RequestedTags: { ModalitiesInStudy: 'CT', '0010,0020': 'P1' } }]));
      });
    });
    const port = await new Promise<number>((resolve) => standIn.listen(0, '127.0.0.1', () => resolve((standIn.address() as { port: number }).port)));
    const core = remoteCore(`http://127.0.0.1:${port}`);
    try {
      const [found] = await core.find({ Level: 'Study', Query: { PatientName: 'X*' }, RequestedTags: ['ModalitiesInStudy', '00100020'], Labels: ['a'] });
      expect(found).toMatchObject({ ID: study, Labels: [], RequestedTags: { ModalitiesInStudy: 'CT', PatientID: 'P1' } });
      expect(bodies).toEqual([
        {
          Level: 'Study',
          Query: { '0010,0010': 'X*' },
          Expand: true,
          CaseSensitive: false,
          Labels: ['a'],
          LabelsConstraint: 'All',
          RequestedTags: ['0008,0061', '0010,0020'],
        },
      ]);
    } finally {
      await core.close();
      standIn.close();
    }
  });

  it('answers 504 when the core does not answer within HttpTimeout', async () => {
    // a server that accepts connections and never answers
    const server: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const core = remoteCore(`http://127.0.0.1:${port}`, { httpTimeout: 1 });
    try {
      await expect(core.getSystem()).rejects.toMatchObject({ httpStatus: 504 });
    } finally {
      await core.close().catch(() => undefined);
      server.close();
    }
  });
});
