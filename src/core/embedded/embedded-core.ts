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
import { LEVELS, LEVEL_PATH, LEVEL_UID_TAG, indexedTags } from '../main-dicom-tags';
import { orthancId } from '../orthanc-ids';
import { openIndex, LEVEL_CODE } from './schema';
import { StorageArea, isOutOfSpace, readFileHead } from './storage-area';
import { readPooledFiles } from './pooled-files';
import { Md5Thread, smallDigest, type FileDigest } from './md5-thread';
import { PatientRecycling, type DroppedFile } from './recycling';
import { SearchThreads } from './search-threads';
import { fold } from './find-query';
import { DicomParseError, elementToString, type DicomDataset } from '../../dicom/dicom-file';
import { VERSION } from '../../server/version';
import { DICOM_ATTACHMENT, IndexReader, levelName, type AttachmentRow, type ResourceRow, type ResponseContent } from './index-reader';
import { HEADER_READ_BYTES, readHeader, type HeaderRead } from './stored-header';
import { NeedMoreData } from '../../dicom/element-scanner';
import { PixelDataError, readStoredFrame, readStoredFrames } from '../../dicom/pixel-data';
import { canTranscode, nativeFrameToLittleEndian, TranscodeError, transcodeFile } from '../../dicom/transcode';
import { TS } from '../../dicom/transfer-syntax';
import { ContentTypes, LAST_UPDATE_METADATA, MetadataTypes, md5Of, nextRevision, type Revision } from './metadata-types';

/** Small first chunks by default: a reader that needs only the header (WADO-RS metadata) stops after one. */
const FILE_CHUNK_BYTES = 16 * 1024;
/** Largest chunk a caller may ask for (readers of whole files: retrieve, rendering). */
const MAX_FILE_CHUNK_BYTES = 8 << 20;

/** Orthanc's timestamp format, e.g. 20240131T235959. */
export function orthancTimestamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '').slice(0, 15);
}

export class EmbeddedCore implements NativeCore {
  readonly kind = 'embedded' as const;
  readonly db: Database.Database;
  readonly storage: StorageArea;
  private totalSize: number;
  readonly recycling: PatientRecycling;
  /** The index's reading side, with the statement cache every statement of the core goes through. */
  readonly index: IndexReader;
  private readonly md5 = new Md5Thread();
  /** Where searches run while the main thread is busy. */
  readonly searchThreads: SearchThreads;

  constructor(private readonly config: GatewayConfig) {
    this.db = openIndex(config.indexDirectory);
    this.storage = new StorageArea(config.storageDirectory);
    this.index = new IndexReader(this.db, this.storage);
    this.searchThreads = new SearchThreads({ indexDirectory: config.indexDirectory, storageDirectory: config.storageDirectory });
    this.recoverFromCrash();
    this.totalSize = (this.prepare('SELECT COALESCE(SUM(size), 0) AS s FROM attachments').get() as { s: number }).s;
    this.recycling = new PatientRecycling(this.db, config);
  }

  private prepare(sql: string): Database.Statement {
    return this.index.prepare(sql);
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
      if (this.index.findRow(ids.instance, 'Instance')) return result('AlreadyStored');

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
          if (this.index.findRow(ids.instance, 'Instance')) return false;
          const patient = this.index.findRow(ids.patient, 'Patient');
          recycled = this.recycling.makeRoom(
            { storageSize: () => this.totalSize, deletePatient: (internalId) => this.deleteRows(this.index.rowById(internalId), orthancTimestamp()).files },
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
    const existing = this.index.findRow(publicId, level);
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

  // ---------------------------------------------------------------- reading resources
  /** The level of any stored resource (POST /tools/create-archive takes identifiers of mixed levels). */
  levelOfResource(publicId: string): ResourceLevel | undefined {
    const row = this.index.findRow(publicId);
    return row ? LEVELS.find((level) => LEVEL_CODE[level] === row.level) : undefined;
  }

  /** The index row of one instance, or undefined. */
  instanceRow(publicId: string): ResourceRow | undefined {
    return this.index.findRow(publicId, 'Instance');
  }

  /** Orthanc's JSON for a resource; `content` limits what is computed (children, parent, ...). */
  toResource(row: ResourceRow, content?: ReadonlySet<ResponseContent>): Resource {
    return this.index.toResource(row, content);
  }

  async getResource(level: ResourceLevel, id: string): Promise<Resource | undefined> {
    const row = this.index.findRow(id, level);
    return row ? this.index.toResource(row) : undefined;
  }

  // ---------------------------------------------------------------- searching

  async find(request: FindRequest): Promise<Resource[]> {
    return this.searchThreads.offload(request) ?? this.index.find(request);
  }

  async findIds(request: FindRequest): Promise<string[]> {
    return this.index.findIds(request);
  }

  async getInstances(level: ResourceLevel, id: string): Promise<InstanceResource[] | undefined> {
    return this.index.getInstances(level, id);
  }

  async lookup(dicomUid: string): Promise<LookupMatch[]> {
    const rows = this.prepare('SELECT public_id, level FROM resources WHERE dicom_uid = ? ORDER BY level, internal_id').all(dicomUid) as Array<{
      public_id: string;
      level: number;
    }>;
    return rows.map((r) => ({ ID: r.public_id, Path: `/${LEVEL_PATH[levelName(r.level)]}/${r.public_id}`, Type: levelName(r.level) }));
  }

  /** Children of a resource at the next level down (GET /{level}/{id}/{children}). */
  childRows(level: ResourceLevel, id: string, childLevel: ResourceLevel): ResourceRow[] | undefined {
    const row = this.index.findRow(id, level);
    if (!row) return undefined;
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    return this.prepare(`SELECT * FROM resources WHERE ${column} = ? AND level = ? ORDER BY internal_id`)
      .all(row.internal_id, LEVEL_CODE[childLevel]) as ResourceRow[];
  }

  /** The ancestor of a resource at a higher level (GET /{level}/{id}/{patient|study|series}). */
  ancestorRow(level: ResourceLevel, id: string, ancestorLevel: ResourceLevel): ResourceRow | undefined {
    const row = this.index.findRow(id, level);
    if (!row) return undefined;
    const ancestorId = [row.patient_id, row.study_id, row.series_id, row.internal_id][LEVEL_CODE[ancestorLevel]];
    return ancestorId === null ? undefined : this.index.rowById(ancestorId);
  }

  listRows(level: ResourceLevel, since: number, limit: number): ResourceRow[] {
    return this.prepare('SELECT * FROM resources WHERE level = ? ORDER BY internal_id LIMIT ? OFFSET ?')
      .all(LEVEL_CODE[level], limit > 0 ? limit : -1, since) as ResourceRow[];
  }

  // ---------------------------------------------------------------- files

  private instanceAttachment(id: string): AttachmentRow {
    const row = this.index.findRow(id, 'Instance');
    const attachment = row && this.index.attachmentOf(row.internal_id);
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
    const row = this.index.findRow(id, 'Instance');
    if (!row) return undefined;
    const rows = this.prepare('SELECT name, value FROM metadata WHERE internal_id = ? ORDER BY name').all(row.internal_id) as Array<{ name: string; value: string }>;
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  }

  async getInstanceMetadata(id: string, name: string): Promise<string | undefined> {
    const row = this.index.findRow(id, 'Instance');
    return row ? this.index.metadataOf(row.internal_id, name) : undefined;
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
    const row = this.index.findRow(id, level);
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
      const parent = this.index.rowById(parentId);
      if (this.index.countChildren(parentId) > 0) {
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
    const row = this.index.findRow(id, 'Patient');
    return row ? this.recycling.isProtected(row.internal_id) : undefined;
  }

  /** PUT /patients/{id}/protected; false for an unknown patient. */
  setPatientProtected(id: string, protect: boolean): boolean {
    const row = this.index.findRow(id, 'Patient');
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
    const row = this.index.findRow(id, level);
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
    return this.index.labelsOf(this.existingRow(level, id).internal_id);
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
          { storageSize: () => this.totalSize, deletePatient: (internalId) => this.deleteRows(this.index.rowById(internalId), orthancTimestamp()).files },
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
    await this.searchThreads.close();
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
