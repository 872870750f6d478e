import type { EmbeddedCore } from '../embedded-core';
import { orthancTimestamp } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { LEVEL_CODE } from '../schema';

/**
 * Records one resource sent to a remote in `exported_resources` (GET /exports), as Orthanc does when
 * "LogExportedResources" is true. The remote is a modality's AE title or a peer's name; the UIDs of the
 * levels below the resource stay empty.
 */
export function logExportedResource(core: EmbeddedCore, level: ResourceLevel, publicId: string, remote: string): void {
  if (!core.ancestorRow(level, publicId, level)) return;
  // a resource is its own ancestor at its level (see the resources table)
  const uidAt = (at: ResourceLevel): string => (LEVEL_CODE[at] <= LEVEL_CODE[level] ? core.ancestorRow(level, publicId, at)?.dicom_uid ?? '' : '');
  core.db
    .prepare(
      `INSERT INTO exported_resources (level, public_id, remote, patient_id, study_uid, series_uid, sop_uid, date)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(LEVEL_CODE[level], publicId, remote, uidAt('Patient'), uidAt('Study'), uidAt('Series'), uidAt('Instance'), orthancTimestamp());
}

/** One instance sent to a modality: one row per instance, the remote named by its AE title. */
export function logExportedInstance(core: EmbeddedCore, instanceId: string, remoteAet: string): void {
  logExportedResource(core, 'Instance', instanceId, remoteAet);
}
