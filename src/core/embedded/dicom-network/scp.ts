/**
 * The DICOM server (SCP) of the embedded core, on "DicomPort" as "DicomAet": C-ECHO, C-STORE into the core,
 * C-FIND answered from the index, C-MOVE to a modality of "DicomModalities" (C-STORE of the matches).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { Dataset, Scp, constants, responses, type requests, type association } from 'dcmjs-dimse';
import type { DicomModalityConfig, GatewayConfig } from '../../../config/gateway-config';
import type { EmbeddedCore } from '../embedded-core';
import { CoreError, type ResourceLevel } from '../../native-model';
import { LEVEL_UID_TAG, LEVELS, levelIndex } from '../../main-dicom-tags';
import { tagToKeyword, toOrthancTag, vrOfTag } from '../../../dicom/dictionary';
import { logger } from '../../../server/logger';
import type { AcceptedSyntaxes } from './accepted-syntaxes';
import type { ModalityRegistry } from './modality-registry';
import { part10Header } from './part10-header';
import { attributeKeys, elementText, naturalValue, tagOfKey, type NaturalizedElements } from './dimse-values';
import { storeFiles } from './scu';
import { logExportedInstance } from './exported-resources';

const { PresentationContextResult, RejectReason, RejectResult, RejectSource, SopClass, Status, TransferSyntax } = constants;
const { CEchoResponse, CFindResponse, CMoveResponse, CStoreResponse } = responses;

type PresentationContext = InstanceType<typeof association.PresentationContext>;
type Association = InstanceType<typeof association.Association>;

const FIND_MODELS = new Set(['1.2.840.10008.5.1.4.1.2.1.1', SopClass.StudyRootQueryRetrieveInformationModelFind]);
const MOVE_MODELS = new Set(['1.2.840.10008.5.1.4.1.2.1.2', SopClass.StudyRootQueryRetrieveInformationModelMove]);
/** Every storage SOP class lives under this root (PS3.4 B.5). */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';
const UNCOMPRESSED = [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian];
const QUERY_LEVELS: Record<string, ResourceLevel> = { PATIENT: 'Patient', STUDY: 'Study', SERIES: 'Series', IMAGE: 'Instance', INSTANCE: 'Instance' };
/** Keys a C-FIND answer sets itself rather than copying from the index. */
const ANSWER_OWN_KEYS = new Set(['QueryRetrieveLevel', 'SpecificCharacterSet', 'RetrieveAETitle']);

export interface ScpContext {
  core: EmbeddedCore;
  config: GatewayConfig;
  modalities: ModalityRegistry;
  /** What C-STORE accepts ("AcceptedTransferSyntaxes", changed by PUT /tools/accepted-transfer-syntaxes). */
  acceptedSyntaxes: AcceptedSyntaxes;
}

/** The transfer syntax to accept in a context: the caller's first choice among `allowed`, else undefined. */
function chooseSyntax(context: PresentationContext, allowed: AcceptedSyntaxes): string | undefined {
  return context.getTransferSyntaxUids().find((uid) => allowed.has(uid));
}

function levelOf(elements: NaturalizedElements): ResourceLevel | undefined {
  return QUERY_LEVELS[String(elements.QueryRetrieveLevel ?? '').trim().toUpperCase()];
}

/** The C-FIND/C-MOVE identifier as the core's find query: non-empty, non-sequence keys only. */
function coreQuery(elements: NaturalizedElements): Record<string, string> {
  const query: Record<string, string> = {};
  for (const key of attributeKeys(elements)) {
    if (ANSWER_OWN_KEYS.has(key)) continue;
    const tag = tagOfKey(key);
    if (!tag || vrOfTag(tag) === 'SQ') continue;
    const text = elementText(elements[key]);
    if (text !== undefined && text !== '') query[toOrthancTag(tag)] = text;
  }
  return query;
}

type DimseOperation = 'echo' | 'store' | 'find' | 'move';

function modalityAllows(modality: DicomModalityConfig, operation: DimseOperation): boolean {
  const flags: Record<DimseOperation, boolean> = { echo: modality.allowEcho, store: modality.allowStore, find: modality.allowFind, move: modality.allowMove };
  return flags[operation];
}

/** Builds the SCP class bound to one core: dcmjs-dimse creates one instance per incoming association. */
function scpClass(context: ScpContext): new (socket: Socket, opts: Record<string, unknown>) => Scp {
  const { core, config, modalities, acceptedSyntaxes } = context;

  return class GatewayScp extends Scp {
    private association?: Association;
    private receivedFile?: string;
    private receiveError?: Error;

    private get callingAet(): string {
      return this.association?.getCallingAeTitle().trim() ?? '';
    }

    /**
     * Orthanc's policy: "DicomAlwaysAllow<Operation>" serves anyone (by default echo and store), otherwise
     * only a known modality whose Allow<Operation> is set.
     */
    private allows(operation: DimseOperation): boolean {
      if (config.dicomAlwaysAllow[operation]) return true;
      const known = modalities.byAet(this.callingAet)?.modality;
      return known !== undefined && modalityAllows(known, operation);
    }

    override associationRequested(association: Association): void {
      this.association = association;
      // "DicomCheckCalledAet": a caller that names another AE title is refused before any request
      if (config.dicomCheckCalledAet && association.getCalledAeTitle().trim() !== config.dicomAet) {
        this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized);
        return;
      }
      for (const { id } of association.getPresentationContexts()) {
        const context = association.getPresentationContext(id);
        const sopClass = context.getAbstractSyntaxUid();
        const isService = sopClass === SopClass.Verification || FIND_MODELS.has(sopClass) || MOVE_MODELS.has(sopClass);
        const syntax = isService
          ? UNCOMPRESSED.find((uid) => context.getTransferSyntaxUids().includes(uid))
          : sopClass.startsWith(STORAGE_ROOT)
            ? chooseSyntax(context, acceptedSyntaxes)
            : undefined;
        if (syntax) context.setResult(PresentationContextResult.Accept, syntax);
        else if (isService || sopClass.startsWith(STORAGE_ROOT)) context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
        else context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      }
      this.sendAssociationAccept();
    }

    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }

    override abort(): void {
      // the peer aborted: dcmjs-dimse closes the socket, a file being received is dropped by cStoreRequest never running
      if (this.receivedFile) void fsp.rm(this.receivedFile, { force: true });
    }

    override cEchoRequest(request: InstanceType<typeof requests.CEchoRequest>, callback: (response: InstanceType<typeof CEchoResponse>) => void): void {
      const response = CEchoResponse.fromRequest(request);
      // 0x0124: refused, not authorized
      response.setStatus(this.allows('echo') ? Status.Success : Status.NotAuthorized);
      callback(response);
    }

    /** The data set is streamed to a temporary Part 10 file (header first), so that memory stays flat and bytes stay as sent. */
    override createStoreWritableStream(acceptedContext: PresentationContext, request: InstanceType<typeof requests.CStoreRequest>): Writable {
      const file = core.storage.newTemporaryPath();
      this.receivedFile = file;
      this.receiveError = undefined;
      const stream = fs.createWriteStream(file);
      stream.on('error', (error) => (this.receiveError = error));
      stream.write(
        part10Header({
          sopClassUid: request.getAffectedSopClassUid(),
          sopInstanceUid: request.getAffectedSopInstanceUid(),
          transferSyntaxUid: acceptedContext.getAcceptedTransferSyntaxUid() ?? TransferSyntax.ImplicitVRLittleEndian,
          sourceAet: this.callingAet,
        }),
      );
      return stream;
    }

    override createDatasetFromStoreWritableStream(writable: Writable, acceptedContext: PresentationContext, callback: (dataset: InstanceType<typeof Dataset>) => void): void {
      const done = (): void => callback(new Dataset({}, acceptedContext.getAcceptedTransferSyntaxUid()));
      if (writable.writableFinished || this.receiveError) done();
      else {
        writable.once('finish', done);
        writable.once('error', done);
      }
    }

    override cStoreRequest(request: InstanceType<typeof requests.CStoreRequest>, callback: (response: InstanceType<typeof CStoreResponse>) => void): void {
      const file = this.receivedFile;
      this.receivedFile = undefined;
      const response = CStoreResponse.fromRequest(request);
      // ReadOnly refuses writes over DICOM too, as over HTTP
      if (!this.allows('store') || config.readOnly) {
        if (file) void fsp.rm(file, { force: true });
        response.setStatus(Status.NotAuthorized);
        callback(response);
        return;
      }
      const store = async (): Promise<void> => {
        if (!file || this.receiveError) throw new Error(`could not write the received instance: ${this.receiveError?.message ?? 'no data'}`);
        // storeInstance moves the file into the storage area, or removes it when it fails
        await core.storeInstance({ file });
      };
      store().then(
        () => {
          response.setStatus(Status.Success);
          callback(response);
        },
        (error: Error) => {
          if (file) void fsp.rm(file, { force: true });
          logger.warn({ err: error, calling: this.callingAet }, 'C-STORE SCP: instance refused');
          // 0xA700: out of resources (storage full); 0x0110: processing failure (not DICOM, no UIDs, ...)
          response.setStatus(error instanceof CoreError && error.httpStatus === 507 ? 0xa700 : Status.ProcessingFailure);
          callback(response);
        },
      );
    }

    override cFindRequest(request: InstanceType<typeof requests.CFindRequest>, callback: (responses: Array<InstanceType<typeof CFindResponse>>) => void): void {
      const final = CFindResponse.fromRequest(request);
      const elements = request.getDataset()?.getElements() ?? {};
      const level = levelOf(elements);
      if (!this.allows('find') || !level) {
        // 0xA700 refused for an unknown caller; 0xA900 identifier does not match the SOP class
        final.setStatus(level ? 0xa700 : 0xa900);
        callback([final]);
        return;
      }
      answerFind(core, config, level, elements).then(
        (answers) => {
          const pending = answers.map((answer) => {
            const response = CFindResponse.fromRequest(request);
            response.setDataset(new Dataset(answer));
            response.setStatus(Status.Pending);
            return response;
          });
          final.setStatus(Status.Success);
          callback([...pending, final]);
        },
        (error: Error) => {
          logger.warn({ err: error }, 'C-FIND SCP failed');
          final.setStatus(0xc000);
          callback([final]);
        },
      );
    }

    override cMoveRequest(request: InstanceType<typeof requests.CMoveRequest>, callback: (responses: Array<InstanceType<typeof CMoveResponse>>) => void): void {
      const final = CMoveResponse.fromRequest(request);
      const elements = request.getDataset()?.getElements() ?? {};
      const level = levelOf(elements);
      const destination = String(request.getCommandDataset().getElement('MoveDestination') ?? '').trim();
      const target = modalities.byAet(destination);
      if (!this.allows('move') || !level) {
        final.setStatus(level ? 0xa701 : 0xa900);
        callback([final]);
        return;
      }
      if (!target) {
        final.setStatus(Status.MoveDestinationUnknown);
        callback([final]);
        return;
      }
      const originator = { aet: this.callingAet, messageId: request.getMessageId() };
      performMove(context, level, elements, target.modality, originator).then(
        ({ completed, failed }) => {
          final.setStatus(failed > 0 ? 0xb000 : Status.Success);
          final.setCompleted(completed);
          final.setFailures(failed);
          final.setWarnings(0);
          final.setRemaining(0);
          callback([final]);
        },
        (error: Error) => {
          logger.warn({ err: error, destination }, 'C-MOVE SCP failed');
          // 0xA702: unable to perform the sub-operations
          final.setStatus(0xa702);
          callback([final]);
        },
      );
    }
  };
}

/** The C-FIND answers: one data set per match holding the requested keys, filled from the index (or the first file). */
async function answerFind(core: EmbeddedCore, config: GatewayConfig, level: ResourceLevel, elements: NaturalizedElements): Promise<NaturalizedElements[]> {
  const keys = attributeKeys(elements).filter((key) => !ANSWER_OWN_KEYS.has(key) && tagOfKey(key) !== undefined && tagToKeyword(tagOfKey(key) as string) === key);
  // the unique keys of the level and above are always answered (the caller needs them to retrieve)
  for (const upper of LEVELS.slice(levelIndex(level) === 0 ? 0 : 1, levelIndex(level) + 1)) {
    const keyword = tagToKeyword(LEVEL_UID_TAG[upper]) as string;
    if (!keys.includes(keyword)) keys.push(keyword);
  }
  const tags = keys.map((key) => tagOfKey(key) as string).filter((tag) => vrOfTag(tag) !== 'SQ');
  const matches = await core.find({ Level: level, Query: coreQuery(elements), Expand: true, RequestedTags: tags, ResponseContent: ['MainDicomTags'] });
  return matches.map((match) => {
    const answer: NaturalizedElements = {
      SpecificCharacterSet: 'ISO_IR 192',
      QueryRetrieveLevel: elements.QueryRetrieveLevel,
      RetrieveAETitle: config.dicomAet,
    };
    for (const tag of tags) {
      const keyword = tagToKeyword(tag) as string;
      answer[keyword] = naturalValue(match.RequestedTags?.[keyword] ?? '');
    }
    return answer;
  });
}

/** C-MOVE: the instances the identifier selects, sent to the destination in one association. */
async function performMove(
  context: ScpContext,
  level: ResourceLevel,
  elements: NaturalizedElements,
  destination: { aet: string; host: string; port: number },
  originator: { aet: string; messageId: number },
): Promise<{ completed: number; failed: number }> {
  const { core, config } = context;
  // only the unique keys select what to move (PS3.4 C.4.2.1.4.1)
  const query: Record<string, string> = {};
  for (const upper of LEVELS.slice(0, levelIndex(level) + 1)) {
    const tag = LEVEL_UID_TAG[upper];
    const text = elementText(elements[tagToKeyword(tag) as string]);
    if (text) query[toOrthancTag(tag)] = text;
  }
  if (Object.keys(query).length === 0) throw new Error('the C-MOVE identifier has no unique key');
  const ids = await core.findIds({ Level: level, Query: query });
  const instances: Array<{ id: string; path: string }> = [];
  for (const id of ids) for (const instance of (await core.getInstances(level, id)) ?? []) instances.push({ id: instance.ID, path: core.instanceFilePath(instance.ID) });
  const accepted = await storeFiles(
    destination,
    instances.map((i) => i.path),
    { localAet: config.dicomAet, moveOriginator: originator },
  );
  if (config.logExportedResources) instances.forEach((instance, n) => accepted[n] && logExportedInstance(core, instance.id, destination.aet));
  const completed = accepted.filter(Boolean).length;
  return { completed, failed: accepted.length - completed };
}

/** The listening DICOM server; one SCP per connection, every connection closed with the server. */
export class DicomServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<Socket>();

  constructor(context: ScpContext) {
    const GatewayScp = scpClass(context);
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      // dcmjs-dimse's own Server does the same: the SCP wraps the accepted socket
      const scp = new GatewayScp(socket, { connectTimeout: 600_000, associationTimeout: 30_000, pduTimeout: 600_000 }) as Scp & { connected: boolean };
      scp.connected = true;
      scp.on('networkError', () => socket.end());
    });
  }

  /** Orthanc's DICOM server listens on every interface; ours, like our HTTP server, only on loopback unless RemoteAccessAllowed. */
  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
