import { listenHost } from '../../../server/listen-host';
import { randomUUID } from 'node:crypto';
import { log as dimseLog } from 'dcmjs-dimse';
import type { GatewayConfig } from '../../../config/gateway-config';
import type { EmbeddedCore } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { logger } from '../../../server/logger';
import { AcceptedSyntaxes } from './accepted-syntaxes';
import { ModalityRegistry } from './modality-registry';
import { DicomServer } from './scp';
import type { NaturalizedElements } from './dimse-values';

// dcmjs-dimse logs to the console on its own; our pino logger reports what matters (DIMSE_LOG=1 to debug it)
dimseLog.setLevel(process.env.DIMSE_LOG ? 'info' : 'silent');

/** The answers of one C-FIND issued by POST /modalities/{name}/query, kept for /queries/{id}/... */
export interface StoredQuery {
  id: string;
  modality: string;
  level: ResourceLevel;
  /** The identifier that was sent (naturalized). */
  query: NaturalizedElements;
  answers: NaturalizedElements[];
}

/** Orthanc keeps at most this many query results ("QueryRetrieveSize" default), dropping the oldest. */
const MAX_QUERIES = 100;

/** Everything the DICOM network side of one embedded core shares: modalities, query results, the SCP. */
export class DicomNetwork {
  readonly modalities: ModalityRegistry;
  readonly acceptedSyntaxes: AcceptedSyntaxes;
  private readonly queries = new Map<string, StoredQuery>();
  private server?: DicomServer;

  constructor(
    readonly core: EmbeddedCore,
    readonly config: GatewayConfig,
  ) {
    this.modalities = new ModalityRegistry(config.dicomModalities);
    this.acceptedSyntaxes = new AcceptedSyntaxes(config.acceptedTransferSyntaxes);
  }

  get aet(): string {
    return this.config.dicomAet;
  }

  addQuery(query: Omit<StoredQuery, 'id'>): StoredQuery {
    const stored = { ...query, id: randomUUID() };
    this.queries.set(stored.id, stored);
    if (this.queries.size > MAX_QUERIES) this.queries.delete(this.queries.keys().next().value as string);
    return stored;
  }

  getQuery(id: string): StoredQuery | undefined {
    return this.queries.get(id);
  }

  deleteQuery(id: string): boolean {
    return this.queries.delete(id);
  }

  queryIds(): string[] {
    return [...this.queries.keys()];
  }

  /** Starts the SCP on DicomPort when DicomServerEnabled. */
  async start(): Promise<void> {
    if (!this.config.dicomServerEnabled || this.server) return;
    const server = new DicomServer({ core: this.core, config: this.config, modalities: this.modalities, acceptedSyntaxes: this.acceptedSyntaxes });
    this.server = server;
    await server.listen(this.config.dicomPort, listenHost(this.config));
    logger.info({ aet: this.config.dicomAet, port: this.config.dicomPort }, `DICOM server listening on port ${this.config.dicomPort} as ${this.config.dicomAet}`);
  }

  async close(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }
}

const networks = new WeakMap<EmbeddedCore, DicomNetwork>();

/** Creates the DICOM network side of a core and starts its SCP (a port already in use is logged, not fatal). */
export function attachDicomNetwork(core: EmbeddedCore, config: GatewayConfig): DicomNetwork {
  const network = new DicomNetwork(core, config);
  networks.set(core, network);
  network.start().catch((error: Error) => logger.error({ err: error, port: config.dicomPort }, `cannot start the DICOM server: ${error.message}`));
  return network;
}

/** The network attached to a core (routes look it up per request: the native router only receives the core). */
export function dicomNetworkOf(core: EmbeddedCore): DicomNetwork | undefined {
  return networks.get(core);
}
