import { execFile } from 'node:child_process';

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
