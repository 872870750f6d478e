import type { DicomModalityConfig } from '../../../config/gateway-config';
import { HttpError } from '../../../server/errors';

/**
 * The DICOM modalities known at run time: those of "DicomModalities", then what PUT/DELETE /modalities change.
 * Kept in memory only, as Orthanc does when "DicomModalitiesInDatabase" is false.
 */
export class ModalityRegistry {
  private readonly modalities = new Map<string, DicomModalityConfig>();

  constructor(initial: Record<string, DicomModalityConfig>) {
    for (const [name, modality] of Object.entries(initial)) this.modalities.set(name, { ...modality });
  }

  names(): string[] {
    return [...this.modalities.keys()].sort();
  }

  get(name: string): DicomModalityConfig | undefined {
    return this.modalities.get(name);
  }

  /** The modality, or an Orthanc-style 404 (Orthanc answers "Inexistent item" for an unknown name). */
  require(name: string): DicomModalityConfig {
    const modality = this.modalities.get(name);
    if (!modality) throw new HttpError(404, `No modality with symbolic name: ${name}`);
    return modality;
  }

  set(name: string, modality: DicomModalityConfig): void {
    this.modalities.set(name, modality);
  }

  delete(name: string): boolean {
    return this.modalities.delete(name);
  }

  /** The first modality with this AE title (Orthanc compares AE titles exactly, host not checked by default). */
  byAet(aet: string): { name: string; modality: DicomModalityConfig } | undefined {
    for (const [name, modality] of this.modalities) if (modality.aet === aet) return { name, modality };
    return undefined;
  }
}

/** Orthanc's JSON for one modality (GET /modalities?expand, GET /modalities/{name}/configuration). */
export function modalityJson(modality: DicomModalityConfig): Record<string, unknown> {
  return {
    AET: modality.aet,
    AllowEcho: modality.allowEcho,
    AllowFind: modality.allowFind,
    AllowFindWorklist: modality.allowFind,
    AllowGet: false,
    AllowMove: modality.allowMove,
    AllowNAction: false,
    AllowNEventReport: false,
    AllowStorageCommitment: false,
    AllowStore: modality.allowStore,
    AllowTranscoding: true,
    Host: modality.host,
    Manufacturer: modality.manufacturer,
    Port: modality.port,
    Timeout: 0,
  };
}

const NAME = /^[A-Za-z0-9_-]+$/;

export function checkModalityName(name: string): void {
  if (!NAME.test(name)) throw new HttpError(400, 'Names of modalities may only contain letters, digits, "-" and "_"');
}

function aetOf(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > 16 || value.includes('\\')) {
    throw new HttpError(400, 'The AET of a modality must be an AE title of 1 to 16 characters');
  }
  return value;
}

function hostOf(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new HttpError(400, 'The host of a modality must be a non-empty string');
  return value;
}

function portOf(value: unknown): number {
  // Orthanc also takes the port as a string ("104")
  const port = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new HttpError(400, 'The port of a modality must be an integer between 1 and 65535');
  }
  return port;
}

function flag(body: Record<string, unknown>, key: string): boolean {
  const value = body[key];
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw new HttpError(400, `Field "${key}" of a modality must be true or false`);
  return value;
}

/** The body of PUT /modalities/{name}: [AET, host, port(, manufacturer)] or { AET, Host, Port, Manufacturer, Allow* }. */
export function parseModalityBody(body: unknown): DicomModalityConfig {
  if (Array.isArray(body)) {
    if (body.length !== 3 && body.length !== 4) throw new HttpError(400, 'A modality must be [AET, host, port] or [AET, host, port, manufacturer]');
    return {
      aet: aetOf(body[0]),
      host: hostOf(body[1]),
      port: portOf(body[2]),
      manufacturer: typeof body[3] === 'string' ? body[3] : 'Generic',
      allowEcho: true,
      allowFind: true,
      allowMove: true,
      allowStore: true,
    };
  }
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'A modality must be a JSON object or array');
  const fields = body as Record<string, unknown>;
  return {
    aet: aetOf(fields.AET),
    host: hostOf(fields.Host),
    port: portOf(fields.Port),
    manufacturer: typeof fields.Manufacturer === 'string' ? fields.Manufacturer : 'Generic',
    allowEcho: flag(fields, 'AllowEcho'),
    allowFind: flag(fields, 'AllowFind'),
    allowMove: flag(fields, 'AllowMove'),
    allowStore: flag(fields, 'AllowStore'),
  };
}
