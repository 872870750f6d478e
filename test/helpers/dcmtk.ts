import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from './orthanc-process';

const TOOL_TIMEOUT_MS = 20_000;

export interface ToolRun {
  code: number;
  output: string;
}

/** Runs a DCMTK tool to completion (bounded), with its exit code and everything it printed. */
export function runTool(tool: string, args: string[]): Promise<ToolRun> {
  return new Promise((resolve) => {
    execFile(tool, args, { timeout: TOOL_TIMEOUT_MS }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

export function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Waits (15 s at most) until something listens on a loopback port. */
export async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await portAnswers(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not listen on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts storescp on a free loopback port, writing what it receives into a fresh folder. */
export async function startStorescp(aet: string, folder: string): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder);
  const child = spawn('storescp', ['-aet', aet, '-od', folder, String(port)], { stdio: 'ignore' });
  await waitForPort(port, 'storescp');
  return { port, child };
}
