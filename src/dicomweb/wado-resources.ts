/**
 * From the UIDs of a WADO-RS path to the core's resources, through the native model only
 * (`lookup` + `getResource`), checking the hierarchy: a series UID under another study, or an
 * instance UID under another series, is unknown here (404), as PS3.18 §10.4 wants.
 */
import type { InstanceResource, NativeCore, SeriesResource, StudyResource } from '../core/native-model';
import { mapLimit } from '../core/map-limit';
import { HttpError } from '../server/errors';

/** One instance with the UIDs of its path (for Content-Location and bulk data URIs). */
export interface InstanceRef {
  id: string;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  resource: InstanceResource;
}

/** A series with the UIDs of its path; `series.Instances` lists its instances' identifiers. */
export interface SeriesTarget {
  studyUid: string;
  seriesUid: string;
  series: SeriesResource;
}

/** A series with its instances, in the core's order (IndexInSeries). */
export interface SeriesRef extends SeriesTarget {
  instances: InstanceRef[];
}

function notFound(what: string, uid: string): HttpError {
  return new HttpError(404, `Unknown ${what}`, `No ${what} with UID ${uid} here`);
}

async function idsOf(core: NativeCore, uid: string, type: 'Study' | 'Series' | 'Instance'): Promise<string[]> {
  // A UID is text: anything else (or an empty one) cannot name a resource.
  if (uid.trim() === '') return [];
  return (await core.lookup(uid)).filter((match) => match.Type === type).map((match) => match.ID);
}

/** Every study with this UID (one per patient that has it, as Orthanc keys studies by PatientID too). */
export async function resolveStudies(core: NativeCore, studyUid: string): Promise<StudyResource[]> {
  const ids = await idsOf(core, studyUid, 'Study');
  const studies = await Promise.all(ids.map((id) => core.getResource('Study', id)));
  const found = studies.filter((s): s is StudyResource => s?.Type === 'Study');
  if (found.length === 0) throw notFound('study', studyUid);
  return found;
}

export async function resolveSeries(core: NativeCore, studyUid: string, seriesUid: string): Promise<SeriesResource> {
  const [studyIds, seriesIds] = await Promise.all([idsOf(core, studyUid, 'Study'), idsOf(core, seriesUid, 'Series')]);
  if (studyIds.length === 0) throw notFound('study', studyUid);
  for (const id of seriesIds) {
    const series = await core.getResource('Series', id);
    if (series?.Type === 'Series' && studyIds.includes(series.ParentStudy)) return series;
  }
  throw notFound('series', seriesUid);
}

export async function resolveInstance(core: NativeCore, studyUid: string, seriesUid: string, sopUid: string): Promise<InstanceRef> {
  const [studyIds, seriesIds, instanceIds] = await Promise.all([
    idsOf(core, studyUid, 'Study'),
    idsOf(core, seriesUid, 'Series'),
    idsOf(core, sopUid, 'Instance'),
  ]);
  if (studyIds.length === 0) throw notFound('study', studyUid);
  if (seriesIds.length === 0) throw notFound('series', seriesUid);
  for (const id of instanceIds) {
    const instance = await core.getResource('Instance', id);
    if (instance?.Type !== 'Instance' || !seriesIds.includes(instance.ParentSeries)) continue;
    const series = await core.getResource('Series', instance.ParentSeries);
    if (series?.Type === 'Series' && studyIds.includes(series.ParentStudy)) {
      return { id, studyUid, seriesUid, sopUid, resource: instance };
    }
  }
  throw notFound('instance', sopUid);
}

export function seriesTarget(studyUid: string, series: SeriesResource): SeriesTarget {
  return { studyUid, seriesUid: series.MainDicomTags.SeriesInstanceUID ?? '', series };
}

/** The instances of a series with their UIDs. */
export async function seriesRefOf(core: NativeCore, target: SeriesTarget): Promise<SeriesRef> {
  const instances = (await core.getInstances('Series', target.series.ID)) ?? [];
  return {
    ...target,
    instances: instances.map((resource) => ({
      id: resource.ID,
      studyUid: target.studyUid,
      seriesUid: target.seriesUid,
      sopUid: resource.MainDicomTags.SOPInstanceUID ?? '',
      resource,
    })),
  };
}

/** Every series of the studies, in the core's order; a series deleted meanwhile is skipped. */
export async function studySeriesTargets(core: NativeCore, studyUid: string, studies: readonly StudyResource[]): Promise<SeriesTarget[]> {
  const seriesIds = studies.flatMap((study) => study.Series);
  const series = await mapLimit(seriesIds, 8, (id) => core.getResource('Series', id));
  return series.filter((s): s is SeriesResource => s?.Type === 'Series').map((s) => seriesTarget(studyUid, s));
}
