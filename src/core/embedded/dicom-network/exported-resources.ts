import type { EmbeddedCore } from '../embedded-core';
import { orthancTimestamp } from '../embedded-core';
import { LEVEL_CODE } from '../schema';

/**
 * Records one instance sent to a modality in `exported_resources` (GET /exports), as Orthanc does when
 * "LogExportedResources" is true: one row per instance, the remote named by its AE title.
 */
export function logExportedInstance(core: EmbeddedCore, instanceId: string, remoteAet: string): void {
  const instance = core.instanceRow(instanceId);
  if (!instance) return;
  const uidAt = (level: 'Patient' | 'Study' | 'Series'): string => core.ancestorRow('Instance', instanceId, level)?.dicom_uid ?? '';
  core.db
    .prepare(
      `INSERT INTO exported_resources (level, public_id, remote, patient_id, study_uid, series_uid, sop_uid, date)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(LEVEL_CODE.Instance, instanceId, remoteAet, uidAt('Patient'), uidAt('Study'), uidAt('Series'), instance.dicom_uid, orthancTimestamp());
}
