import type Database from 'better-sqlite3';
import { CoreError } from '../native-model';
import { LEVEL_CODE } from './schema';

/** A file of the storage area whose index rows are gone: the caller removes it once the transaction is committed. */
export interface DroppedFile {
  uuid: string;
  size: number;
}

export interface RecyclingLimits {
  /** MaximumStorageSize in MB (Orthanc's unit: 1024 * 1024 bytes); 0: no limit. */
  maximumStorageSize: number;
  /** MaximumPatientCount; 0: no limit. */
  maximumPatientCount: number;
}

/** What makeRoom needs from the index, inside the transaction that stores the new instance. */
export interface RecyclableIndex {
  /** Bytes of every indexed attachment. */
  storageSize(): number;
  /** Deletes a patient's rows (and records its files for removal), as DELETE /patients/{id} does. */
  deletePatient(internalId: number): DroppedFile[];
}

const FULL = 'The file storage is full';

/**
 * Orthanc's patient recycling (MaximumStorageSize, MaximumPatientCount) and protection (/patients/{id}/protected).
 * Orthanc 1.10 has no other MaximumStorageMode: a full store always recycles, and refuses only when every patient
 * it could delete is protected (or is the patient of the new instance).
 */
export class PatientRecycling {
  private readonly statements: {
    touch: Database.Statement;
    oldest: Database.Statement;
    patients: Database.Statement;
    isProtected: Database.Statement;
    setProtected: Database.Statement;
  };

  constructor(
    db: Database.Database,
    private readonly limits: RecyclingLimits,
  ) {
    this.statements = {
      // REPLACE drops the patient's row and appends a new one: the patient becomes the most recently stored
      touch: db.prepare('INSERT OR REPLACE INTO recycling_order (patient_id) VALUES (?)'),
      oldest: db.prepare(
        `SELECT o.patient_id AS id FROM recycling_order o JOIN resources r ON r.internal_id = o.patient_id
         WHERE r.is_protected = 0 AND o.patient_id <> ? ORDER BY o.seq LIMIT 1`,
      ),
      patients: db.prepare(`SELECT COUNT(*) AS n FROM resources WHERE level = ${LEVEL_CODE.Patient}`),
      isProtected: db.prepare(`SELECT is_protected AS p FROM resources WHERE internal_id = ? AND level = ${LEVEL_CODE.Patient}`),
      setProtected: db.prepare('UPDATE resources SET is_protected = ? WHERE internal_id = ?'),
    };
  }

  get enabled(): boolean {
    return this.limits.maximumStorageSize > 0 || this.limits.maximumPatientCount > 0;
  }

  /** Refuses at once an instance larger than the whole storage area (before its file is moved into place). */
  checkInstanceSize(size: number): void {
    const maximum = this.limits.maximumStorageSize * 1024 * 1024;
    if (maximum > 0 && size > maximum) {
      throw new CoreError(507, FULL, `Cannot store an instance of size ${size} bytes in a storage area limited to ${maximum}`);
    }
  }

  /**
   * Deletes the least recently stored unprotected patients until an instance of `size` bytes fits, as Orthanc does
   * when it stores one. `patient` is the internal id of the instance's patient when it already exists: it is never
   * recycled, and adds no patient. Throws 507 when nothing more can be recycled; run inside the storing transaction,
   * so that a refusal rolls the deletions back. Returns the files of the deleted patients.
   */
  makeRoom(index: RecyclableIndex, size: number, patient: number | undefined): DroppedFile[] {
    if (!this.enabled) return [];
    this.checkInstanceSize(size);
    const maximumBytes = this.limits.maximumStorageSize * 1024 * 1024;
    const dropped: DroppedFile[] = [];
    let freed = 0;
    const needsRoom = (): boolean => {
      if (maximumBytes > 0 && index.storageSize() - freed + size > maximumBytes) return true;
      if (this.limits.maximumPatientCount === 0) return false;
      const count = (this.statements.patients.get() as { n: number }).n + (patient === undefined ? 1 : 0);
      return count > this.limits.maximumPatientCount;
    };
    while (needsRoom()) {
      const oldest = this.statements.oldest.get(patient ?? -1) as { id: number } | undefined;
      if (!oldest) throw new CoreError(507, FULL, 'Cannot recycle more patients');
      for (const file of index.deletePatient(oldest.id)) {
        dropped.push(file);
        freed += file.size;
      }
    }
    return dropped;
  }

  /** The patient received a new instance: last in the recycling order. */
  markMostRecent(patient: number): void {
    this.statements.touch.run(patient);
  }

  /** undefined when `patient` is no patient's internal id. */
  isProtected(patient: number): boolean | undefined {
    const row = this.statements.isProtected.get(patient) as { p: number } | undefined;
    return row === undefined ? undefined : row.p !== 0;
  }

  /** As Orthanc, a patient that stops being protected becomes the most recently stored. */
  setProtected(patient: number, protect: boolean): void {
    const was = this.isProtected(patient);
    this.statements.setProtected.run(protect ? 1 : 0, patient);
    if (was && !protect) this.markMostRecent(patient);
  }
}
