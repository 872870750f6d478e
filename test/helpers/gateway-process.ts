import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './orthanc-process';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'server', 'cli.js');
/** The command users run (package.json "bin"): the built CLI with the project's memory setting. */
const COMMAND = join(ROOT, 'bin', 'dicomweb-gateway');

function newestSource(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const stat = statSync(full);
    newest = Math.max(newest, stat.isDirectory() ? newestSource(full) : stat.mtimeMs);
  }
  return newest;
}

/** Compiles with tsc when dist/ is missing or older than src/ (CI builds first, so this is usually a no-op). */
export function ensureBuilt(): void {
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newestSource(join(ROOT, 'src'))) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'pipe' });
}

export interface GatewayProcess {
  url: string;
  port: number;
  dir: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `dicomweb-gateway <config>` (bin/dicomweb-gateway) as a real process on a free loopback port; resolves when /system answers. */
export async function startGatewayProcess(config: Record<string, unknown>, dir = mkdtempSync(join(tmpdir(), 'gateway-e2e-'))): Promise<GatewayProcess> {
  ensureBuilt();
  const port = (config.HttpPort as number | undefined) ?? (await freePort());
  const file = join(dir, 'config.json');
  // DicomServerEnabled off unless asked: parallel gateways would all claim the default DicomPort 4242
  writeFileSync(file, JSON.stringify({ StorageDirectory: join(dir, 'storage'), HttpPort: port, DicomServerEnabled: false, ...config }));
  const child = spawn(COMMAND, [file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } });
  let log = '';
  child.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}:\n${log}`);
    const headers: Record<string, string> = {};
    const users = config.RegisteredUsers as Record<string, string> | undefined;
    if (users) {
      const [user, password] = Object.entries(users)[0];
      headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    }
    const ok = await fetch(`${url}/system`, { headers }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`the gateway did not answer within 20 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, port, dir, child, output: () => log, stop };
}

/** Runs the CLI to completion (for configurations that must refuse to start). */
export function runGatewayExpectingFailure(config: string, dir: string): { status: number | null; output: string } {
  ensureBuilt();
  const file = join(dir, 'bad.json');
  writeFileSync(file, config);
  try {
    execFileSync(COMMAND, [file], { cwd: dir, stdio: 'pipe', timeout: 15_000 });
    return { status: 0, output: '' };
  } catch (error) {
    const e = error as { status: number | null; stdout?: Buffer; stderr?: Buffer };
    return { status: e.status, output: `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}` };
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
