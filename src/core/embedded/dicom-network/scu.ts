/**
 * DICOM SCU operations (C-ECHO, C-STORE, C-FIND, C-MOVE) on top of dcmjs-dimse: one association per call (even for a list),
 * every call bounded by a timeout, every failure a `DimseError` with a message a REST client can read.
 */
import { Client, Dataset, constants, requests } from 'dcmjs-dimse';
import type { ResourceLevel } from '../../native-model';
import { attributeKeys, type NaturalizedElements } from './dimse-values';

const { Status, SopClass } = constants;
const { CEchoRequest, CFindRequest, CMoveRequest, CStoreRequest } = requests;

/** Patient Root models (dcmjs-dimse only names the Study Root ones). */
const PATIENT_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.1.1';
const PATIENT_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.1.2';

/** Orthanc's default "DicomScuTimeout" (seconds). */
export const DEFAULT_SCU_TIMEOUT_SECONDS = 10;

export interface Peer {
  aet: string;
  host: string;
  port: number;
}

export interface ScuOptions {
  localAet: string;
  /** Seconds for the whole association; 0 or absent = DEFAULT_SCU_TIMEOUT_SECONDS. */
  timeout?: number;
  /** Aborts the association (a canceled job). */
  signal?: AbortSignal;
}

export class DimseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DimseError';
  }
}

export const QUERY_LEVEL: Record<ResourceLevel, string> = { Patient: 'PATIENT', Study: 'STUDY', Series: 'SERIES', Instance: 'IMAGE' };

function describe(peer: Peer): string {
  return `AET "${peer.aet}" on host ${peer.host}:${peer.port}`;
}

/**
 * Runs the requests in one association; resolves once it is released. Rejects when the peer cannot be reached,
 * rejects the association, or stays silent longer than the timeout (dcmjs-dimse then aborts the association).
 */
function runAssociation(peer: Peer, options: ScuOptions, operation: string, work: Array<InstanceType<typeof requests.Request>>): Promise<void> {
  // like Orthanc's DicomScuTimeout, a bound on silence (connect, association, each answer), not on the whole transfer
  const timeoutMs = (options.timeout && options.timeout > 0 ? options.timeout : DEFAULT_SCU_TIMEOUT_SECONDS) * 1000;
  return new Promise<void>((resolve, reject) => {
    const client = new Client();
    for (const request of work) client.addRequest(request);
    let failure: DimseError | undefined;
    let settled = false;
    const finish = (error?: DimseError): void => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve();
    };
    client.on('associationRejected', (rejection: { result: number; source: number; reason: number }) => {
      failure = new DimseError(
        `${operation} to ${describe(peer)}: association rejected (result ${rejection.result}, source ${rejection.source}, reason ${rejection.reason})`,
      );
    });
    client.on('networkError', (error: Error) => {
      failure ??= new DimseError(`${operation} to ${describe(peer)} failed: ${error.message}`);
      finish(failure);
    });
    client.on('closed', () => finish(failure));
    const { signal } = options;
    if (signal?.aborted) return finish(new DimseError(`${operation} to ${describe(peer)}: canceled`));
    signal?.addEventListener(
      'abort',
      () => {
        if (settled) return;
        try {
          client.abort();
        } catch {
          // no association yet (still connecting): settling is enough, the socket times out on its own
        }
        finish(new DimseError(`${operation} to ${describe(peer)}: canceled`));
      },
      { once: true },
    );
    client.send(peer.host, peer.port, options.localAet, peer.aet, {
      connectTimeout: timeoutMs,
      associationTimeout: timeoutMs,
      pduTimeout: timeoutMs,
    });
  });
}

export async function echo(peer: Peer, options: ScuOptions): Promise<void> {
  const request = new CEchoRequest();
  let status: number | undefined;
  request.on('response', (response) => (status = response.getStatus()));
  await runAssociation(peer, options, 'C-ECHO', [request]);
  if (status !== Status.Success) throw new DimseError(`C-ECHO to ${describe(peer)}: ${status === undefined ? 'no answer' : `status 0x${status.toString(16)}`}`);
}

export interface MoveOriginator {
  aet: string;
  messageId: number;
}

/** C-STOREs the files in one association; answers, per file, whether the peer accepted it. */
export async function storeFiles(
  peer: Peer,
  files: string[],
  options: ScuOptions & { moveOriginator?: MoveOriginator; onAnswered?: (answered: number) => void },
): Promise<boolean[]> {
  let answered = 0;
  const accepted = files.map(() => false);
  const work = files.map((file, index) => {
    const request = new CStoreRequest(file);
    if (options.moveOriginator) {
      request.getCommandDataset().setElement('MoveOriginatorApplicationEntityTitle', options.moveOriginator.aet);
      request.getCommandDataset().setElement('MoveOriginatorMessageID', String(options.moveOriginator.messageId));
    }
    request.on('response', (response) => {
      // warnings (0xBxxx) mean stored with coercion, as Orthanc counts them
      const status = response.getStatus();
      accepted[index] = status === Status.Success || (status & 0xf000) === 0xb000;
      options.onAnswered?.(++answered);
      // the client keeps every request until the association ends: drop the loaded data set so memory stays at one instance
      request.setDataset(undefined as unknown as InstanceType<typeof Dataset>);
    });
    return request;
  });
  if (work.length === 0) return [];
  await runAssociation(peer, options, 'C-STORE', work);
  return accepted;
}

/** C-FIND at a level (Patient Root for patients, Study Root otherwise, as Orthanc does); answers the matches. */
export async function find(peer: Peer, level: ResourceLevel, query: NaturalizedElements, options: ScuOptions): Promise<NaturalizedElements[]> {
  const request = new CFindRequest();
  request.setAffectedSopClassUid(level === 'Patient' ? PATIENT_ROOT_FIND : SopClass.StudyRootQueryRetrieveInformationModelFind);
  request.setDataset(new Dataset({ ...query, QueryRetrieveLevel: QUERY_LEVEL[level] }));
  const answers: NaturalizedElements[] = [];
  let finalStatus: number | undefined;
  request.on('response', (response) => {
    const status = response.getStatus();
    if (status === Status.Pending || status === 0xff01) {
      const dataset = response.getDataset();
      if (dataset) answers.push(stripBookkeeping(dataset.getElements()));
    } else {
      finalStatus = status;
    }
  });
  await runAssociation(peer, options, 'C-FIND', [request]);
  if (finalStatus !== Status.Success) {
    throw new DimseError(`C-FIND to ${describe(peer)}: ${finalStatus === undefined ? 'no final answer' : `status 0x${finalStatus.toString(16)}`}`);
  }
  return answers;
}

export interface MoveResult {
  completed: number;
  failed: number;
  warnings: number;
}

/** One C-MOVE request for one identifier; `result` is set by its final (non-pending) answer. */
interface PendingMove {
  request: InstanceType<typeof CMoveRequest>;
  result: () => (MoveResult & { status: number }) | undefined;
}

function moveRequest(level: ResourceLevel, identifier: NaturalizedElements, destination: string): PendingMove {
  const request = new CMoveRequest();
  request.setAffectedSopClassUid(level === 'Patient' ? PATIENT_ROOT_MOVE : SopClass.StudyRootQueryRetrieveInformationModelMove);
  request.getCommandDataset().setElement('MoveDestination', destination);
  request.setDataset(new Dataset({ ...identifier, QueryRetrieveLevel: QUERY_LEVEL[level] }));
  let result: (MoveResult & { status: number }) | undefined;
  request.on('response', (response) => {
    const status = response.getStatus();
    if (status === Status.Pending) return;
    result = { status, completed: response.getCompleted() ?? 0, failed: response.getFailures() ?? 0, warnings: response.getWarnings() ?? 0 };
  });
  return { request, result: () => result };
}

/**
 * C-MOVE of the resources each identifier selects (StudyInstanceUID, ...) to `destination`, one request per identifier
 * in a single association (dcmjs-dimse sends the next request once the previous one got its final answer).
 * Answers the summed sub-operation counts; the first failed request fails the whole call, as in Orthanc's move job.
 */
export async function move(peer: Peer, level: ResourceLevel, identifiers: NaturalizedElements[], destination: string, options: ScuOptions): Promise<MoveResult> {
  const moves = identifiers.map((identifier) => moveRequest(level, identifier, destination));
  if (moves.length === 0) return { completed: 0, failed: 0, warnings: 0 };
  await runAssociation(peer, options, 'C-MOVE', moves.map((m) => m.request));
  const total: MoveResult = { completed: 0, failed: 0, warnings: 0 };
  for (const m of moves) {
    const result = m.result();
    if (!result) throw new DimseError(`C-MOVE to ${describe(peer)}: no final answer`);
    // 0xB000: some sub-operations failed
    if (result.status !== Status.Success && result.status !== 0xb000) {
      throw new DimseError(`C-MOVE to ${describe(peer)} (destination "${destination}"): status 0x${result.status.toString(16)}`);
    }
    total.completed += result.completed;
    total.failed += result.failed;
    total.warnings += result.warnings;
  }
  return total;
}

function stripBookkeeping(elements: NaturalizedElements): NaturalizedElements {
  return Object.fromEntries(attributeKeys(elements).map((key) => [key, elements[key]]));
}
