/**
 * The native model over a real Orthanc's REST API ("Core": {"Url", "Username", "Password"}).
 *
 * Stateless: every answer comes from the core, so many gateways can front one Orthanc. Orthanc 1.10's gaps
 * are filled here (see remote-find.ts and requested-tags.ts for /tools/find, `transcodedFile` for transcoding).
 * A core that is down answers CoreError(503) until it is back; nothing is retried behind the caller's back.
 */
import { createReadStream, type ReadStream } from 'node:fs';
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
    this.finder = new RemoteFinder(this.http);
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
      const size = 'buffer' in input ? input.buffer.length : (await fsp.stat(input.file)).size;
      if ('file' in input) file = createReadStream(input.file);
      const body = 'buffer' in input ? input.buffer : (file as ReadStream);
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
      if ('file' in input) await fsp.rm(input.file, { force: true });
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
    const matches = await this.http.json<LookupMatch[]>('POST', '/tools/lookup', dicomUid);
    return matches.sort((a, b) => levelIndex(a.Type) - levelIndex(b.Type));
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
    const transferSyntax = await this.getInstanceMetadata(id, 'TransferSyntax');
    if (options.transcode && options.transcode !== transferSyntax) return this.transcodedFile(id, options.transcode);
    const response = await this.http.ok('GET', `/instances/${id}/file`);
    return { stream: response.body, size: contentLength(response), transferSyntax };
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

function contentLength(response: CoreResponse): number | undefined {
  const header = response.headers['content-length'];
  const value = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(value) && header !== undefined ? value : undefined;
}
