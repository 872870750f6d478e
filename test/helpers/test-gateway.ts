import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Express } from 'express';
import { loadConfig } from '../../src/config/load-config';
import type { GatewayConfig } from '../../src/config/gateway-config';
import type { NativeCore } from '../../src/core/native-model';
import { createApp } from '../../src/server/app';
import { startOrthanc, uploadToOrthanc, type OrthancProcess, type OrthancUploadAnswer } from './orthanc-process';

/** Every DICOMweb test runs against both: the embedded core, and a real Orthanc (without its DICOMweb plugin). */
export type CoreKind = 'embedded' | 'remote';
export const CORE_KINDS: CoreKind[] = ['embedded', 'remote'];

export interface TestGateway {
  app: Express;
  core: NativeCore;
  config: GatewayConfig;
  /** Temporary folder holding the configuration and the embedded core's storage. */
  dir: string;
  /** The real Orthanc behind a remote core. */
  orthanc?: OrthancProcess;
  close(): Promise<void>;
}

/** A gateway app (not listening: use supertest) on a fresh store; `extraConfig` is merged into its JSON configuration. */
export async function startTestGateway(kind: CoreKind = 'embedded', extraConfig: Record<string, unknown> = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-test-'));
  let orthanc: OrthancProcess | undefined;
  // no DICOM server unless a test asks for one: the default DicomPort 4242 would collide between parallel tests
  const json: Record<string, unknown> = { StorageDirectory: join(dir, 'storage'), DicomServerEnabled: false, ...extraConfig };
  if (kind === 'remote') {
    orthanc = await startOrthanc();
    json.Core = { Url: orthanc.url };
  }
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(json));
  let config: GatewayConfig;
  let gateway: ReturnType<typeof createApp>;
  try {
    config = loadConfig([file], { warn: () => undefined });
    gateway = createApp(config);
  } catch (error) {
    // a bad extraConfig must not leave an Orthanc running behind the failed test
    await orthanc?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    app: gateway.app,
    core: gateway.core,
    config,
    dir,
    orthanc,
    close: async () => {
      await gateway.close();
      await orthanc?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Stores each file in the gateway's core and in a real Orthanc, checks both give it the same id; Orthanc's answers. */
export async function uploadToBoth(gateway: TestGateway, orthanc: OrthancProcess, files: readonly Buffer[]): Promise<OrthancUploadAnswer[]> {
  const answers: OrthancUploadAnswer[] = [];
  for (const file of files) {
    const ours = await gateway.core.storeInstance({ buffer: file });
    const theirs = await uploadToOrthanc(orthanc.url, file);
    if (ours.ID !== theirs.ID) throw new Error(`the gateway stored ${ours.ID}, Orthanc ${theirs.ID}`);
    answers.push(theirs);
  }
  return answers;
}
