import type { EmbeddedCore } from '../embedded-core';
import { HttpError } from '../../../server/errors';

export interface InstanceFile {
  id: string;
  path: string;
}

/** The instances under resources of any level (Orthanc's /modalities/{name}/store takes mixed levels), in order, once each. */
export async function instanceFilesOf(core: EmbeddedCore, resourceIds: string[]): Promise<InstanceFile[]> {
  const seen = new Set<string>();
  const files: InstanceFile[] = [];
  for (const id of resourceIds) {
    const level = core.levelOfResource(id);
    if (!level) throw new HttpError(404, `Unknown resource: ${id}`);
    for (const instance of (await core.getInstances(level, id)) ?? []) {
      if (seen.has(instance.ID)) continue;
      seen.add(instance.ID);
      files.push({ id: instance.ID, path: core.instanceFilePath(instance.ID) });
    }
  }
  return files;
}
