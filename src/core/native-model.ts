/**
 * The native REST model of an Orthanc-style core, as one interface.
 *
 * The DICOMweb layer talks to the store only through `NativeCore`. Two implementations satisfy it:
 * the embedded core (SQLite index + files, src/core/embedded) and a real Orthanc over HTTP
 * (src/core/remote). Shapes and field names are those of Orthanc's REST API so that the remote
 * implementation is a thin translation and the embedded one can be served as JSON unchanged.
 */
import type { Readable } from 'node:stream';

export type ResourceLevel = 'Patient' | 'Study' | 'Series' | 'Instance';

/** Tag values as Orthanc gives them: keyword (e.g. "PatientName") -> string (multi-values joined by '\'). */
export type MainDicomTags = Record<string, string>;

interface ResourceBase {
  ID: string;
  IsStable: boolean;
  LastUpdate: string;
  MainDicomTags: MainDicomTags;
  Labels: string[];
  /**
   * Only in find answers that asked for `RequestedTags`: keyword or "gggg,eeee" as asked -> value.
   * Computed tags (ModalitiesInStudy, NumberOfStudyRelatedSeries, ...) are answered here too.
   */
  RequestedTags?: Record<string, string>;
}

export interface PatientResource extends ResourceBase {
  Type: 'Patient';
  Studies: string[];
}

export interface StudyResource extends ResourceBase {
  Type: 'Study';
  ParentPatient: string;
  PatientMainDicomTags: MainDicomTags;
  Series: string[];
}

export interface SeriesResource extends ResourceBase {
  Type: 'Series';
  ParentStudy: string;
  Instances: string[];
  Status: 'Complete' | 'Missing' | 'Inconsistent' | 'Unknown';
  ExpectedNumberOfInstances: number | null;
}

export interface InstanceResource extends Omit<ResourceBase, 'IsStable' | 'LastUpdate'> {
  Type: 'Instance';
  ParentSeries: string;
  FileSize: number;
  FileUuid: string;
  IndexInSeries: number | null;
}

export type Resource = PatientResource | StudyResource | SeriesResource | InstanceResource;

/** Body of POST /tools/find. */
export interface FindRequest {
  Level: ResourceLevel;
  /** keyword or "gggg,eeee" -> constraint: wildcards * ?, ranges a-b, a-, -b, lists a\b. */
  Query: Record<string, string>;
  Expand?: boolean;
  Limit?: number;
  Since?: number;
  CaseSensitive?: boolean;
  RequestedTags?: string[];
  Labels?: string[];
  LabelsConstraint?: 'All' | 'Any' | 'None';
  /**
   * What each expanded answer must hold (Orthanc 1.12.5's option). Absent = everything. A QIDO search asks
   * only for MainDicomTags + RequestedTags so that the core need not list children or parents.
   */
  ResponseContent?: Array<'MainDicomTags' | 'Children' | 'Parent' | 'Labels' | 'IsStable'>;
}

/** One answer of POST /tools/lookup. */
export interface LookupMatch {
  ID: string;
  Path: string;
  Type: ResourceLevel;
}

/** Answer of POST /instances for one file. */
export interface StoreResult {
  ID: string;
  ParentPatient: string;
  ParentStudy: string;
  ParentSeries: string;
  Path: string;
  Status: 'Success' | 'AlreadyStored';
}

/** What to store: a buffer already in memory, or a complete file written by the caller (moved, not copied, where possible). */
export type StoreInput =
  | { buffer: Buffer }
  /** `contents`: the file's complete bytes when the caller still has them (spares reading the file back). */
  | { file: string; contents?: Buffer };

export interface FileStream {
  stream: Readable;
  /** Size in bytes when known before streaming (undefined after transcoding or over chunked HTTP). */
  size?: number;
  /** Transfer syntax UID of the bytes in `stream`. */
  transferSyntax?: string;
}

/** A stored file read whole (see NativeCore.readInstanceFiles). */
export interface StoredFile {
  /** The whole file as a view of a pooled block, or its blocks in order for a file larger than a block. */
  body: Buffer | AsyncIterable<Buffer>;
  size: number;
  /** Transfer syntax UID of the file. */
  transferSyntax?: string;
}

export interface ChangesPage {
  Changes: Array<{ ChangeType: string; Date: string; ID: string; Path: string; ResourceType: ResourceLevel; Seq: number }>;
  Done: boolean;
  Last: number;
}

export interface SystemInfo {
  Name: string;
  Version: string;
  ApiVersion: number;
  DatabaseVersion: number;
  DicomAet: string;
  DicomPort: number;
  HttpPort: number;
  PluginsEnabled: boolean;
  StorageAreaPlugin: string | null;
  DatabaseBackendPlugin: string | null;
  CheckRevisions: boolean;
  IsHttpServerSecure: boolean;
  MaximumStorageSize: number;
  MaximumPatientCount: number;
  OverwriteInstances: boolean;
  UserMetadata: Record<string, number>;
  HasLabels: boolean;
}

/** Error a core raises for a status the client should see (404 unknown resource, 400 bad input, ...). */
export class CoreError extends Error {
  constructor(
    readonly httpStatus: number,
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'CoreError';
  }
}

export interface NativeCore {
  /** 'embedded' or 'remote' (for logs and tests). */
  readonly kind: 'embedded' | 'remote';

  /** GET /system */
  getSystem(): Promise<SystemInfo>;

  /** POST /instances with one DICOM file. Throws CoreError(400) for input that is not DICOM or lacks UIDs. */
  storeInstance(input: StoreInput): Promise<StoreResult>;

  /** POST /tools/find with Expand: true. */
  find(request: FindRequest): Promise<Resource[]>;

  /** POST /tools/find with Expand: false: identifiers only. */
  findIds(request: FindRequest): Promise<string[]>;

  /** POST /tools/lookup */
  lookup(dicomUid: string): Promise<LookupMatch[]>;

  /** GET /{level}/{id}; undefined when unknown. */
  getResource(level: ResourceLevel, id: string): Promise<Resource | undefined>;

  /** GET /{level}/{id}/instances?expand, in IndexInSeries order; undefined when the resource is unknown. */
  getInstances(level: ResourceLevel, id: string): Promise<InstanceResource[] | undefined>;

  /**
   * GET /instances/{id}/file[?transcode=...]. `chunkBytes` is a hint for the size of the stream's
   * chunks: small for readers that stop after the header, large for readers of whole files.
   */
  readInstanceFile(id: string, options?: { transcode?: string; chunkBytes?: number }): Promise<FileStream>;

  /**
   * Several stored files as readInstanceFile gives them without transcoding, in the order asked, read
   * ahead into pooled blocks (src/dicom/block-pool.ts): the consumer gives each Buffer back with
   * releaseView once written. An unknown instance ends the files with a CoreError(404) at its turn.
   * Optional: a core with local files (a remote core streams each file with readInstanceFile).
   */
  readInstanceFiles?(ids: readonly string[]): AsyncIterable<StoredFile>;

  /** GET /instances/{id}/frames/{frame}/raw (frame is 0-based, as in Orthanc). */
  readFrameRaw(id: string, frame: number): Promise<Buffer>;

  /**
   * Several frames of one instance (0-based), as readFrameRaw gives each, in the order asked; optional:
   * a core with local files opens the file once and reads the frames sequentially.
   */
  readFramesRaw?(id: string, frames: readonly number[]): AsyncIterable<Buffer>;

  /** GET /instances/{id}/metadata/{name}; undefined when absent. */
  getInstanceMetadata(id: string, name: string): Promise<string | undefined>;

  /** DELETE /{level}/{id}; false when unknown. */
  deleteResource(level: ResourceLevel, id: string): Promise<boolean>;

  /** GET /changes */
  getChanges(since: number, limit: number): Promise<ChangesPage>;

  /** Release files, pools and timers. */
  close(): Promise<void>;
}
