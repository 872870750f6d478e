/**
 * The systems under test, each a separate process on a loopback port with fresh storage:
 *  - plugin:   a real Orthanc + its DICOMweb plugin (test/helpers/orthanc-process.ts)
 *  - embedded: `bin/dicomweb-gateway <config>` on the embedded core
 *  - remote:   the same gateway with "Core": {"Url": ...} in front of a plain real Orthanc
 * Peak RSS is read from /proc/<pid>/status (bench/rss.ts). Every child is killed on exit, also on error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startOrthanc, type OrthancProcess } from '../test/helpers/orthanc-process';
import type { Agent } from 'undici';
import type { SystemName } from './settings';

export interface RunningSystem {
  name: SystemName;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** DICOMweb root under url. */
  dicomWebRoot: string;
  /** Process whose peak RSS is reported. */
  pid: number | undefined;
  /** The real Orthanc behind a remote-core gateway (native uploads fall back to it). */
  backend?: OrthancProcess;
  /** Pid of that Orthanc, for information. */
  backendPid?: number;
  /** Native REST base for fallback uploads (POST /instances). */
  nativeUrl: string;
  /** Why the process under test is gone (exit code or signal and its last log lines), or undefined while it runs. */
  exitReport?(): string | undefined;
  stop(): Promise<void>;
}

/** A started system and the keep-alive agent the bench talks to it with. */
export interface Live {
  system: RunningSystem;
  agent: Agent;
}

/** The gateway's command (bin/dicomweb-gateway: the built cli.js with the memory setting the project ships). */
const GATEWAY_COMMAND = join(__dirname, '..', '..', 'bin', 'dicomweb-gateway');
const GATEWAY_CLI = join(__dirname, '..', 'src', 'server', 'cli.js');
const STARTUP_TIMEOUT_MS = 30_000;
const LOG_KEEP_CHARS = 16_000;

const gatewayChildren = new Set<ChildProcess>();
/** Orthanc pids started by this run: killed first on exit, before any slow directory removal. */
const orthancPids = new Set<number>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

/** Synchronous last-chance cleanup; the Orthanc helper installs its own exit hook for Orthanc children. */
export function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const pid of orthancPids) killQuietly(pid);
    for (const child of gatewayChildren) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n[bench] ${signal}: stopping every child process\n`);
      process.exit(130);
    });
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Remembers an Orthanc child for the exit hook; forgets it once stopped. */
function trackOrthanc(pid: number | undefined, stop: () => Promise<void>): () => Promise<void> {
  if (pid !== undefined) orthancPids.add(pid);
  return async () => {
    await stop();
    if (pid !== undefined) orthancPids.delete(pid);
  };
}

/** The pid of the Orthanc started with the configuration file under `dir` (found through /proc/<pid>/cmdline). */
function orthancPid(dir: string): number | undefined {
  const configPath = join(dir, 'orthanc.json');
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.split('\0').includes(configPath)) return Number(entry);
    } catch {
      // the process ended meanwhile
    }
  }
  return undefined;
}

/** extraConfig is merged over the test helper's Orthanc configuration. */
export async function startPluginSystem(extraConfig: Record<string, unknown> = {}): Promise<RunningSystem> {
  const orthanc = await startOrthanc({ dicomWeb: true, extraConfig });
  const pid = orthancPid(orthanc.storageDir);
  return {
    name: 'plugin',
    url: orthanc.url,
    dicomWebRoot: '/dicom-web',
    pid,
    nativeUrl: orthanc.url,
    stop: trackOrthanc(pid, () => orthanc.stop()),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True once the port answers HTTP at all (any status: some routes may not exist yet). */
async function answersHttp(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/system`, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function startGateway(name: SystemName, logLevel: string, extraConfig: Record<string, unknown>): Promise<RunningSystem> {
  if (!existsSync(GATEWAY_CLI)) throw new Error(`${GATEWAY_CLI} is missing: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), `bench-gateway-${name}-`));
  tempDirs.add(dir);
  const port = await freePort();
  const config = {
    Name: `bench-${name}`,
    HttpPort: port,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    StorageDirectory: join(dir, 'storage'),
    DicomServerEnabled: false,
    DicomPort: await freePort(),
    // the client-primitive STOW sends 50 instances per request, as the direct STOW it is compared with
    DicomWeb: { StowMaxInstances: 50, StowMaxSize: 0 },
    ...extraConfig,
  };
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const child = spawn(GATEWAY_COMMAND, [configPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: logLevel },
  });
  gatewayChildren.add(child);
  let log = '';
  const keep = (chunk: Buffer): void => {
    log = (log + chunk.toString('utf8')).slice(-LOG_KEEP_CHARS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    await killChild(child);
    gatewayChildren.delete(child);
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  };
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (!(await answersHttp(url))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stop();
      const why = child.exitCode !== null ? `exited with ${child.exitCode}` : 'did not answer in time';
      throw new Error(`gateway (${name}) ${why}: ${log.trim().split('\n').slice(-3).join(' | ')}`);
    }
    await sleep(100);
  }
  const exitReport = (): string | undefined => {
    if (child.exitCode === null && child.signalCode === null) return undefined;
    return `exited (${child.signalCode ?? `code ${child.exitCode}`}): ${log.trim().split('\n').slice(-3).join(' | ')}`;
  };
  return { name, url, dicomWebRoot: '/dicom-web', pid: child.pid, nativeUrl: url, exitReport, stop };
}

export function startEmbeddedSystem(logLevel: string): Promise<RunningSystem> {
  return startGateway('embedded', logLevel, {});
}

export async function startRemoteSystem(logLevel: string): Promise<RunningSystem> {
  const orthanc = await startOrthanc({ dicomWeb: false });
  const backendPid = orthancPid(orthanc.storageDir);
  const stopOrthanc = trackOrthanc(backendPid, () => orthanc.stop());
  try {
    const gateway = await startGateway('remote', logLevel, { Core: { Url: orthanc.url } });
    return {
      ...gateway,
      backend: orthanc,
      backendPid,
      nativeUrl: orthanc.url,
      stop: async () => {
        await gateway.stop();
        await stopOrthanc();
      },
    };
  } catch (error) {
    await stopOrthanc();
    throw error;
  }
}

/** Orthanc and DICOMweb plugin versions, from the plugin system. */
export async function orthancVersions(url: string): Promise<{ orthanc: string; plugin: string }> {
  const system = (await (await fetch(`${url}/system`)).json()) as { Version?: string };
  const plugin = (await (await fetch(`${url}/plugins/dicom-web`)).json()) as { Version?: string };
  return { orthanc: system.Version ?? '?', plugin: plugin.Version ?? '?' };
}
