import Database from 'better-sqlite3';
import path from 'node:path';
import fs from 'node:fs';

/** Levels as stored in the index (Orthanc's order). */
export const LEVEL_CODE = { Patient: 0, Study: 1, Series: 2, Instance: 3 } as const;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS resources (
  internal_id INTEGER PRIMARY KEY,
  public_id TEXT NOT NULL UNIQUE,
  level INTEGER NOT NULL,
  parent_id INTEGER REFERENCES resources(internal_id) ON DELETE CASCADE,
  -- ancestors, the resource itself at its own level: lets a search join any level without recursion
  patient_id INTEGER,
  study_id INTEGER,
  series_id INTEGER,
  dicom_uid TEXT NOT NULL,
  tags TEXT NOT NULL,
  last_update TEXT NOT NULL,
  is_protected INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS resources_parent ON resources(parent_id);
CREATE INDEX IF NOT EXISTS resources_level ON resources(level, internal_id);
CREATE INDEX IF NOT EXISTS resources_patient ON resources(patient_id, level);
CREATE INDEX IF NOT EXISTS resources_study ON resources(study_id, level);
CREATE INDEX IF NOT EXISTS resources_series ON resources(series_id, level);
CREATE INDEX IF NOT EXISTS resources_uid ON resources(dicom_uid, level);

-- one row per indexed attribute; 'folded' is the upper-cased value for case-insensitive matching
CREATE TABLE IF NOT EXISTS tag_index (
  internal_id INTEGER NOT NULL REFERENCES resources(internal_id) ON DELETE CASCADE,
  tag TEXT NOT NULL,
  value TEXT NOT NULL,
  folded TEXT NOT NULL
);
-- values are found through 'folded' alone, case-sensitive matches included (see find-query.ts); an index on
-- (tag, value) too would cost every stored attribute a second index entry
DROP INDEX IF EXISTS tag_index_value;
CREATE INDEX IF NOT EXISTS tag_index_folded ON tag_index(tag, folded);
CREATE INDEX IF NOT EXISTS tag_index_resource ON tag_index(internal_id);

CREATE TABLE IF NOT EXISTS attachments (
  internal_id INTEGER NOT NULL REFERENCES resources(internal_id) ON DELETE CASCADE,
  file_type INTEGER NOT NULL,
  uuid TEXT NOT NULL,
  size INTEGER NOT NULL,
  md5 TEXT NOT NULL,
  -- revision of a user attachment (Orthanc's ETag "revision-md5"), 0 when created
  revision INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (internal_id, file_type)
);

CREATE TABLE IF NOT EXISTS metadata (
  internal_id INTEGER NOT NULL REFERENCES resources(internal_id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  revision INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (internal_id, name)
);

CREATE TABLE IF NOT EXISTS labels (
  internal_id INTEGER NOT NULL REFERENCES resources(internal_id) ON DELETE CASCADE,
  label TEXT NOT NULL,
  PRIMARY KEY (internal_id, label)
);
CREATE INDEX IF NOT EXISTS labels_label ON labels(label);

CREATE TABLE IF NOT EXISTS changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  change_type TEXT NOT NULL,
  level INTEGER NOT NULL,
  public_id TEXT NOT NULL,
  date TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS exported_resources (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  level INTEGER NOT NULL,
  public_id TEXT NOT NULL,
  remote TEXT NOT NULL,
  patient_id TEXT NOT NULL,
  study_uid TEXT NOT NULL,
  series_uid TEXT NOT NULL,
  sop_uid TEXT NOT NULL,
  date TEXT NOT NULL
);

-- files being written or deleted: what a crash leaves here is cleaned at the next start
CREATE TABLE IF NOT EXISTS pending_files (
  uuid TEXT PRIMARY KEY,
  operation TEXT NOT NULL
);

-- Orthanc's PatientRecyclingOrder: every patient, the least recently stored first (seq renewed by each new instance)
CREATE TABLE IF NOT EXISTS recycling_order (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  patient_id INTEGER NOT NULL UNIQUE REFERENCES resources(internal_id) ON DELETE CASCADE
);
`;

/**
 * Patients of an index written before recycling_order existed join it in the order of their last update
 * (idempotent: a no-op once every patient is listed).
 */
const LIST_UNLISTED_PATIENTS = `
INSERT INTO recycling_order (patient_id)
  SELECT internal_id FROM resources
  WHERE level = 0 AND internal_id NOT IN (SELECT patient_id FROM recycling_order)
  ORDER BY last_update, internal_id`;

function indexFile(indexDirectory: string): string {
  return path.join(indexDirectory, 'index.sqlite');
}

export function openIndex(indexDirectory: string): Database.Database {
  fs.mkdirSync(indexDirectory, { recursive: true });
  const db = new Database(indexFile(indexDirectory));
  db.pragma('journal_mode = WAL');
  // NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the last commits)
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // 16 MiB: the OS page cache keeps the rest of the index at hand, and the process stays small (bench: peak RSS)
  db.pragma('cache_size = -16384');
  db.exec(SCHEMA);
  migrate(db);
  db.prepare(LIST_UNLISTED_PATIENTS).run();
  return db;
}

/**
 * The index of a running core, opened again by a search thread: reads only, with a smaller page cache (the threads
 * read what the main connection keeps warm in the OS page cache, and each cache adds to the process's memory).
 */
export function openIndexForReading(indexDirectory: string): Database.Database {
  const db = new Database(indexFile(indexDirectory), { fileMustExist: true });
  db.pragma('query_only = ON');
  db.pragma('cache_size = -4096');
  return db;
}

/** Version of the index layout, in SQLite's user_version: 0 = created before revisions (no `revision` columns). */
export const SCHEMA_VERSION = 1;

/** Brings an index written by an earlier version up to SCHEMA_VERSION (CREATE TABLE IF NOT EXISTS adds no column). */
function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version >= SCHEMA_VERSION) return;
  db.transaction(() => {
    for (const table of ['metadata', 'attachments']) {
      const columns = db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>;
      if (!columns.some((column) => column.name === 'revision')) db.exec(`ALTER TABLE ${table} ADD COLUMN revision INTEGER NOT NULL DEFAULT 0`);
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}
