/**
 * Starts a real Orthanc (the Debian package) for one test: own JSON config and storage in a fresh
 * temp dir, free loopback ports, optional DICOMweb plugin and users. Never touches the system service.
 *
 *   const orthanc = await startOrthanc({ dicomWeb: true });
 *   ... fetch(`${orthanc.url}/system`) ...
 *   await orthanc.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export const ORTHANC_INSTALL_HINT = 'apt-get update && apt-get install -y orthanc orthanc-dicomweb';
export const DICOMWEB_PLUGIN_PATH = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

const STARTUP_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const STDERR_KEEP_CHARS = 16_000;

export interface OrthancOptions {
  /** Load the DICOMweb plugin (DicomWeb.Root "/dicom-web/"). */
  dicomWeb?: boolean;
  /** username -> password; turns AuthenticationEnabled on. */
  users?: Record<string, string>;
  /** Enable Orthanc's DICOM server (C-STORE/C-FIND SCP) on a free port. Off by default. */
  dicomServer?: boolean;
  /** Merged over the generated configuration (the DicomWeb section is merged one level deep). */
  extraConfig?: Record<string, unknown>;
}

export interface OrthancProcess {
  /** e.g. "http://127.0.0.1:41234" (no trailing slash). */
  url: string;
  httpPort: number;
  dicomPort: number;
  aet: string;
  storageDir: string;
  /** The configuration Orthanc was started with. */
  config: Record<string, unknown>;
  /** Value for an Authorization header when users were given (first user), else undefined. */
  authorization?: string;
  /** Everything Orthanc wrote to stdout/stderr so far (last 16 kB). */
  logs(): string;
  /** SIGTERM, SIGKILL after 5 s, then removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** The Orthanc binary: $ORTHANC_BINARY, /usr/sbin/Orthanc, or `Orthanc` on the PATH; undefined if none. */
export function orthancBinary(): string | undefined {
  const candidates = [process.env.ORTHANC_BINARY, '/usr/sbin/Orthanc'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(join(dir, 'Orthanc'));
  return candidates.find((c): c is string => typeof c === 'string' && c !== '' && existsSync(c));
}

export function isOrthancInstalled(options: { dicomWeb?: boolean } = {}): boolean {
  if (orthancBinary() === undefined) return false;
  return !options.dicomWeb || existsSync(DICOMWEB_PLUGIN_PATH);
}

/** Throws a message that says how to install Orthanc (instead of a test hanging or failing oddly). */
export function assertOrthancInstalled(options: { dicomWeb?: boolean } = {}): void {
  if (orthancBinary() === undefined) {
    throw new Error(`Orthanc is not installed (no /usr/sbin/Orthanc, no Orthanc on PATH): ${ORTHANC_INSTALL_HINT}`);
  }
  if (options.dicomWeb && !existsSync(DICOMWEB_PLUGIN_PATH)) {
    throw new Error(`The Orthanc DICOMweb plugin is not installed (${DICOMWEB_PLUGIN_PATH}): ${ORTHANC_INSTALL_HINT}`);
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not find a free port'))));
    });
  });
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

interface ConfigInput {
  options: OrthancOptions;
  dir: string;
  httpPort: number;
  dicomPort: number;
  aet: string;
}

/** The JSON configuration for one test Orthanc. */
export function orthancConfig({ options, dir, httpPort, dicomPort, aet }: ConfigInput): Record<string, unknown> {
  const users = options.users ?? {};
  const config: Record<string, unknown> = {
    Name: `test-orthanc-${httpPort}`,
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'index'),
    HttpPort: httpPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: Object.keys(users).length > 0,
    RegisteredUsers: users,
    DicomServerEnabled: options.dicomServer === true,
    DicomAet: aet,
    DicomPort: dicomPort,
    SaveJobs: false,
    StableAge: 1,
    HttpTimeout: 30,
    HttpsVerifyPeers: false,
    Plugins: options.dicomWeb ? [DICOMWEB_PLUGIN_PATH] : [],
  };
  if (options.dicomWeb) {
    config.DicomWeb = { Enable: true, Root: '/dicom-web/', EnableWado: true, WadoRoot: '/wado', Ssl: false };
  }
  for (const [key, value] of Object.entries(options.extraConfig ?? {})) {
    const current = config[key];
    const bothObjects = isPlainObject(current) && isPlainObject(value);
    config[key] = key === 'DicomWeb' && bothObjects ? { ...current, ...value } : value;
  }
  return config;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Children still running when the test process exits are killed and their directories removed
// (exit handlers must be synchronous).
const running = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function cleanUpOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [child, dir] of running) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function systemAnswers(url: string, authorization: string | undefined): Promise<boolean> {
  try {
    const response = await fetch(`${url}/system`, {
      headers: authorization ? { authorization } : {},
      signal: AbortSignal.timeout(2_000),
    });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitForExit(child, STOP_GRACE_MS))) {
    child.kill('SIGKILL');
    await waitForExit(child, STOP_GRACE_MS);
  }
}

/** Starts Orthanc and resolves once GET /system answers (30 s at most, else rejects with its log). */
export async function startOrthanc(options: OrthancOptions = {}): Promise<OrthancProcess> {
  assertOrthancInstalled({ dicomWeb: options.dicomWeb });
  const binary = orthancBinary() as string;
  const dir = mkdtempSync(join(tmpdir(), 'orthanc-test-'));
  const httpPort = await freePort();
  const dicomPort = await freePort();
  const aet = 'TESTORTHANC';
  const config = orthancConfig({ options, dir, httpPort, dicomPort, aet });
  const configPath = join(dir, 'orthanc.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const child = spawn(binary, [configPath], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(child, dir);
  cleanUpOnExit();
  let log = '';
  const keep = (chunk: Buffer): void => {
    log = (log + chunk.toString('utf8')).slice(-STDERR_KEEP_CHARS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  child.on('error', (error) => (spawnError = error));

  const url = `http://127.0.0.1:${httpPort}`;
  const [firstUser] = Object.entries(options.users ?? {});
  const authorization = firstUser ? basicAuthorization(firstUser[0], firstUser[1]) : undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killChild(child);
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) {
      await stop();
      const why = spawnError ? spawnError.message : `exited with ${child.exitCode ?? child.signalCode}`;
      throw new Error(`Orthanc (${binary} ${configPath}) ${why} before answering GET /system:\n${log}`);
    }
    if (await systemAnswers(url, authorization)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Orthanc did not answer GET ${url}/system within ${STARTUP_TIMEOUT_MS / 1000} s:\n${log}`);
    }
    await sleep(100);
  }
  return { url, httpPort, dicomPort, aet, storageDir: dir, config, authorization, logs: () => log, stop };
}

/** Orthanc's answer to POST /instances. */
export interface OrthancUploadAnswer {
  ID: string;
  Path: string;
  Status: 'Success' | 'AlreadyStored' | string;
  ParentPatient: string;
  ParentStudy: string;
  ParentSeries: string;
}

/** POST /instances with the Part 10 bytes; throws with Orthanc's answer on any non-2xx status. */
export async function uploadToOrthanc(
  url: string,
  buffer: Uint8Array,
  options: { authorization?: string } = {},
): Promise<OrthancUploadAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/dicom' };
  if (options.authorization) headers.authorization = options.authorization;
  const body = new Uint8Array(buffer.byteLength);
  body.set(buffer);
  const response = await fetch(`${url.replace(/\/$/, '')}/instances`, { method: 'POST', headers, body });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${url}/instances answered ${response.status}: ${text}`);
  return JSON.parse(text) as OrthancUploadAnswer;
}
