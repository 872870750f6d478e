/**
 * POST /peers/{name}/store as Orthanc's "OrthancPeerStore" job: each instance's file goes to the peer with its own
 * POST /instances, one after the other, streamed from the storage area. The first failure stops the job (Orthanc's
 * "Error in the network protocol"); an instance deleted after the request only counts as failed.
 */
import type { GatewayConfig } from '../../../config/gateway-config';
import { CoreError, type FileStream } from '../../native-model';
import type { JobContent, JobContext } from '../../../server/jobs';
import type { EmbeddedCore } from '../embedded-core';
import { jobPeerJson } from './peer-registry';
import { sendInstanceToPeer, type PeerTarget } from './peer-client';

export interface PeerStoreRequest {
  /** The identifiers the client named (any level), shown as ParentResources. */
  resources: string[];
  /** The instances under them, in order, once each. */
  instances: string[];
  /** Transfer syntax UID to send the instances in ("Transcode"). */
  transcode?: string;
  compress: boolean;
}

const MB = 1024 * 1024;

/** The file to send: transcoded when asked and possible (else as stored, as Orthanc does); undefined if deleted since. */
async function readForPeer(core: EmbeddedCore, id: string, transcode: string | undefined): Promise<FileStream | undefined> {
  try {
    return await core.readInstanceFile(id, transcode ? { transcode } : {});
  } catch (error) {
    if (!(error instanceof CoreError)) throw error;
    if (error.httpStatus === 415 && transcode) return readForPeer(core, id, undefined);
    if (error.httpStatus === 404) return undefined;
    throw error;
  }
}

/** What the transfer uses of a job's context: a synchronous request runs it with a context of its own. */
export type PeerStoreContext = Pick<JobContext, 'signal' | 'progress' | 'setContent'>;

/** The transfer, run by the jobs engine or at once; resolves to the job's Content. */
export function peerStoreWork(
  core: EmbeddedCore,
  config: GatewayConfig,
  target: PeerTarget,
  request: PeerStoreRequest,
): (context: PeerStoreContext) => Promise<JobContent> {
  return async ({ signal, progress, setContent }) => {
    let size = 0;
    let failed = 0;
    const content = (): JobContent => ({
      Compress: request.compress,
      Description: 'REST API',
      FailedInstancesCount: failed,
      InstancesCount: request.instances.length,
      ...(request.resources.length > 0 ? { ParentResources: request.resources } : {}),
      Peer: jobPeerJson(target.peer),
      // Orthanc: bytes sent, as text; whole megabytes as a number
      Size: String(size),
      SizeMB: Math.floor(size / MB),
      ...(request.transcode ? { Transcode: request.transcode } : {}),
    });
    setContent(content());
    try {
      for (const [n, id] of request.instances.entries()) {
        signal.throwIfAborted();
        const file = await readForPeer(core, id, request.transcode);
        if (file) await sendInstanceToPeer(config, target, file, { compress: request.compress, signal, onBytes: (bytes) => (size += bytes) });
        else failed++;
        progress((100 * (n + 1)) / request.instances.length);
        setContent(content());
      }
    } catch (error) {
      // a failed or canceled job still shows how far it went
      setContent(content());
      throw error;
    }
    return content();
  };
}
