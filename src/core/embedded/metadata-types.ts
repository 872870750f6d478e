/**
 * Names and numbers of Orthanc's metadata and attachment types (Orthanc 1.10's MetadataType and FileContentType),
 * with the user-defined ones of the configuration ("UserMetadata", "UserContentType").
 */
import { createHash } from 'node:crypto';
import type { UserContentType } from '../../config/gateway-config';
import { CoreError } from '../native-model';

/** Orthanc reserves 1..1023 for itself; only 1024..65535 can be written through the REST API. */
export const USER_TYPE_MIN = 1024;
export const USER_TYPE_MAX = 65535;

export function isUserType(type: number): boolean {
  return type >= USER_TYPE_MIN && type <= USER_TYPE_MAX;
}

/** Orthanc's system metadata. The index stores them by these names; user metadata are stored by number. */
const SYSTEM_METADATA: Readonly<Record<string, number>> = {
  IndexInSeries: 1,
  ReceptionDate: 2,
  RemoteAET: 3,
  ExpectedNumberOfInstances: 4,
  ModifiedFrom: 5,
  AnonymizedFrom: 6,
  LastUpdate: 7,
  Origin: 8,
  TransferSyntax: 9,
  SopClassUid: 10,
  RemoteIP: 11,
  CalledAET: 12,
  HttpUsername: 13,
  PixelDataOffset: 14,
};
export const LAST_UPDATE_METADATA = SYSTEM_METADATA.LastUpdate;

const SYSTEM_METADATA_NAMES = new Map(Object.entries(SYSTEM_METADATA).map(([name, type]) => [type, name]));

/** Orthanc's system attachments. */
export const DICOM_CONTENT_TYPE = 1;
const SYSTEM_CONTENT_TYPES: Readonly<Record<string, number>> = { dicom: 1, 'dicom-as-json': 2, 'dicom-until-pixel-data': 3 };
const SYSTEM_CONTENT_NAMES = new Map(Object.entries(SYSTEM_CONTENT_TYPES).map(([name, type]) => [type, name]));

/** A name or number as Orthanc reads it: a known name, else a decimal integer; undefined when neither. */
function resolve(name: string, system: Readonly<Record<string, number>>, user: Readonly<Record<string, number>>): number | undefined {
  if (Object.hasOwn(system, name)) return system[name];
  if (Object.hasOwn(user, name)) return user[name];
  return /^-?\d{1,9}$/.test(name) ? Number(name) : undefined;
}

/** The first configured name of a user type, else its number (as Orthanc lists undeclared user types). */
function userName(type: number, user: Readonly<Record<string, number>>): string {
  return Object.entries(user).find(([, value]) => value === type)?.[0] ?? String(type);
}

export class MetadataTypes {
  constructor(private readonly user: Readonly<Record<string, number>>) {}

  /** The type of a metadata name or number; undefined for an unknown name (Orthanc: "Accessing an inexistent item"). */
  typeOf(name: string): number | undefined {
    return resolve(name, SYSTEM_METADATA, this.user);
  }

  nameOf(type: number): string {
    return SYSTEM_METADATA_NAMES.get(type) ?? userName(type, this.user);
  }

  /** The key of a type in the index's `metadata.name` column. */
  storageKey(type: number): string {
    return SYSTEM_METADATA_NAMES.get(type) ?? String(type);
  }

  /** The type of a `metadata.name` value (the inverse of storageKey). */
  typeOfStorageKey(key: string): number {
    return SYSTEM_METADATA[key] ?? Number(key);
  }
}

export class ContentTypes {
  private readonly types: Readonly<Record<string, number>>;

  constructor(private readonly user: Readonly<Record<string, UserContentType>>) {
    this.types = Object.fromEntries(Object.entries(user).map(([name, entry]) => [name, entry.type]));
  }

  typeOf(name: string): number | undefined {
    return resolve(name, SYSTEM_CONTENT_TYPES, this.types);
  }

  nameOf(type: number): string {
    return SYSTEM_CONTENT_NAMES.get(type) ?? userName(type, this.types);
  }

  /** The MIME type of an attachment's data (Orthanc: application/dicom, the configured one, else octet-stream). */
  mimeOf(type: number): string {
    if (type === DICOM_CONTENT_TYPE) return 'application/dicom';
    return Object.values(this.user).find((entry) => entry.type === type)?.mime ?? 'application/octet-stream';
  }
}

/** What Orthanc's ETag of a metadata or attachment holds ("revision-md5"), and what If-Match must repeat. */
export interface Revision {
  revision: number;
  md5: string;
}

export function md5Of(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

export const REVISION_CONFLICT = 'A bad revision number was provided, which might indicate conflict between multiple writers';

/**
 * The revision a write gives: 0 for a new value, the current one + 1 otherwise. An If-Match (`expected`) must name
 * the current revision and MD5, else 409; on a value that does not exist it is ignored, as in Orthanc 1.10.
 */
export function nextRevision(current: Revision | undefined, expected: Revision | undefined): number {
  if (!current) return 0;
  if (expected && (expected.revision !== current.revision || expected.md5 !== current.md5)) throw new CoreError(409, REVISION_CONFLICT);
  return current.revision + 1;
}
