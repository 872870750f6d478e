import type Database from 'better-sqlite3';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash, randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../../config/gateway-config';
import {
  CoreError,
  type ChangesPage,
  type FileStream,
  type FindRequest,
  type InstanceResource,
  type LookupMatch,
  type NativeCore,
  type Resource,
  type ResourceLevel,
  type StoreInput,
  type StoredFile,
  type StoreResult,
  type SystemInfo,
} from '../native-model';
import { LEVELS, LEVEL_PATH, LEVEL_TAGS, LEVEL_UID_TAG, indexedTags, levelIndex, levelOfTag } from '../main-dicom-tags';
import { orthancId, isOrthancId } from '../orthanc-ids';
import { openIndex, LEVEL_CODE } from './schema';
import { StorageArea, isOutOfSpace, readFileHead } from './storage-area';
import { readPooledFiles } from './pooled-files';
import { Md5Thread, smallDigest, type FileDigest } from './md5-thread';
import { PatientRecycling, type DroppedFile } from './recycling';
import { buildConstraints, fold, matchesValue, type Constraint } from './find-query';
import { DicomParseError, elementToString, type DicomDataset } from '../../dicom/dicom-file';
import { normalizeTag, tagToKeyword, toOrthancTag, vrOfTag } from '../../dicom/dictionary';
import { VERSION } from '../../server/version';
import { readDataset, type DatasetRead } from '../../dicom/dataset-reader';
import { NeedMoreData } from '../../dicom/element-scanner';
import { PixelDataError, readStoredFrame, readStoredFrames } from '../../dicom/pixel-data';
import { canTranscode, nativeFrameToLittleEndian, TranscodeError, transcodeFile } from '../../dicom/transcode';
import { TS } from '../../dicom/transfer-syntax';
import { ContentTypes, LAST_UPDATE_METADATA, MetadataTypes, md5Of, nextRevision, type Revision } from './metadata-types';

/** Seconds without new instances after which Orthanc calls a resource stable (its StableAge default). */
const STABLE_AGE_SECONDS = 60;
/** Enough to hold the header of nearly every file; a larger header is read whole. */
const HEADER_READ_BYTES = 1 << 20;
const DICOM_ATTACHMENT = 1;
/** Small first chunks by default: a reader that needs only the header (WADO-RS metadata) stops after one. */
const FILE_CHUNK_BYTES = 16 * 1024;
/** Largest chunk a caller may ask for (readers of whole files: retrieve, rendering). */
const MAX_FILE_CHUNK_BYTES = 8 << 20;

interface ResourceRow {
  internal_id: number;
  public_id: string;
  level: number;
  parent_id: number | null;
  patient_id: number;
  study_id: number | null;
  series_id: number | null;
  dicom_uid: string;
  tags: string;
  last_update: string;
}

interface AttachmentRow {
  uuid: string;
  size: number;
  md5: string;
}

type ResponseContent = NonNullable<FindRequest['ResponseContent']>[number];

/** What toResource reads of an ancestor. */
type AncestorRow = Pick<ResourceRow, 'internal_id' | 'public_id' | 'tags'>;

/**
 * What a search answer needs beyond its own rows, read in the statement of the rows instead of a few statements
 * per resource (an all-studies search is 5,000 resources).
 */
interface FindBatch {
  /** Ancestor rows by internal id. */
  rows: Map<number, AncestorRow>;
  /** Parsed `tags` by internal id (rows and ancestors), filled as they are read. */
  tags: Map<number, Record<string, string>>;
  /** Computed attribute (canonical tag) -> internal id -> value, for the computed tags asked. */
  computed: Map<string, Map<number, string>>;
  /** Series: number of children; instances: DICOM attachment and IndexInSeries. */
  childCounts?: Map<number, number>;
  attachments?: Map<number, AttachmentRow>;
  indexInSeries?: Map<number, string>;
}

/** The columns of a ResourceRow (SELECT * would also read is_protected, and each column costs). */
const ROW_COLUMNS = 'r.internal_id, r.public_id, r.level, r.parent_id, r.patient_id, r.study_id, r.series_id, r.dicom_uid, r.tags, r.last_update';

/** Columns of `resources` holding the ancestor at each level, by level code. */
const ANCESTOR_COLUMNS = ['patient_id', 'study_id', 'series_id'] as const;

/** What a search reads with its rows: extra select-list items and joins on `r`, and the batch made of them. */
interface AnswerColumns {
  select: string;
  joins: string;
  batch(rows: ResourceRow[]): FindBatch;
}

/** Computed attributes: [level of the resource, column of its descendants, level counted, tag of the values listed]. */
const COMPUTED_TAGS: ReadonlyMap<string, readonly [ResourceLevel, string, ResourceLevel, string?]> = new Map([
  ['00201200', ['Patient', 'patient_id', 'Study']],
  ['00201202', ['Patient', 'patient_id', 'Series']],
  ['00201204', ['Patient', 'patient_id', 'Instance']],
  ['00201206', ['Study', 'study_id', 'Series']],
  ['00201208', ['Study', 'study_id', 'Instance']],
  ['00201209', ['Series', 'series_id', 'Instance']],
  ['00080061', ['Study', 'study_id', 'Series', '00080060']],
  ['00080062', ['Study', 'study_id', 'Instance', '00080016']],
] as const);

/**
 * A computed attribute of the row `r` as an SQL expression: a count, or a JSON array of the sorted distinct values
 * (one aggregate: a DISTINCT subquery under group_concat costs 4x more, in temporary b-trees).
 */
function computedSql([, column, counted, valueTag]: readonly [ResourceLevel, string, ResourceLevel, string?]): string {
  const of = `d.${column} = r.internal_id AND d.level = ${LEVEL_CODE[counted]}`;
  if (valueTag === undefined) return `(SELECT COUNT(*) FROM resources d WHERE ${of})`;
  return (
    `(SELECT json_group_array(DISTINCT t.value ORDER BY t.value) FROM resources d CROSS JOIN tag_index t ON t.internal_id = d.internal_id ` +
    `WHERE ${of} AND t.tag = '${valueTag}' AND t.value <> '')`
  );
}

/** Orthanc's timestamp format, e.g. 20240131T235959. */
export function orthancTimestamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '').slice(0, 15);
}

function levelName(code: number): ResourceLevel {
  return LEVELS[code];
}

export class EmbeddedCore implements NativeCore {
  readonly kind = 'embedded' as const;
  readonly db: Database.Database;
  readonly storage: StorageArea;
  private totalSize: number;
  readonly recycling: PatientRecycling;
  /** Prepared statements by SQL text: compiling one costs more than running it (searches run thousands per answer). */
  private readonly statements = new Map<string, Database.Statement>();
  private readonly md5 = new Md5Thread();

  constructor(private readonly config: GatewayConfig) {
    this.db = openIndex(config.indexDirectory);
    this.storage = new StorageArea(config.storageDirectory);
    this.recoverFromCrash();
    this.totalSize = (this.prepare('SELECT COALESCE(SUM(size), 0) AS s FROM attachments').get() as { s: number }).s;
    this.recycling = new PatientRecycling(this.db, config);
  }

  /** A cached prepared statement; the cache is emptied when ad-hoc search SQL (one text per query shape) fills it. */
  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      if (this.statements.size >= 1000) this.statements.clear();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * Files whose write or delete was interrupted: a write that never reached the index is removed, a delete is
   * finished. Synchronous, and the journal is emptied only afterwards: a crash during the recovery is recovered again.
   */
  private recoverFromCrash(): void {
    const pending = this.prepare('SELECT uuid, operation FROM pending_files').all() as Array<{ uuid: string; operation: string }>;
    const referenced = this.prepare('SELECT 1 FROM attachments WHERE uuid = ?');
    for (const { uuid, operation } of pending) {
      if (operation === 'delete' || !referenced.get(uuid)) this.storage.removeSync(uuid);
    }
    this.prepare('DELETE FROM pending_files').run();
    this.storage.clearTemporary();
  }

  get storageSize(): number {
    return this.totalSize;
  }

  async getSystem(): Promise<SystemInfo> {
    return {
      Name: this.config.name,
      Version: VERSION.orthancApi,
      ApiVersion: VERSION.apiVersion,
      DatabaseVersion: 6,
      DicomAet: this.config.dicomAet,
      DicomPort: this.config.dicomPort,
      HttpPort: this.config.httpPort,
      PluginsEnabled: true,
      StorageAreaPlugin: null,
      DatabaseBackendPlugin: null,
      CheckRevisions: false,
      IsHttpServerSecure: true,
      MaximumStorageSize: this.config.maximumStorageSize,
      MaximumPatientCount: this.config.maximumPatientCount,
      OverwriteInstances: false,
      UserMetadata: this.config.userMetadata,
      HasLabels: true,
    };
  }

  // ---------------------------------------------------------------- storing

  async storeInstance(input: StoreInput): Promise<StoreResult> {
    // bytes in memory are written once, straight to their final place; a file is moved there
    const temporaryPath = 'file' in input ? input.file : undefined;
    let moved = false;
    try {
      const { parsed, whole } = await this.parseHeader(input);
      const identifiers = readIdentifiers(parsed.dataset);
      const ids = {
        patient: orthancId(identifiers.patientId),
        study: orthancId(identifiers.patientId, identifiers.studyUid),
        series: orthancId(identifiers.patientId, identifiers.studyUid, identifiers.seriesUid),
        instance: orthancId(identifiers.patientId, identifiers.studyUid, identifiers.seriesUid, identifiers.sopUid),
      };
      const result = (status: StoreResult['Status']): StoreResult => ({
        ID: ids.instance,
        ParentPatient: ids.patient,
        ParentStudy: ids.study,
        ParentSeries: ids.series,
        Path: `/instances/${ids.instance}`,
        Status: status,
      });
      if (this.findRow(ids.instance, 'Instance')) return result('AlreadyStored');

      // Orthanc's MD5 of the attachment: small contents read whole are hashed at once, large ones on the hashing thread
      // (see md5-thread.ts): a received file before it is moved, bytes in memory once they are written
      let digest: FileDigest | undefined = whole && smallDigest(whole);
      if (!digest && 'file' in input) digest = await this.md5.ofFile(input.file);
      const size = 'buffer' in input ? input.buffer.length : (digest as FileDigest).size;
      this.recycling.checkInstanceSize(size);

      const uuid = randomUUID();
      this.prepare("INSERT INTO pending_files (uuid, operation) VALUES (?, 'write')").run(uuid);
      let recycled: DroppedFile[] = [];
      let stored = false;
      try {
        if ('buffer' in input) {
          await this.storage.writeInPlace(uuid, input.buffer);
          digest ??= await this.md5.ofFile(this.storage.pathOf(uuid));
        } else {
          await this.storage.moveIntoPlace(input.file, uuid);
          moved = true;
        }
        // limits are checked and patients recycled in the transaction that indexes the instance: concurrent uploads
        // cannot both take the last free bytes, and a refusal rolls the recycling back
        stored = this.db.transaction(() => {
          // a concurrent upload of the same instance may have won while this file was being moved
          if (this.findRow(ids.instance, 'Instance')) return false;
          const patient = this.findRow(ids.patient, 'Patient');
          recycled = this.recycling.makeRoom(
            { storageSize: () => this.totalSize, deletePatient: (internalId) => this.deleteRows(this.rowById(internalId), orthancTimestamp()).files },
            size,
            patient?.internal_id,
          );
          this.indexInstance(parsed, identifiers, ids, { uuid, size, md5: (digest as FileDigest).md5 });
          this.prepare('DELETE FROM pending_files WHERE uuid = ?').run(uuid);
          return true;
        })();
      } finally {
        // not placed or not indexed (already stored, refused, failed): the journal still lists the file, removed with it here
        if (!stored) await this.removeFiles([{ uuid, size: 0 }]);
      }
      if (!stored) return result('AlreadyStored');
      this.totalSize += size - recycled.reduce((sum, file) => sum + file.size, 0);
      await this.removeFiles(recycled);
      return result('Success');
    } catch (error) {
      if (error instanceof DicomParseError) throw new CoreError(400, error.message);
      if (isOutOfSpace(error)) throw new CoreError(507, 'The file storage is full', (error as Error).message);
      throw error;
    } finally {
      if (temporaryPath !== undefined && !moved) await fsp.rm(temporaryPath, { force: true });
    }
  }

  /**
   * The data set up to Pixel Data, with the fast reader of dataset-reader.ts. `whole` is the complete file
   * when it was read entirely anyway (a buffer, or a file no larger than the first read).
   */
  private async parseHeader(input: StoreInput): Promise<{ parsed: HeaderRead; whole?: Buffer }> {
    if ('buffer' in input) return { parsed: readHeader(input.buffer, true), whole: input.buffer };
    if (input.contents) return { parsed: readHeader(input.contents, true), whole: input.contents };
    const temporaryPath = input.file;
    const head = await readFileHead(temporaryPath, HEADER_READ_BYTES);
    const complete = head.length < HEADER_READ_BYTES || (await fsp.stat(temporaryPath)).size === head.length;
    try {
      return { parsed: readHeader(head, complete), whole: complete ? head : undefined };
    } catch (error) {
      if (!(error instanceof NeedMoreData)) throw error;
      const file = await fsp.readFile(temporaryPath);
      return { parsed: readHeader(file, true), whole: file };
    }
  }

  private indexInstance(
    parsed: HeaderRead,
    identifiers: Identifiers,
    ids: Record<'patient' | 'study' | 'series' | 'instance', string>,
    file: { uuid: string; size: number; md5: string },
  ): void {
    const now = orthancTimestamp();
    const dataset = parsed.dataset;
    const patient = this.getOrCreate('Patient', ids.patient, identifiers.patientId, dataset, null, now);
    this.recycling.markMostRecent(patient.internal_id);
    const study = this.getOrCreate('Study', ids.study, identifiers.studyUid, dataset, patient, now);
    const series = this.getOrCreate('Series', ids.series, identifiers.seriesUid, dataset, study, now);
    const instance = this.getOrCreate('Instance', ids.instance, identifiers.sopUid, dataset, series, now);
    this.prepare('INSERT INTO attachments (internal_id, file_type, uuid, size, md5) VALUES (?, ?, ?, ?, ?)')
      .run(instance.internal_id, DICOM_ATTACHMENT, file.uuid, file.size, file.md5);
    const indexInSeries = parseInt(elementToString(dataset['00200013']) ?? elementToString(dataset['00541330']) ?? '', 10);
    const metadata: Record<string, string> = {
      ReceptionDate: now,
      Origin: 'RestApi',
      TransferSyntax: parsed.transferSyntax,
      SopClassUid: elementToString(dataset['00080016']) ?? '',
      ...(Number.isFinite(indexInSeries) ? { IndexInSeries: String(indexInSeries) } : {}),
      // where Pixel Data starts in the file (a deflated file's offsets are into its inflated bytes: none given)
      ...(parsed.pixelData && parsed.transferSyntax !== TS.DeflatedExplicitVRLittleEndian ? { PixelDataOffset: String(parsed.pixelData.tagOffset) } : {}),
    };
    const setMetadata = this.prepare('INSERT OR REPLACE INTO metadata (internal_id, name, value) VALUES (?, ?, ?)');
    for (const [name, value] of Object.entries(metadata)) setMetadata.run(instance.internal_id, name, value);
  }

  /** The index row of a level, created with its indexed tags when new; its ancestors' LastUpdate is refreshed. */
  private getOrCreate(
    level: ResourceLevel,
    publicId: string,
    dicomUid: string,
    dataset: DicomDataset,
    parent: ResourceRow | null,
    now: string,
  ): ResourceRow {
    const existing = this.findRow(publicId, level);
    if (existing) {
      this.prepare('UPDATE resources SET last_update = ? WHERE internal_id = ?').run(now, existing.internal_id);
      return existing;
    }
    const tags: Record<string, string> = {};
    for (const [tag] of indexedTags(level)) {
      const value = elementToString(dataset[tag]);
      if (value !== undefined) tags[tag] = value;
    }
    const info = this.prepare(
        `INSERT INTO resources (public_id, level, parent_id, patient_id, study_id, series_id, dicom_uid, tags, last_update)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        publicId,
        LEVEL_CODE[level],
        parent?.internal_id ?? null,
        parent?.patient_id ?? null,
        parent?.study_id ?? null,
        parent?.series_id ?? null,
        dicomUid,
        JSON.stringify(tags),
        now,
      );
    const internalId = Number(info.lastInsertRowid);
    if (level !== 'Instance') {
      const selfColumn = { Patient: 'patient_id', Study: 'study_id', Series: 'series_id' }[level];
      this.prepare(`UPDATE resources SET ${selfColumn} = internal_id WHERE internal_id = ?`).run(internalId);
    }
    const insertTag = this.prepare('INSERT INTO tag_index (internal_id, tag, value, folded) VALUES (?, ?, ?, ?)');
    for (const [tag, value] of Object.entries(tags)) insertTag.run(internalId, tag, value, fold(value));
    this.prepare("INSERT INTO changes (change_type, level, public_id, date) VALUES (?, ?, ?, ?)")
      .run(`New${level}`, LEVEL_CODE[level], publicId, now);
    return this.prepare('SELECT * FROM resources WHERE internal_id = ?').get(internalId) as ResourceRow;
  }

  private findRow(publicId: string, level?: ResourceLevel): ResourceRow | undefined {
    if (!isOrthancId(publicId)) return undefined;
    const row = this.prepare('SELECT * FROM resources WHERE public_id = ?').get(publicId) as ResourceRow | undefined;
    if (row && level !== undefined && row.level !== LEVEL_CODE[level]) return undefined;
    return row;
  }

  // ---------------------------------------------------------------- reading resources
  /** The level of any stored resource (POST /tools/create-archive takes identifiers of mixed levels). */
  levelOfResource(publicId: string): ResourceLevel | undefined {
    const row = this.findRow(publicId);
    return row ? LEVELS.find((level) => LEVEL_CODE[level] === row.level) : undefined;
  }

  /** The index row of one instance, or undefined. */
  instanceRow(publicId: string): ResourceRow | undefined {
    return this.findRow(publicId, 'Instance');
  }


  async getResource(level: ResourceLevel, id: string): Promise<Resource | undefined> {
    const row = this.findRow(id, level);
    return row ? this.toResource(row) : undefined;
  }

  /** Orthanc's JSON for a resource; `content` limits what is computed (children, parent, ...). */
  toResource(row: ResourceRow, content?: ReadonlySet<ResponseContent>, requestedTags?: string[], batch?: FindBatch): Resource {
    const wants = (part: ResponseContent): boolean => !content || content.has(part);
    const level = levelName(row.level);
    const tags = JSON.parse(row.tags) as Record<string, string>;
    batch?.tags.set(row.internal_id, tags);
    const base = {
      ID: row.public_id,
      MainDicomTags: wants('MainDicomTags') ? mainDicomTags(level, tags) : {},
      Labels: wants('Labels') ? this.labelsOf(row.internal_id) : [],
      // RequestedTags come with a search, whose batch holds their computed values
      ...(requestedTags && batch ? { RequestedTags: this.requestedTags(row, requestedTags, batch) } : {}),
    };
    const stability = wants('IsStable') ? { IsStable: isStable(row.last_update), LastUpdate: row.last_update } : { IsStable: false, LastUpdate: row.last_update };
    const children = (): string[] => (wants('Children') ? this.childIds(row.internal_id) : []);
    const parentId = (): string => (wants('Parent') && row.parent_id !== null ? this.publicIdOf(row.parent_id) : '');
    switch (level) {
      case 'Patient':
        return { ...base, ...stability, Type: 'Patient', Studies: children() };
      case 'Study': {
        const patient = batch?.rows.get(row.patient_id) ?? this.rowById(row.patient_id);
        const patientTags = batchTags(batch, patient);
        return {
          ...base,
          ...stability,
          Type: 'Study',
          ParentPatient: wants('Parent') ? patient.public_id : '',
          PatientMainDicomTags: wants('MainDicomTags') ? mainDicomTags('Patient', patientTags) : {},
          Series: children(),
        };
      }
      case 'Series': {
        const instances = children();
        const expected = expectedInstances(tags);
        return {
          ...base,
          ...stability,
          Type: 'Series',
          ParentStudy: parentId(),
          Instances: instances,
          ExpectedNumberOfInstances: expected,
          Status: seriesStatus(
            expected,
            wants('Children') ? instances.length : (batch?.childCounts ? (batch.childCounts.get(row.internal_id) ?? 0) : this.countChildren(row.internal_id)),
          ),
        };
      }
      case 'Instance': {
        const attachment = batch?.attachments ? batch.attachments.get(row.internal_id) : this.attachmentOf(row.internal_id);
        const index = batch?.indexInSeries ? batch.indexInSeries.get(row.internal_id) : this.metadataOf(row.internal_id, 'IndexInSeries');
        return {
          ...base,
          Type: 'Instance',
          ParentSeries: parentId(),
          FileSize: attachment?.size ?? 0,
          FileUuid: attachment?.uuid ?? '',
          IndexInSeries: index === undefined ? null : Number(index),
        };
      }
    }
  }

  private rowById(internalId: number): ResourceRow {
    return this.prepare('SELECT * FROM resources WHERE internal_id = ?').get(internalId) as ResourceRow;
  }

  private publicIdOf(internalId: number): string {
    return (this.prepare('SELECT public_id FROM resources WHERE internal_id = ?').get(internalId) as { public_id: string }).public_id;
  }

  private childIds(internalId: number): string[] {
    return (this.prepare('SELECT public_id FROM resources WHERE parent_id = ? ORDER BY internal_id').all(internalId) as Array<{ public_id: string }>).map(
      (r) => r.public_id,
    );
  }

  private countChildren(internalId: number): number {
    return (this.prepare('SELECT COUNT(*) AS n FROM resources WHERE parent_id = ?').get(internalId) as { n: number }).n;
  }

  private labelsOf(internalId: number): string[] {
    return (this.prepare('SELECT label FROM labels WHERE internal_id = ? ORDER BY label').all(internalId) as Array<{ label: string }>).map((r) => r.label);
  }

  private attachmentOf(internalId: number): AttachmentRow | undefined {
    return this.prepare('SELECT uuid, size, md5 FROM attachments WHERE internal_id = ? AND file_type = ?').get(internalId, DICOM_ATTACHMENT) as
      | AttachmentRow
      | undefined;
  }

  private metadataOf(internalId: number, name: string): string | undefined {
    const row = this.prepare('SELECT value FROM metadata WHERE internal_id = ? AND name = ?').get(internalId, name) as { value: string } | undefined;
    return row?.value;
  }

  /** Values of RequestedTags: indexed tags of the resource and its ancestors, computed counts, else the first instance's file. */
  private requestedTags(row: ResourceRow, requested: string[], batch: FindBatch): Record<string, string> {
    const answer: Record<string, string> = {};
    let fileTags: DicomDataset | undefined;
    const ancestorTags = batch.tags;
    const tagsOf = (internalId: number | null): Record<string, string> => {
      if (internalId === null) return {};
      let tags = ancestorTags.get(internalId);
      if (!tags) {
        const source = internalId === row.internal_id ? row : (batch.rows.get(internalId) ?? this.rowById(internalId));
        tags = JSON.parse(source.tags) as Record<string, string>;
        ancestorTags.set(internalId, tags);
      }
      return tags;
    };
    const level = levelName(row.level);
    const owners = [row.patient_id, row.study_id, row.series_id, row.internal_id];
    for (const spelling of requested) {
      const resolved = resolveRequestedTag(spelling);
      if (!resolved) continue;
      const { tag, name, indexedAt } = resolved;
      // computed for the search's level only (another level's count falls through to the file, as before)
      const computed = batch.computed.get(tag)?.get(row.internal_id);
      if (computed !== undefined) {
        answer[name] = computed;
        continue;
      }
      if (indexedAt !== undefined && levelIndex(indexedAt) <= levelIndex(level)) {
        // indexed at this level or above: the index row of that level has it, or the file lacks it too
        // (opening a file per answer for an absent attribute would make every search slow)
        const indexed = tagsOf(owners[levelIndex(indexedAt)])[tag];
        if (indexed !== undefined) answer[name] = indexed;
        continue;
      }
      fileTags ??= this.firstInstanceDataset(row);
      const fromFile = fileTags ? elementToString(fileTags[tag]) : undefined;
      if (fromFile !== undefined) answer[name] = fromFile;
    }
    return answer;
  }

  /** The data set (without pixel data) of the first instance under a resource, for attributes the index lacks. */
  private firstInstanceDataset(row: ResourceRow): DicomDataset | undefined {
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    const instance = this.prepare(`SELECT internal_id FROM resources WHERE ${column} = ? AND level = 3 ORDER BY internal_id LIMIT 1`)
      .get(row.internal_id) as { internal_id: number } | undefined;
    const attachment = instance && this.attachmentOf(instance.internal_id);
    if (!attachment) return undefined;
    return readDatasetSync(this.storage.pathOf(attachment.uuid));
  }

  // ---------------------------------------------------------------- searching

  async find(request: FindRequest): Promise<Resource[]> {
    const content = request.ResponseContent ? new Set(request.ResponseContent) : undefined;
    const answer = this.answerColumns(request.Level, content, request.RequestedTags);
    const rows = this.findRows(request, answer);
    const batch = answer.batch(rows);
    return rows.map((row) => this.toResource(row, content, request.RequestedTags, batch));
  }

  /**
   * What toResource needs beyond the rows of an answer, read by the statement of the rows: ancestors joined,
   * counts and lists as subqueries on each row (a PatientID search is then one statement, where statements per
   * kind over a list of ids cost more than the whole search of one or two studies).
   */
  private answerColumns(level: ResourceLevel, content: ReadonlySet<ResponseContent> | undefined, requested?: string[]): AnswerColumns {
    const wants = (part: ResponseContent): boolean => !content || content.has(part);
    const levelCode = LEVEL_CODE[level];
    const select: string[] = [];
    const joins: string[] = [];
    const computedTags: string[] = [];
    // ancestors: the patient of a study, and the levels above whose indexed tags are requested
    const ancestorLevels = new Set<number>();
    if (level === 'Study') ancestorLevels.add(LEVEL_CODE.Patient);
    for (const spelling of requested ?? []) {
      const resolved = resolveRequestedTag(spelling);
      if (!resolved) continue;
      const computed = COMPUTED_TAGS.get(resolved.tag);
      if (computed) {
        if (computed[0] === level && !computedTags.includes(resolved.tag)) {
          computedTags.push(resolved.tag);
          select.push(`${computedSql(computed)} AS c${resolved.tag}`);
        }
        continue;
      }
      if (resolved.indexedAt !== undefined && LEVEL_CODE[resolved.indexedAt] < levelCode) ancestorLevels.add(LEVEL_CODE[resolved.indexedAt]);
    }
    for (const code of ancestorLevels) {
      joins.push(` LEFT JOIN resources a${code} ON a${code}.internal_id = r.${ANCESTOR_COLUMNS[code]}`);
      select.push(`a${code}.public_id AS a${code}_public_id, a${code}.tags AS a${code}_tags`);
    }
    const childCounts = level === 'Series' && !wants('Children');
    if (childCounts) select.push('(SELECT COUNT(*) FROM resources c WHERE c.parent_id = r.internal_id) AS child_count');
    const instances = level === 'Instance';
    if (instances) {
      joins.push(` LEFT JOIN attachments f ON f.internal_id = r.internal_id AND f.file_type = ${DICOM_ATTACHMENT}`);
      select.push(
        'f.uuid AS file_uuid, f.size AS file_size, f.md5 AS file_md5',
        "(SELECT m.value FROM metadata m WHERE m.internal_id = r.internal_id AND m.name = 'IndexInSeries') AS index_in_series",
      );
    }
    return {
      select: select.map((item) => `, ${item}`).join(''),
      joins: joins.join(''),
      batch: (rows) => {
        const batch: FindBatch = { rows: new Map(), tags: new Map(), computed: new Map(computedTags.map((tag) => [tag, new Map()])) };
        if (childCounts) batch.childCounts = new Map();
        if (instances) {
          batch.attachments = new Map();
          batch.indexInSeries = new Map();
        }
        for (const row of rows as Array<ResourceRow & Record<string, string | number | null>>) {
          for (const code of ancestorLevels) {
            const id = row[ANCESTOR_COLUMNS[code]];
            const publicId = row[`a${code}_public_id`];
            if (id !== null && typeof publicId === 'string') batch.rows.set(id, { internal_id: id, public_id: publicId, tags: row[`a${code}_tags`] as string });
          }
          for (const [tag, values] of batch.computed) {
            const value = row[`c${tag}`];
            values.set(row.internal_id, typeof value === 'string' ? (JSON.parse(value) as string[]).join('\\') : String(value));
          }
          batch.childCounts?.set(row.internal_id, row.child_count as number);
          if (row.file_uuid !== null && row.file_uuid !== undefined) {
            batch.attachments?.set(row.internal_id, { uuid: row.file_uuid as string, size: row.file_size as number, md5: row.file_md5 as string });
          }
          if (row.index_in_series !== null && row.index_in_series !== undefined) batch.indexInSeries?.set(row.internal_id, row.index_in_series as string);
        }
        return batch;
      },
    };
  }

  async findIds(request: FindRequest): Promise<string[]> {
    return this.findRows(request).map((row) => row.public_id);
  }

  private findRows(request: FindRequest, answer?: AnswerColumns): ResourceRow[] {
    const level = request.Level;
    if (!LEVELS.includes(level)) throw new CoreError(400, `Unknown resource level: ${String(level)}`);
    const constraints: Constraint[] = Object.entries(request.Query ?? {}).map(([spelling, value]) => {
      const tag = normalizeTag(spelling);
      if (!tag) throw new CoreError(400, `Unknown DICOM tag in the query: ${spelling}`);
      if (typeof value !== 'string') throw new CoreError(400, `The value of ${spelling} in the query must be a string`);
      return { tag, vr: vrOfTag(tag), value };
    });
    const caseSensitive = request.CaseSensitive ?? false;
    const sql = buildConstraints(level, constraints, caseSensitive);
    const where = ['r.level = ?', ...sql.where];
    const params: Array<string | number> = [LEVEL_CODE[level], ...sql.params];
    if (request.Labels && request.Labels.length > 0) {
      const placeholders = request.Labels.map(() => '?').join(', ');
      const constraint = request.LabelsConstraint ?? 'All';
      if (constraint === 'None') {
        where.push(`NOT EXISTS (SELECT 1 FROM labels l WHERE l.internal_id = r.internal_id AND l.label IN (${placeholders}))`);
      } else {
        const needed = constraint === 'All' ? request.Labels.length : 1;
        where.push(`(SELECT COUNT(*) FROM labels l WHERE l.internal_id = r.internal_id AND l.label IN (${placeholders})) >= ${needed}`);
      }
      params.push(...request.Labels);
    }
    const since = request.Since ?? 0;
    const limit = request.Limit ?? 0;
    // with other constraints, '+' keeps SQLite from walking the level index in id order and testing each row:
    // the constraints' indexes find the few matches, which are then sorted
    if (where.length > 1) where[0] = '+r.level = ?';
    const select = `SELECT ${ROW_COLUMNS}${answer?.select ?? ''}`;
    if (sql.unindexed.length === 0 && where.length === 1) {
      // the level index reads in id order: no sort, and the answer's columns are computed for the page only
      const statement = `${select} FROM resources r${answer?.joins ?? ''} WHERE ${where[0]} ORDER BY r.internal_id LIMIT ? OFFSET ?`;
      return this.prepare(statement).all(...params, limit > 0 ? limit : -1, since) as ResourceRow[];
    }
    // the matching ids are sorted apart (MATERIALIZED keeps SQLite from merging the two): the answer's columns
    // (ancestors, counts, lists) are then computed only for the rows read, not for every match sorted; a later
    // page skips its first matches there, before their columns are computed
    const skip = sql.unindexed.length === 0 && since > 0;
    const statement =
      `WITH matches AS MATERIALIZED (SELECT r.internal_id AS id FROM resources r WHERE ${where.join(' AND ')} ORDER BY r.internal_id` +
      `${skip ? ' LIMIT -1 OFFSET ?' : ''}) ${select} FROM matches CROSS JOIN resources r ON r.internal_id = matches.id${answer?.joins ?? ''} ORDER BY matches.id`;
    if (sql.unindexed.length === 0) {
      // a LIMIT would make SQLite sort the matches in a temporary b-tree, which costs more than the whole search
      // of a few matches (3x on a PatientID search): the page is cut while reading
      const page: ResourceRow[] = [];
      for (const row of this.prepare(statement).iterate(...params, ...(skip ? [since] : [])) as IterableIterator<ResourceRow>) {
        if (page.push(row) === limit) break;
      }
      return page;
    }
    // attributes outside the index are checked on the first instance's file, as Orthanc does
    const candidates = this.prepare(statement).all(...params) as ResourceRow[];
    const matching = candidates.filter((row) => {
      const dataset = this.firstInstanceDataset(row);
      return sql.unindexed.every((c) => matchesValue(dataset ? elementToString(dataset[c.tag]) : undefined, c, caseSensitive));
    });
    return matching.slice(since, limit > 0 ? since + limit : undefined);
  }

  async lookup(dicomUid: string): Promise<LookupMatch[]> {
    const rows = this.prepare('SELECT public_id, level FROM resources WHERE dicom_uid = ? ORDER BY level, internal_id').all(dicomUid) as Array<{
      public_id: string;
      level: number;
    }>;
    return rows.map((r) => ({ ID: r.public_id, Path: `/${LEVEL_PATH[levelName(r.level)]}/${r.public_id}`, Type: levelName(r.level) }));
  }

  async getInstances(level: ResourceLevel, id: string): Promise<InstanceResource[] | undefined> {
    const row = this.findRow(id, level);
    if (!row) return undefined;
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    // files and IndexInSeries of all the instances in the same statement (a WADO-RS retrieve lists a whole series)
    const answer = this.answerColumns('Instance', undefined);
    const rows = this.prepare(`SELECT ${ROW_COLUMNS}${answer.select} FROM resources r${answer.joins} WHERE r.${column} = ? AND r.level = 3 ORDER BY r.internal_id`)
      .all(row.internal_id) as ResourceRow[];
    const batch = answer.batch(rows);
    return rows.map((r) => this.toResource(r, undefined, undefined, batch) as InstanceResource);
  }

  /** Children of a resource at the next level down (GET /{level}/{id}/{children}). */
  childRows(level: ResourceLevel, id: string, childLevel: ResourceLevel): ResourceRow[] | undefined {
    const row = this.findRow(id, level);
    if (!row) return undefined;
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    return this.prepare(`SELECT * FROM resources WHERE ${column} = ? AND level = ? ORDER BY internal_id`)
      .all(row.internal_id, LEVEL_CODE[childLevel]) as ResourceRow[];
  }

  /** The ancestor of a resource at a higher level (GET /{level}/{id}/{patient|study|series}). */
  ancestorRow(level: ResourceLevel, id: string, ancestorLevel: ResourceLevel): ResourceRow | undefined {
    const row = this.findRow(id, level);
    if (!row) return undefined;
    const ancestorId = [row.patient_id, row.study_id, row.series_id, row.internal_id][LEVEL_CODE[ancestorLevel]];
    return ancestorId === null ? undefined : this.rowById(ancestorId);
  }

  listRows(level: ResourceLevel, since: number, limit: number): ResourceRow[] {
    return this.prepare('SELECT * FROM resources WHERE level = ? ORDER BY internal_id LIMIT ? OFFSET ?')
      .all(LEVEL_CODE[level], limit > 0 ? limit : -1, since) as ResourceRow[];
  }

  // ---------------------------------------------------------------- files

  private instanceAttachment(id: string): AttachmentRow {
    const row = this.findRow(id, 'Instance');
    const attachment = row && this.attachmentOf(row.internal_id);
    if (!attachment) throw new CoreError(404, `Unknown instance: ${id}`);
    return attachment;
  }

  /** An instance's file and transfer syntax, in one statement (WADO-RS metadata and retrieve open every file of a series). */
  private storedFile(id: string): { uuid: string; size: number; transferSyntax: string | null } {
    const statement = this.prepare(
      `SELECT a.uuid AS uuid, a.size AS size, m.value AS transferSyntax FROM resources r
       JOIN attachments a ON a.internal_id = r.internal_id AND a.file_type = ${DICOM_ATTACHMENT}
       LEFT JOIN metadata m ON m.internal_id = r.internal_id AND m.name = 'TransferSyntax'
       WHERE r.public_id = ? AND r.level = ${LEVEL_CODE.Instance}`,
    );
    const file = statement.get(id) as { uuid: string; size: number; transferSyntax: string | null } | undefined;
    if (!file) throw new CoreError(404, `Unknown instance: ${id}`);
    return file;
  }

  async readInstanceFile(id: string, options: { transcode?: string; chunkBytes?: number } = {}): Promise<FileStream> {
    const file = this.storedFile(id);
    const attachment = { uuid: file.uuid, size: file.size };
    const transferSyntax = file.transferSyntax ?? undefined;
    const target = options.transcode;
    if (!target || !transferSyntax || target === transferSyntax) {
      const chunk = options.chunkBytes && options.chunkBytes > 0 ? Math.min(Math.floor(options.chunkBytes), MAX_FILE_CHUNK_BYTES) : FILE_CHUNK_BYTES;
      // a whole file in one chunk when it fits: one read, no partial last chunk
      const large = chunk > FILE_CHUNK_BYTES && attachment.size > 0;
      // a whole-file reader of a file up to `chunk` bytes: one read (its known end spares the read that finds EOF)
      const stream = fs.createReadStream(
        this.storage.pathOf(attachment.uuid),
        large ? { highWaterMark: Math.min(chunk, attachment.size), start: 0, end: attachment.size - 1 } : { highWaterMark: chunk },
      );
      return { stream, size: attachment.size, transferSyntax };
    }
    if (!canTranscode(transferSyntax, target)) {
      throw new CoreError(415, `Cannot transcode from ${transferSyntax} to ${target}`);
    }
    // Transcoding needs the whole instance in memory (one instance at a time, never a study).
    try {
      const transcoded = await transcodeFile(await this.storage.read(attachment.uuid), transferSyntax, target);
      return { stream: Readable.from([transcoded]), size: transcoded.length, transferSyntax: target };
    } catch (error) {
      if (error instanceof TranscodeError) throw new CoreError(415, error.message);
      throw error;
    }
  }

  /** Stored files whole, read ahead into pooled blocks (see pooled-files.ts): WADO-RS retrieve of a series or a study. */
  async *readInstanceFiles(ids: readonly string[]): AsyncGenerator<StoredFile> {
    const lookup = (id: string): { path: string; size: number; transferSyntax?: string } => {
      const file = this.storedFile(id);
      return { path: this.storage.pathOf(file.uuid), size: file.size, transferSyntax: file.transferSyntax ?? undefined };
    };
    // looked up as the reads come: an instance deleted meanwhile is a 404 at its turn
    const files = (function* () {
      for (const id of ids) yield lookup(id);
    })();
    for await (const { file, body } of readPooledFiles(files)) yield { body, size: file.size, transferSyntax: file.transferSyntax };
  }

  /** Path of an instance's file, for in-process readers that need random access (frames, bulk data). */
  instanceFilePath(id: string): string {
    return this.storage.pathOf(this.instanceAttachment(id).uuid);
  }

  async readFrameRaw(id: string, frame: number): Promise<Buffer> {
    const attachment = this.instanceAttachment(id);
    try {
      // The frame index of a file is cached by its attachment UUID: a new upload gets a new UUID.
      const { bytes, index } = await readStoredFrame(this.storage.pathOf(attachment.uuid), attachment.uuid, frame);
      // As Orthanc: compressed frames as stored, native frames in little endian whatever the file's byte order.
      return nativeFrameToLittleEndian(bytes, index.transferSyntax, index.image.bitsAllocated);
    } catch (error) {
      if (error instanceof PixelDataError) throw new CoreError(error.status, error.message);
      throw error;
    }
  }

  /** Several frames with one open file, read in large sequential blocks (WADO-RS frame lists). */
  async *readFramesRaw(id: string, frames: readonly number[]): AsyncGenerator<Buffer> {
    const attachment = this.instanceAttachment(id);
    try {
      for await (const { bytes, index } of readStoredFrames(this.storage.pathOf(attachment.uuid), attachment.uuid, frames)) {
        yield nativeFrameToLittleEndian(bytes, index.transferSyntax, index.image.bitsAllocated);
      }
    } catch (error) {
      if (error instanceof PixelDataError) throw new CoreError(error.status, error.message);
      throw error;
    }
  }

  /** All metadata of an instance (GET /instances/{id}/metadata?expand); undefined when unknown. */
  instanceMetadata(id: string): Record<string, string> | undefined {
    const row = this.findRow(id, 'Instance');
    if (!row) return undefined;
    const rows = this.prepare('SELECT name, value FROM metadata WHERE internal_id = ? ORDER BY name').all(row.internal_id) as Array<{ name: string; value: string }>;
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  }

  async getInstanceMetadata(id: string, name: string): Promise<string | undefined> {
    const row = this.findRow(id, 'Instance');
    return row ? this.metadataOf(row.internal_id, name) : undefined;
  }

  // ---------------------------------------------------------------- deleting

  async deleteResource(level: ResourceLevel, id: string): Promise<boolean> {
    return (await this.deleteWithAncestor(level, id)) !== undefined;
  }

  /**
   * Deletes a resource and its descendants, then every ancestor left without children, as Orthanc does.
   * Returns the remaining ancestor (null when none), or undefined when the resource is unknown.
   */
  async deleteWithAncestor(level: ResourceLevel, id: string): Promise<LookupMatch | null | undefined> {
    const row = this.findRow(id, level);
    if (!row) return undefined;
    const { files, remaining } = this.db.transaction(() => this.deleteRows(row, orthancTimestamp()))();
    this.totalSize -= files.reduce((sum, file) => sum + file.size, 0);
    await this.removeFiles(files);
    if (!remaining) return null;
    const remainingLevel = levelName(remaining.level);
    return { ID: remaining.public_id, Path: `/${LEVEL_PATH[remainingLevel]}/${remaining.public_id}`, Type: remainingLevel };
  }

  /**
   * The rows of a resource, its descendants and the ancestors left without children, in the caller's transaction.
   * Their files are only listed in the journal (pending 'delete'): removed after the commit by removeFiles, or by the
   * next start after a crash, so that no index row ever lacks its file.
   */
  private deleteRows(row: ResourceRow, now: string): { files: DroppedFile[]; remaining: ResourceRow | null } {
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    const files = this.prepare(`SELECT a.uuid, a.size FROM attachments a JOIN resources d ON d.internal_id = a.internal_id WHERE d.${column} = ?`)
      .all(row.internal_id) as DroppedFile[];
    const markPending = this.prepare("INSERT OR REPLACE INTO pending_files (uuid, operation) VALUES (?, 'delete')");
    for (const file of files) markPending.run(file.uuid);
    const recordDeleted = this.prepare("INSERT INTO changes (change_type, level, public_id, date) VALUES ('Deleted', ?, ?, ?)");
    recordDeleted.run(row.level, row.public_id, now);
    this.prepare('DELETE FROM resources WHERE internal_id = ?').run(row.internal_id);
    let parentId = row.parent_id;
    let remaining: ResourceRow | null = null;
    while (parentId !== null) {
      const parent = this.rowById(parentId);
      if (this.countChildren(parentId) > 0) {
        remaining = parent;
        break;
      }
      recordDeleted.run(parent.level, parent.public_id, now);
      // an ancestor's own (user) attachments go with it
      for (const file of this.prepare('SELECT uuid, size FROM attachments WHERE internal_id = ?').all(parentId) as DroppedFile[]) {
        markPending.run(file.uuid);
        files.push(file);
      }
      this.prepare('DELETE FROM resources WHERE internal_id = ?').run(parentId);
      parentId = parent.parent_id;
    }
    return { files, remaining };
  }

  /** Removes files listed in the journal, then their journal rows. */
  private async removeFiles(files: readonly DroppedFile[]): Promise<void> {
    for (const file of files) await this.storage.remove(file.uuid);
    const clear = this.prepare('DELETE FROM pending_files WHERE uuid = ?');
    for (const file of files) clear.run(file.uuid);
  }

  // ---------------------------------------------------------------- protection

  /** GET /patients/{id}/protected; undefined for an unknown patient. */
  isPatientProtected(id: string): boolean | undefined {
    const row = this.findRow(id, 'Patient');
    return row ? this.recycling.isProtected(row.internal_id) : undefined;
  }

  /** PUT /patients/{id}/protected; false for an unknown patient. */
  setPatientProtected(id: string, protect: boolean): boolean {
    const row = this.findRow(id, 'Patient');
    if (!row) return false;
    this.recycling.setProtected(row.internal_id, protect);
    return true;
  }

  // ---------------------------------------------------------------- changes

  async getChanges(since: number, limit: number): Promise<ChangesPage> {
    const rows = this.prepare('SELECT * FROM changes WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit + 1) as Array<{
      seq: number;
      change_type: string;
      level: number;
      public_id: string;
      date: string;
    }>;
    const page = rows.slice(0, limit);
    const lastSeq = (this.prepare('SELECT COALESCE(MAX(seq), 0) AS s FROM changes').get() as { s: number }).s;
    return {
      Changes: page.map((r) => ({
        ChangeType: r.change_type,
        Date: r.date,
        ID: r.public_id,
        Path: `/${LEVEL_PATH[levelName(r.level)]}/${r.public_id}`,
        ResourceType: levelName(r.level),
        Seq: r.seq,
      })),
      Done: rows.length <= limit,
      Last: page.length > 0 ? page[page.length - 1].seq : Math.max(since, lastSeq),
    };
  }

  lastChange(): ChangesPage {
    const row = this.prepare('SELECT * FROM changes ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; change_type: string; level: number; public_id: string; date: string }
      | undefined;
    if (!row) return { Changes: [], Done: true, Last: 0 };
    const level = levelName(row.level);
    return {
      Changes: [{ ChangeType: row.change_type, Date: row.date, ID: row.public_id, Path: `/${LEVEL_PATH[level]}/${row.public_id}`, ResourceType: level, Seq: row.seq }],
      Done: true,
      Last: row.seq,
    };
  }

  getExports(since: number, limit: number): { Exports: Array<Record<string, string | number>>; Done: boolean; Last: number } {
    const rows = this.prepare('SELECT * FROM exported_resources WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit + 1) as Array<{
      seq: number;
      level: number;
      public_id: string;
      remote: string;
      patient_id: string;
      study_uid: string;
      series_uid: string;
      sop_uid: string;
      date: string;
    }>;
    const page = rows.slice(0, limit);
    return {
      Exports: page.map((r) => ({
        Date: r.date,
        ID: r.public_id,
        Path: `/${LEVEL_PATH[levelName(r.level)]}/${r.public_id}`,
        PatientID: r.patient_id,
        RemoteModality: r.remote,
        ResourceType: levelName(r.level),
        Seq: r.seq,
        SeriesInstanceUID: r.series_uid,
        SOPInstanceUID: r.sop_uid,
        StudyInstanceUID: r.study_uid,
      })),
      Done: rows.length <= limit,
      Last: page.length > 0 ? page[page.length - 1].seq : since,
    };
  }

  clearExports(): void {
    this.prepare('DELETE FROM exported_resources').run();
  }

  clearChanges(): void {
    this.prepare('DELETE FROM changes').run();
  }

  statistics(): Record<string, number | string> {
    const count = (level: ResourceLevel): number =>
      (this.prepare('SELECT COUNT(*) AS n FROM resources WHERE level = ?').get(LEVEL_CODE[level]) as { n: number }).n;
    const mb = Math.round(this.totalSize / (1024 * 1024));
    return {
      CountPatients: count('Patient'),
      CountStudies: count('Study'),
      CountSeries: count('Series'),
      CountInstances: count('Instance'),
      TotalDiskSize: String(this.totalSize),
      TotalDiskSizeMB: mb,
      TotalUncompressedSize: String(this.totalSize),
      TotalUncompressedSizeMB: mb,
    };
  }

  // ---------------------------------------------------------------- metadata, labels and attachments of any level

  private metadataNames?: MetadataTypes;
  private contentNames?: ContentTypes;

  /** Metadata names and numbers, the configured "UserMetadata" included. */
  get metadataTypes(): MetadataTypes {
    return (this.metadataNames ??= new MetadataTypes(this.config.userMetadata));
  }

  /** Attachment names and numbers, the configured "UserContentType" included. */
  get contentTypes(): ContentTypes {
    return (this.contentNames ??= new ContentTypes(this.config.userContentTypes));
  }

  /** The index row of a resource, or a 404. */
  private existingRow(level: ResourceLevel, id: string): ResourceRow {
    const row = this.findRow(id, level);
    if (!row) throw new CoreError(404, `Unknown ${level.toLowerCase()}: ${id}`);
    return row;
  }

  private logChange(changeType: string, row: ResourceRow): void {
    this.prepare('INSERT INTO changes (change_type, level, public_id, date) VALUES (?, ?, ?, ?)').run(changeType, row.level, row.public_id, orthancTimestamp());
  }

  /** The metadata of a resource by type; patients, studies and series have their LastUpdate, as in Orthanc. */
  listMetadata(level: ResourceLevel, id: string): StoredMetadata[] {
    const row = this.existingRow(level, id);
    const rows = this.prepare('SELECT name, value, revision FROM metadata WHERE internal_id = ?').all(row.internal_id) as Array<{ name: string; value: string; revision: number }>;
    const list = rows.map((r) => ({ type: this.metadataTypes.typeOfStorageKey(r.name), value: r.value, revision: r.revision }));
    if (row.level !== LEVEL_CODE.Instance) list.push({ type: LAST_UPDATE_METADATA, value: row.last_update, revision: 0 });
    return list.sort((a, b) => a.type - b.type);
  }

  /** Creates or replaces a metadata (the caller checks that its type is a user one); returns its new revision. */
  setMetadata(level: ResourceLevel, id: string, type: number, value: string, expected?: Revision): number {
    const row = this.existingRow(level, id);
    const key = this.metadataTypes.storageKey(type);
    return this.db.transaction(() => {
      const revision = nextRevision(this.currentMetadata(row, key), expected);
      this.prepare('INSERT OR REPLACE INTO metadata (internal_id, name, value, revision) VALUES (?, ?, ?, ?)').run(row.internal_id, key, value, revision);
      this.logChange('UpdatedMetadata', row);
      return revision;
    })();
  }

  deleteMetadata(level: ResourceLevel, id: string, type: number, expected?: Revision): void {
    const row = this.existingRow(level, id);
    const key = this.metadataTypes.storageKey(type);
    this.db.transaction(() => {
      const current = this.currentMetadata(row, key);
      if (!current) throw new CoreError(404, `Unknown metadata: ${this.metadataTypes.nameOf(type)}`);
      nextRevision(current, expected);
      this.prepare('DELETE FROM metadata WHERE internal_id = ? AND name = ?').run(row.internal_id, key);
      this.logChange('UpdatedMetadata', row);
    })();
  }

  private currentMetadata(row: ResourceRow, key: string): Revision | undefined {
    const current = this.prepare('SELECT value, revision FROM metadata WHERE internal_id = ? AND name = ?').get(row.internal_id, key) as
      | { value: string; revision: number }
      | undefined;
    return current && { revision: current.revision, md5: md5Of(current.value) };
  }

  labelsOfResource(level: ResourceLevel, id: string): string[] {
    return this.labelsOf(this.existingRow(level, id).internal_id);
  }

  /** Adds (true) or removes (false) a label; the caller checks the label's syntax. */
  setLabel(level: ResourceLevel, id: string, label: string, present: boolean): void {
    const row = this.existingRow(level, id);
    if (present) this.prepare('INSERT OR IGNORE INTO labels (internal_id, label) VALUES (?, ?)').run(row.internal_id, label);
    else this.prepare('DELETE FROM labels WHERE internal_id = ? AND label = ?').run(row.internal_id, label);
  }

  /** Every label of any resource (GET /tools/labels). */
  allLabels(): string[] {
    return (this.prepare('SELECT DISTINCT label FROM labels ORDER BY label').all() as Array<{ label: string }>).map((r) => r.label);
  }

  /** The attachments of a resource by type (an instance has its DICOM file, type 1). */
  listAttachments(level: ResourceLevel, id: string): StoredAttachment[] {
    const row = this.existingRow(level, id);
    return this.prepare('SELECT file_type AS type, uuid, size, md5, revision FROM attachments WHERE internal_id = ? ORDER BY file_type').all(row.internal_id) as StoredAttachment[];
  }

  attachmentPath(attachment: StoredAttachment): string {
    return this.storage.pathOf(attachment.uuid);
  }

  /** Whether an attachment's file still has the MD5 recorded when it was stored (POST .../verify-md5). */
  async verifyAttachment(attachment: StoredAttachment): Promise<boolean> {
    return (await digestFile(this.storage.pathOf(attachment.uuid))).md5 === attachment.md5;
  }

  private storedAttachment(internalId: number, type: number): StoredAttachment | undefined {
    return this.prepare('SELECT file_type AS type, uuid, size, md5, revision FROM attachments WHERE internal_id = ? AND file_type = ?').get(internalId, type) as
      | StoredAttachment
      | undefined;
  }

  /**
   * Creates or replaces a user attachment with the bytes of `body`, streamed to disk (never held in memory).
   * As for DICOM files, the file is in place before the index names it and a crash leaves no orphan behind; as in
   * Orthanc, storing it may recycle other patients (never the attachment's own) to honour MaximumStorageSize.
   */
  async putAttachment(level: ResourceLevel, id: string, type: number, body: Readable, expected?: Revision): Promise<StoredAttachment> {
    const row = this.existingRow(level, id);
    nextRevision(this.storedAttachment(row.internal_id, type), expected); // a conflict is answered before the body is read
    const temporaryPath = this.storage.newTemporaryPath();
    const uuid = randomUUID();
    let moved = false;
    let written: { stored: StoredAttachment; dropped: DroppedFile[] };
    try {
      const { size, md5 } = await writeHashed(body, temporaryPath);
      this.prepare("INSERT INTO pending_files (uuid, operation) VALUES (?, 'write')").run(uuid);
      await this.storage.moveIntoPlace(temporaryPath, uuid);
      moved = true;
      written = this.db.transaction(() => {
        this.existingRow(level, id); // deleted while the body was arriving: 404, and the new file goes
        const replaced = this.storedAttachment(row.internal_id, type);
        const stored: StoredAttachment = { type, uuid, size, md5, revision: nextRevision(replaced, expected) };
        const dropped = this.recycling.makeRoom(
          { storageSize: () => this.totalSize, deletePatient: (internalId) => this.deleteRows(this.rowById(internalId), orthancTimestamp()).files },
          Math.max(0, size - (replaced?.size ?? 0)),
          row.patient_id,
        );
        if (replaced) {
          this.prepare("INSERT OR REPLACE INTO pending_files (uuid, operation) VALUES (?, 'delete')").run(replaced.uuid);
          dropped.push(replaced);
        }
        this.prepare('INSERT OR REPLACE INTO attachments (internal_id, file_type, uuid, size, md5, revision) VALUES (?, ?, ?, ?, ?, ?)')
          .run(row.internal_id, type, uuid, size, md5, stored.revision);
        this.prepare('DELETE FROM pending_files WHERE uuid = ?').run(uuid);
        this.logChange('UpdatedAttachment', row);
        return { stored, dropped };
      })();
    } catch (error) {
      await this.removeFiles([{ uuid, size: 0 }]); // the new file and its journal row, wherever the failure came
      if (isOutOfSpace(error)) throw new CoreError(507, 'The file storage is full', (error as Error).message);
      throw error;
    } finally {
      if (!moved) await fsp.rm(temporaryPath, { force: true });
    }
    this.totalSize += written.stored.size - written.dropped.reduce((sum, file) => sum + file.size, 0);
    await this.removeFiles(written.dropped);
    return written.stored;
  }

  async deleteAttachment(level: ResourceLevel, id: string, type: number, expected?: Revision): Promise<void> {
    const row = this.existingRow(level, id);
    const removed = this.db.transaction(() => {
      const current = this.storedAttachment(row.internal_id, type);
      if (!current) throw new CoreError(404, `Unknown attachment: ${this.contentTypes.nameOf(type)}`);
      nextRevision(current, expected);
      this.prepare("INSERT OR REPLACE INTO pending_files (uuid, operation) VALUES (?, 'delete')").run(current.uuid);
      this.prepare('DELETE FROM attachments WHERE internal_id = ? AND file_type = ?').run(row.internal_id, type);
      this.logChange('UpdatedAttachment', row);
      return current;
    })();
    this.totalSize -= removed.size;
    await this.removeFiles([removed]);
  }

  async close(): Promise<void> {
    await this.md5.close();
    this.db.close();
  }
}

/** A metadata value with its revision and type (Orthanc's MetadataType number). */
export interface StoredMetadata {
  type: number;
  value: string;
  revision: number;
}

/** An attachment as the index holds it (Orthanc's FileInfo; the storage area does not compress). */
export interface StoredAttachment {
  type: number;
  uuid: string;
  size: number;
  md5: string;
  revision: number;
}

/** Streams a body into a new file, hashing it on the way. */
async function writeHashed(body: Readable, filePath: string): Promise<{ size: number; md5: string }> {
  const hash = createHash('md5');
  let size = 0;
  await pipeline(
    body,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    fs.createWriteStream(filePath),
  );
  return { size, md5: hash.digest('hex') };
}

interface Identifiers {
  patientId: string;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
}

function readIdentifiers(dataset: DicomDataset): Identifiers {
  const required = (tag: string, name: string): string => {
    const value = elementToString(dataset[tag]);
    if (!value) throw new CoreError(400, `The DICOM file has no ${name} (${tag.slice(0, 4)},${tag.slice(4)})`);
    return value;
  };
  return {
    // Orthanc accepts an empty PatientID (it hashes the empty string)
    patientId: elementToString(dataset[LEVEL_UID_TAG.Patient]) ?? '',
    studyUid: required(LEVEL_UID_TAG.Study, 'StudyInstanceUID'),
    seriesUid: required(LEVEL_UID_TAG.Series, 'SeriesInstanceUID'),
    sopUid: required(LEVEL_UID_TAG.Instance, 'SOPInstanceUID'),
  };
}

interface RequestedTag {
  tag: string;
  /** The key of the answer: keyword, else "gggg,eeee". */
  name: string;
  /** The level whose index holds the tag, if any. */
  indexedAt?: ResourceLevel;
}

const requestedTagCache = new Map<string, RequestedTag | null>();

/** A RequestedTags spelling resolved once (dictionary lookups cost more than answering from the index). */
function resolveRequestedTag(spelling: string): RequestedTag | undefined {
  let resolved = requestedTagCache.get(spelling);
  if (resolved === undefined) {
    const tag = normalizeTag(spelling);
    resolved = tag ? { tag, name: tagToKeyword(tag) ?? toOrthancTag(tag), indexedAt: levelOfTag(tag) } : null;
    if (requestedTagCache.size < 10_000) requestedTagCache.set(spelling, resolved);
  }
  return resolved ?? undefined;
}

/** The parsed tags of a row, through the batch's cache when there is one. */
function batchTags(batch: FindBatch | undefined, row: AncestorRow): Record<string, string> {
  let tags = batch?.tags.get(row.internal_id);
  if (!tags) {
    tags = JSON.parse(row.tags) as Record<string, string>;
    batch?.tags.set(row.internal_id, tags);
  }
  return tags;
}

function mainDicomTags(level: ResourceLevel, tags: Record<string, string>): Record<string, string> {
  const answer: Record<string, string> = {};
  for (const [tag, keyword] of LEVEL_TAGS[level].orthanc) {
    if (tags[tag] !== undefined) answer[keyword] = tags[tag];
  }
  return answer;
}

function isStable(lastUpdate: string): boolean {
  const iso = `${lastUpdate.slice(0, 4)}-${lastUpdate.slice(4, 6)}-${lastUpdate.slice(6, 8)}T${lastUpdate.slice(9, 11)}:${lastUpdate.slice(11, 13)}:${lastUpdate.slice(13, 15)}Z`;
  return Date.now() - Date.parse(iso) > STABLE_AGE_SECONDS * 1000;
}

/** Orthanc derives the expected count of a series from these attributes, first present wins. */
function expectedInstances(tags: Record<string, string>): number | null {
  for (const tag of ['00201002', '00181090', '00541081', '00200105']) {
    const value = parseInt(tags[tag] ?? '', 10);
    if (Number.isFinite(value) && value > 0) return value;
  }
  return null;
}

function seriesStatus(expected: number | null, actual: number): 'Complete' | 'Missing' | 'Inconsistent' | 'Unknown' {
  if (expected === null) return 'Unknown';
  if (actual === expected) return 'Complete';
  return actual < expected ? 'Missing' : 'Inconsistent';
}

type HeaderRead = Pick<DatasetRead, 'transferSyntax' | 'dataset' | 'pixelData'>;

/** Reads a data set up to Pixel Data; what is not DICOM (or is cut short) is a DicomParseError, answered 400. */
function readHeader(buffer: Buffer, complete: boolean): HeaderRead {
  if (buffer.length < 132 || buffer.toString('latin1', 128, 132) !== 'DICM') throw new DicomParseError('Not a DICOM Part 10 file (no DICM prefix)');
  try {
    return readDataset(buffer, { complete, stopAtPixelData: true });
  } catch (error) {
    if (error instanceof NeedMoreData) throw error;
    throw new DicomParseError(`Cannot parse the DICOM file: ${(error as Error).message}`);
  }
}

async function digestFile(filePath: string): Promise<{ size: number; md5: string }> {
  const hash = createHash('md5');
  let size = 0;
  const handle = await fsp.open(filePath, 'r');
  try {
    for await (const chunk of handle.createReadStream({ highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } finally {
    await handle.close();
  }
  return { size, md5: hash.digest('hex') };
}

function readDatasetSync(filePath: string): DicomDataset | undefined {
  // synchronous on purpose: only used for the rare attributes outside the index, inside synchronous SQL loops
  const fd = fs.openSync(filePath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.allocUnsafe(Math.min(size, HEADER_READ_BYTES));
    fs.readSync(fd, head, 0, head.length, 0);
    try {
      return readHeader(head, head.length === size).dataset;
    } catch (error) {
      if (!(error instanceof NeedMoreData)) throw error;
      return readHeader(fs.readFileSync(filePath), true).dataset;
    }
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
