/**
 * The native model over a real Orthanc's REST API ("Core": {"Url", "Username", "Password"}).
 *
 * Stateless: every answer comes from the core, so many gateways can front one Orthanc. Orthanc 1.10's gaps
 * are filled here (see remote-find.ts and requested-tags.ts for /tools/find, `transcodedFile` for transcoding).
 * A core that is down answers CoreError(503) until it is back; nothing is retried behind the caller's back.
 */
import { createReadStream, type ReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import fsp from 'node:fs/promises';
import type { GatewayConfig } from '../../config/gateway-config';
import { logger } from '../../server/logger';
import { LEVEL_PATH, levelIndex } from '../main-dicom-tags';
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
  type StoreResult,
  type SystemInfo,
} from '../native-model';
import { isOrthancId } from '../orthanc-ids';
import { ChangeGeneration, GenerationCache } from './core-cache';
import { OrthancHttp, type CoreResponse } from './orthanc-http';
import { normalizeResource, sortInstances } from './orthanc-resources';
import { RemoteFinder, type CoreFeatures } from './remote-find';

/** Orthanc 1.11 (ApiVersion 18) answers RequestedTags in /tools/find itself. */
const NATIVE_REQUESTED_TAGS_API_VERSION = 18;

/** Fields of our SystemInfo that Orthanc 1.10 does not report, with the values it behaves with. */
const SYSTEM_DEFAULTS: Partial<SystemInfo> = {
  MaximumStorageSize: 0,
  MaximumPatientCount: 0,
  OverwriteInstances: false,
  UserMetadata: {},
  HasLabels: false,
  CheckRevisions: false,
  StorageAreaPlugin: null,
  DatabaseBackendPlugin: null,
};

/** The configuration keys the remote core reads ("Core", and HttpTimeout / HttpsVerifyPeers / HttpsCACertificates). */
export type RemoteCoreSettings = Pick<GatewayConfig, 'core' | 'httpTimeout' | 'httpsVerifyPeers' | 'httpsCACertificates'>;

export class RemoteCore implements NativeCore {
  readonly kind = 'remote' as const;
  readonly http: OrthancHttp;
  private readonly finder: RemoteFinder;
  private features?: Promise<CoreFeatures>;
  /** The core's change log position: cached answers are used only while it stands still. */
  private readonly generation: ChangeGeneration;
  /** UID -> /tools/lookup answer (Orthanc 1.10 needs ~20 ms per lookup on a few thousand studies). */
  private readonly lookups = new GenerationCache<LookupMatch[]>(10_000);

  constructor(settings: RemoteCoreSettings) {
    const core = settings.core;
    if (!core) throw new Error('RemoteCore needs a "Core" section with a Url');
    this.http = new OrthancHttp({
      url: core.url,
      username: core.username,
      password: core.password,
      timeoutSeconds: settings.httpTimeout,
      verifyPeers: settings.httpsVerifyPeers,
      caFile: settings.httpsCACertificates,
    });
    this.generation = new ChangeGeneration(this.http);
    this.finder = new RemoteFinder(this.http, this.generation);
  }

  /** The core's URL without credentials, for logs. */
  get displayUrl(): string {
    return this.http.target.display;
  }

  /** Logs whether the core answers; never throws (the gateway starts either way and answers 503 meanwhile). */
  async checkConnection(): Promise<boolean> {
    try {
      const system = await this.getSystem();
      logger.info({ core: this.displayUrl, version: system.Version, apiVersion: system.ApiVersion }, `core: Orthanc ${system.Version} at ${this.displayUrl}`);
      return true;
    } catch (error) {
      const reason = error instanceof CoreError ? `${error.message}${error.details ? ` (${error.details})` : ''}` : String(error);
      logger.warn({ core: this.displayUrl }, `core: ${this.displayUrl} does not answer: ${reason}; DICOMweb calls answer 503 until it is back`);
      return false;
    }
  }

  async getSystem(): Promise<SystemInfo> {
    const system = { ...SYSTEM_DEFAULTS, ...(await this.http.json<Partial<SystemInfo>>('GET', '/system')) } as SystemInfo;
    this.features = Promise.resolve(featuresOf(system));
    return system;
  }

  /** What the core supports, asked once (again after a failure, e.g. the core was down). */
  private coreFeatures(): Promise<CoreFeatures> {
    if (!this.features) {
      const pending = this.http.json<Partial<SystemInfo>>('GET', '/system').then((s) => featuresOf({ ...SYSTEM_DEFAULTS, ...s } as SystemInfo));
      this.features = pending;
      pending.catch(() => {
        if (this.features === pending) this.features = undefined;
      });
    }
    return this.features;
  }

  // ---------------------------------------------------------------- storing

  async storeInstance(input: StoreInput): Promise<StoreResult> {
    let file: ReadStream | undefined;
    try {
      // bytes the caller still holds are sent as they are: the file is not read back
      let body: Buffer | ReadStream;
      let size: number;
      if ('buffer' in input) [body, size] = [input.buffer, input.buffer.length];
      else if (input.contents) [body, size] = [input.contents, input.contents.length];
      else {
        size = (await fsp.stat(input.file)).size;
        body = file = createReadStream(input.file, { highWaterMark: 1 << 20 });
      }
      const answer = await this.http.requestJson<StoreResult | StoreResult[]>('POST', '/instances', {
        body,
        headers: { 'content-type': 'application/dicom', 'content-length': String(size) },
      });
      // an array is Orthanc's answer to a ZIP archive, which is not one DICOM file
      if (Array.isArray(answer)) throw new CoreError(400, 'Expected one DICOM file, got an archive');
      const { ID, ParentPatient, ParentStudy, ParentSeries, Path, Status } = answer;
      return { ID, ParentPatient, ParentStudy, ParentSeries, Path, Status };
    } finally {
      // the caller handed the file over: it goes whatever the outcome
      file?.destroy();
      // unlink, not rm: rm stats the path twice first (it may be a folder), a cost per stored instance
      if ('file' in input) await fsp.unlink(input.file).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
  }

  // ---------------------------------------------------------------- searching

  async find(request: FindRequest): Promise<Resource[]> {
    return this.finder.find(request, await this.coreFeatures());
  }

  async findIds(request: FindRequest): Promise<string[]> {
    return this.finder.findIds(request, await this.coreFeatures());
  }

  async lookup(dicomUid: string): Promise<LookupMatch[]> {
    // the generation is read before the lookup: an entry never claims a newer state than it saw
    const seq = await this.generation.current();
    const cached = this.lookups.get(dicomUid, seq);
    if (cached) return cached.map((match) => ({ ...match }));
    const matches = await this.http.json<LookupMatch[]>('POST', '/tools/lookup', dicomUid);
    matches.sort((a, b) => levelIndex(a.Type) - levelIndex(b.Type));
    this.lookups.set(dicomUid, seq, matches.map((match) => ({ ...match })));
    return matches;
  }

  // ---------------------------------------------------------------- reading resources

  async getResource(level: ResourceLevel, id: string): Promise<Resource | undefined> {
    if (!isOrthancId(id)) return undefined;
    const raw = await this.http.jsonOrUndefined<unknown>('GET', `/${LEVEL_PATH[level]}/${id}`);
    return raw === undefined ? undefined : normalizeResource(raw);
  }

  async getInstances(level: ResourceLevel, id: string): Promise<InstanceResource[] | undefined> {
    if (level === 'Instance') {
      const instance = await this.getResource('Instance', id);
      return instance && [instance as InstanceResource];
    }
    if (!isOrthancId(id)) return undefined;
    const raw = await this.http.jsonOrUndefined<unknown[]>('GET', `/${LEVEL_PATH[level]}/${id}/instances`);
    return raw && sortInstances(raw.map((r) => normalizeResource(r) as InstanceResource));
  }

  // ---------------------------------------------------------------- files

  async readInstanceFile(id: string, options: { transcode?: string } = {}): Promise<FileStream> {
    if (!isOrthancId(id)) throw new CoreError(404, `Unknown instance: ${id}`);
    if (options.transcode) {
      const stored = await this.getInstanceMetadata(id, 'TransferSyntax');
      if (options.transcode !== stored) return this.transcodedFile(id, options.transcode);
    }
    // the stored syntax is the file's own (group 0002): read from the first bytes, not asked in another round trip
    const response = await this.http.ok('GET', `/instances/${id}/file`);
    const { stream, transferSyntax } = await peekTransferSyntax(response.body);
    const size = contentLength(response);
    if (transferSyntax !== undefined) return { stream, size, transferSyntax };
    return { stream, size, transferSyntax: await this.getInstanceMetadata(id, 'TransferSyntax') };
  }

  /**
   * Orthanc 1.10 ignores `/file?transcode=`; /modify with only "Transcode" answers the same file in the new
   * syntax without storing it. Keeping SOPInstanceUID (which needs Force) stops Orthanc from minting a new one.
   */
  private async transcodedFile(id: string, transferSyntax: string): Promise<FileStream> {
    const response = await this.http.send('POST', `/instances/${id}/modify`, {
      body: JSON.stringify({ Transcode: transferSyntax, Keep: ['SOPInstanceUID'], Force: true }),
      headers: { 'content-type': 'application/json' },
    });
    if (response.status < 200 || response.status >= 300) {
      const error = await this.http.statusError(response);
      // the core knows the instance but cannot produce that syntax (unknown UID: 400, no codec: 500)
      if (response.status === 400 || response.status === 500) {
        throw new CoreError(415, `The core cannot transcode this instance to ${transferSyntax}`, error.details ?? error.message);
      }
      throw error;
    }
    return { stream: response.body, size: contentLength(response), transferSyntax };
  }

  async readFrameRaw(id: string, frame: number): Promise<Buffer> {
    if (!isOrthancId(id)) throw new CoreError(404, `Unknown instance: ${id}`);
    return this.http.buffer('GET', `/instances/${id}/frames/${frame}/raw`);
  }

  async getInstanceMetadata(id: string, name: string): Promise<string | undefined> {
    if (!isOrthancId(id)) return undefined;
    return this.http.textOrUndefined(`/instances/${id}/metadata/${encodeURIComponent(name)}`);
  }

  // ---------------------------------------------------------------- deleting, changes

  async deleteResource(level: ResourceLevel, id: string): Promise<boolean> {
    if (!isOrthancId(id)) return false;
    const response = await this.http.send('DELETE', `/${LEVEL_PATH[level]}/${id}`);
    if (response.status === 404) {
      response.body.resume();
      return false;
    }
    if (response.status < 200 || response.status >= 300) throw await this.http.statusError(response);
    response.body.resume();
    this.lookups.clear();
    return true;
  }

  async getChanges(since: number, limit: number): Promise<ChangesPage> {
    return this.http.json<ChangesPage>('GET', `/changes?since=${Math.max(0, Math.trunc(since))}&limit=${Math.max(0, Math.trunc(limit))}`);
  }

  async close(): Promise<void> {
    await this.http.close();
  }
}

function featuresOf(system: SystemInfo): CoreFeatures {
  const apiVersion = Number(system.ApiVersion) || 0;
  return { apiVersion, requestedTags: apiVersion >= NATIVE_REQUESTED_TAGS_API_VERSION, labels: system.HasLabels === true };
}

/** Bytes of the file meta group read at most to find (0002,0010). */
const META_PEEK_LIMIT = 64 * 1024;

/**
 * The Transfer Syntax UID of a Part 10 stream, read from its first bytes, which are put back: the stream
 * still yields the whole file. Undefined when the meta group does not say (the caller asks the core).
 */
export async function peekTransferSyntax(stream: Readable): Promise<{ stream: Readable; transferSyntax?: string }> {
  const chunks: Buffer[] = [];
  let length = 0;
  let found: string | undefined;
  let ended = false;
  let failure: unknown;
  try {
    while (length < META_PEEK_LIMIT) {
      const chunk = stream.read() as Buffer | null;
      if (chunk === null) {
        if (ended || stream.readableEnded || stream.destroyed) break;
        ended = await new Promise<boolean>((resolve) => {
          const done = (value: boolean): void => {
            stream.off('readable', onReadable);
            stream.off('end', onEnd);
            stream.off('error', onError);
            stream.off('close', onEnd);
            resolve(value);
          };
          const onReadable = (): void => done(false);
          const onEnd = (): void => done(true);
          const onError = (error: unknown): void => {
            failure = error;
            done(true);
          };
          stream.on('readable', onReadable);
          stream.on('end', onEnd);
          stream.on('error', onError);
          stream.on('close', onEnd);
        });
        continue;
      }
      chunks.push(chunk);
      length += chunk.length;
      const meta = transferSyntaxOf(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (meta !== null) {
        found = meta;
        break;
      }
    }
  } catch (error) {
    failure = error;
  }
  const head = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  // a stream that failed fails for the consumer too, after the bytes that did arrive
  if (failure !== undefined || (stream.destroyed && !stream.readableEnded)) {
    const error = failure ?? new Error('The core closed the file stream early');
    return {
      stream: Readable.from(
        (async function* () {
          if (head.length > 0) yield head;
          throw error;
        })(),
      ),
    };
  }
  if (ended || stream.readableEnded) return { stream: Readable.from(chunks.length > 0 ? [head] : []), transferSyntax: found };
  if (chunks.length > 0) stream.unshift(head);
  return { stream, transferSyntax: found };
}

/** (0002,0010) of a Part 10 header; null when more bytes are needed, undefined when absent or not Part 10. */
function transferSyntaxOf(head: Buffer): string | undefined | null {
  if (head.length < 132) return null;
  if (head.toString('latin1', 128, 132) !== 'DICM') return undefined;
  let at = 132;
  for (;;) {
    if (head.length < at + 8) return null;
    const group = head.readUInt16LE(at);
    if (group !== 0x0002) return undefined;
    const element = head.readUInt16LE(at + 2);
    const vr = head.toString('latin1', at + 4, at + 6);
    let valueAt: number;
    let valueLength: number;
    if (['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'OD', 'OL', 'OV', 'UC', 'UR', 'SV', 'UV'].includes(vr)) {
      if (head.length < at + 12) return null;
      valueLength = head.readUInt32LE(at + 8);
      valueAt = at + 12;
    } else {
      valueLength = head.readUInt16LE(at + 6);
      valueAt = at + 8;
    }
    if (valueLength === 0xffffffff) return undefined;
    if (head.length < valueAt + valueLength) return null;
    if (element === 0x0010) {
      const uid = head.toString('latin1', valueAt, valueAt + valueLength).replace(/[\0 ]+$/, '');
      return uid === '' ? undefined : uid;
    }
    at = valueAt + valueLength;
  }
}

function contentLength(response: CoreResponse): number | undefined {
  const header = response.headers['content-length'];
  const value = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(value) && header !== undefined ? value : undefined;
}
