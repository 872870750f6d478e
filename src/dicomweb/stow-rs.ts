/**
 * STOW-RS (PS3.18 §10.5): POST {Root}studies and POST {Root}studies/{study}.
 *
 * Each part is handed to the core while the next part is still being received: a part of at most
 * KEEP_WHOLE_BYTES stays in memory (`storeInstance({buffer})`: the core writes it once, in its final
 * place), a larger one streams to a temporary file as it arrives (`storeInstance({file})` moves or
 * deletes it). Memory stays bounded whatever the body size, and outcomes are kept in request order.
 *
 * Differences with the reference plugin (1.7), where it departs from PS3.18 or is lossy:
 *  - a part that is not DICOM, empty or cut short is listed in FailedSOPSequence (0xC000) and the
 *    other parts are still stored (202); the plugin drops it silently and answers 400;
 *  - multipart/form-data and single application/dicom bodies are accepted, and gzip/deflate bodies;
 *  - an unacceptable Accept header is a 406 (the plugin falls back to JSON);
 *  - see stow-response.ts for the response data set itself.
 */
import { Router, type Request, type Response } from 'express';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { DicomWebContext } from './dicomweb-router';
import { CoreError, type NativeCore } from '../core/native-model';
import { EmbeddedCore } from '../core/embedded/embedded-core';
import { HttpError } from '../server/errors';
import { logger } from '../server/logger';
import { negotiateMediaType, type MediaOffer } from '../dicom/media-types';
import { DicomParseError } from '../dicom/dicom-file';
import { identifyInstance, scanIdentifiers, type InstanceIdentifiers } from '../dicom/dicom-identifiers';
import { isOutOfSpace, readFileHead } from '../core/embedded/storage-area';
import { publicBaseUrl } from './public-url';
import { bodyFraming, bodyParts, checkContentEncoding, decodedBody, type BodyPart } from './stow-body';
import { givePartBuffer, PART_BUFFER_BYTES, takePartBuffer } from './stow-part-buffers';
import {
  FailureReason,
  serializeStowResponse,
  stowHttpStatus,
  stowResponseDataset,
  type FailedOutcome,
  type PartOutcome,
  type StowResponseFormat,
} from './stow-response';

/** Bytes of a large part kept in memory while it streams to disk, to read its identifiers without a re-read. */
const HEAD_BYTES = 64 * 1024;
/**
 * A part no larger than this is never written to a temporary file: the core gets its bytes, which it writes once
 * (no temporary file to create, write, close and rename) and hashes without reading anything back.
 */
const KEEP_WHOLE_BYTES = PART_BUFFER_BYTES;
/** dcmjs reads at most this much of a file whose header does not fit the head (deflated data sets). */
const MAX_HEADER_READ = 64 * 1024 * 1024;
/** Parts received but not yet stored; bounds the memory and temporary disk space of one request. */
const MAX_PENDING_STORES = 4;

const RESPONSE_OFFERS: readonly MediaOffer[] = [
  { mediaType: 'application/dicom+json' },
  { mediaType: 'application/json' },
  { mediaType: 'application/dicom+xml' },
  { mediaType: 'application/xml' },
  { mediaType: 'text/xml' },
];

/** Where a part is written before the core takes it: the embedded core's own tmp/ (same file system: the move is a rename). */
export function temporaryPartPath(core: NativeCore): string {
  return core instanceof EmbeddedCore ? core.storage.newTemporaryPath() : path.join(os.tmpdir(), `dicomweb-stow-${randomUUID()}.dcm`);
}

export function stowRsRouter(context: DicomWebContext): Router {
  const router = Router();
  const handler = (req: Request, res: Response): Promise<void> => handleStow(context, req, res);
  router.post('/studies', handler);
  router.post('/studies/:study', handler);
  return router;
}

function responseFormat(req: Request): { format: StowResponseFormat; mediaType: string } {
  const negotiated = negotiateMediaType(req.headers.accept, RESPONSE_OFFERS);
  if (negotiated.kind === 'malformed') throw new HttpError(400, 'Malformed Accept header', negotiated.message);
  if (negotiated.kind === 'not-acceptable') {
    throw new HttpError(406, 'STOW-RS answers application/dicom+json or application/dicom+xml', negotiated.message);
  }
  const mediaType = negotiated.mediaType;
  return { format: mediaType.endsWith('json') ? 'json' : 'xml', mediaType: mediaType === 'text/xml' ? 'application/dicom+xml' : mediaType };
}

async function handleStow(context: DicomWebContext, req: Request, res: Response): Promise<void> {
  try {
    await storeRequest(context, req, res);
  } catch (error) {
    releaseBody(req, res);
    throw error;
  }
}

/**
 * Lets go of what is left of the request body once the answer is decided: bytes already received are
 * dropped, and a connection whose body is still arriving is closed after the answer rather than reused
 * (its next request would sit behind the unread rest).
 */
function releaseBody(req: Request, res: Response): void {
  if (!req.complete && !res.headersSent) res.setHeader('Connection', 'close');
  req.unpipe();
  req.resume();
}

async function storeRequest(context: DicomWebContext, req: Request, res: Response): Promise<void> {
  // everything that can be refused is checked before the body is read
  const { format, mediaType } = responseFormat(req);
  const framing = bodyFraming(req.headers['content-type']);
  checkContentEncoding(req.headers['content-encoding']);
  const expectedStudy = typeof req.params.study === 'string' ? req.params.study : undefined;

  const session = new StowSession(context.core, expectedStudy);
  const body = decodedBody(req, req.headers['content-encoding']);
  let bodyError: Error | undefined;
  try {
    for await (const part of bodyParts(framing, body, req.headers)) await session.receive(part);
  } catch (error) {
    if (error instanceof HttpError) {
      await session.finish();
      throw error;
    }
    // malformed or cut short: what came before stays stored and listed
    bodyError = error as Error;
  }
  const outcomes = await session.finish();

  if (res.destroyed || req.socket.destroyed) {
    logger.info({ url: req.originalUrl, parts: outcomes.length }, 'STOW-RS client went away before the answer');
    return;
  }
  if (outcomes.length === 0) {
    throw new HttpError(400, bodyError ? 'Malformed STOW-RS request body' : 'The STOW-RS request contains no DICOM instance', bodyError?.message);
  }
  const dataset = stowResponseDataset(outcomes, publicBaseUrl(req, context.config));
  releaseBody(req, res);
  res.status(stowHttpStatus(outcomes)).type(mediaType).send(serializeStowResponse(dataset, format));
}

/**
 * A part received complete: its bytes when small (`contents`, in `buffer` from stow-part-buffers.ts, given back once
 * stored), else its temporary file; and its first bytes either way.
 */
type WrittenPart = { size: number; head: Buffer } & ({ contents: Buffer; buffer: Buffer } | { file: string });

/** One request: receives parts in order, stores each as soon as it is complete, remembers the outcomes. */
class StowSession {
  private readonly outcomes: PartOutcome[] = [];
  private readonly pending: Array<Promise<void>> = [];
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly core: NativeCore,
    private readonly expectedStudy: string | undefined,
  ) {}

  /** Never throws: whatever goes wrong with one part is that part's outcome. */
  async receive(part: BodyPart): Promise<void> {
    const index = this.outcomes.length;
    this.outcomes.push(failed(FailureReason.ProcessingFailure, 'not processed'));
    try {
      await this.receiveAt(index, part);
    } catch (error) {
      logger.error({ err: error }, 'STOW-RS: unexpected error while receiving a part');
      part.body.resume();
      this.outcomes[index] = failed(FailureReason.ProcessingFailure, (error as Error).message);
    }
  }

  private async receiveAt(index: number, part: BodyPart): Promise<void> {
    const settle = (outcome: PartOutcome): void => {
      this.outcomes[index] = outcome;
      if (outcome.kind === 'failed') logger.warn({ part: index, reason: outcome.reason, sop: outcome.sopInstanceUid }, `STOW-RS part refused: ${outcome.message}`);
    };

    if (part.mediaType !== '' && part.mediaType !== 'application/dicom' && part.mediaType !== 'application/octet-stream') {
      part.body.resume();
      settle(failed(FailureReason.CannotUnderstand, `part of type ${part.mediaType} is not application/dicom`));
      return;
    }
    const written = await writePart(part.body, () => temporaryPartPath(this.core));
    if ('failure' in written) {
      // name the instance when enough of it arrived
      const ids = scanIdentifiers(written.head);
      settle(typeof ids === 'object' ? { ...written.failure, sopClassUid: ids.sopClassUid, sopInstanceUid: ids.sopInstanceUid } : written.failure);
      return;
    }
    const checked = await this.check(part, written);
    if (checked.kind === 'failed') {
      if ('file' in written) await removeFile(written.file);
      else givePartBuffer(written.buffer);
      settle(checked);
      return;
    }
    // the embedded core stores on this thread: one store after the other while the next part is received; a remote
    // Orthanc stores on threads of its own, so there up to MAX_PENDING_STORES run at once (outcomes stay in part order)
    if (this.pending.length >= MAX_PENDING_STORES) await this.pending.shift();
    const turn = this.core.kind === 'remote' ? Promise.resolve() : this.queue;
    const task = turn.then(() => this.store(written, checked.ids).then(settle));
    this.queue = Promise.all([this.queue, task]).then(() => undefined);
    this.pending.push(task);
  }

  /** Waits for every store; the outcomes in request order. */
  async finish(): Promise<PartOutcome[]> {
    await this.queue;
    return this.outcomes;
  }

  private async check(part: BodyPart, written: WrittenPart): Promise<{ kind: 'ok'; ids: Required<InstanceIdentifiers> } | FailedOutcome> {
    let ids: InstanceIdentifiers;
    try {
      // a part in memory is whole: its identifiers never need more bytes than it has
      ids = await identifyInstance('contents' in written ? written.contents : written.head, written.size, (bytes) =>
        bytes > MAX_HEADER_READ || !('file' in written) ? Promise.resolve(undefined) : readFileHead(written.file, bytes),
      );
    } catch (error) {
      if (error instanceof DicomParseError) return failed(FailureReason.CannotUnderstand, error.message);
      throw error;
    }
    const { sopClassUid, sopInstanceUid, studyUid, seriesUid, transferSyntax } = ids;
    if (!sopClassUid || !sopInstanceUid || !studyUid || !seriesUid) {
      const missing = ['SOPClassUID', 'SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID'].filter(
        (_, i) => ![sopClassUid, sopInstanceUid, studyUid, seriesUid][i],
      );
      return failed(FailureReason.CannotUnderstand, `missing ${missing.join(', ')}`, ids);
    }
    if (part.transferSyntax !== undefined && part.transferSyntax !== transferSyntax) {
      return failed(FailureReason.DataSetMismatch, `declared transfer syntax ${part.transferSyntax}, the file has ${transferSyntax}`, ids);
    }
    if (this.expectedStudy !== undefined && studyUid !== this.expectedStudy) {
      // PS3.18 §10.5.1: only instances of the study in the URL; 0110H as the plugin does
      return failed(FailureReason.ProcessingFailure, `instance of study ${studyUid}, not of ${this.expectedStudy}`, ids);
    }
    return { kind: 'ok', ids: { sopClassUid, sopInstanceUid, studyUid, seriesUid, transferSyntax } };
  }

  private async store(written: WrittenPart, ids: Required<InstanceIdentifiers>): Promise<PartOutcome> {
    try {
      // AlreadyStored is a success too: the instance is there, as the client wants
      await this.core.storeInstance('file' in written ? { file: written.file } : { buffer: written.contents });
      return { kind: 'stored', ...ids };
    } catch (error) {
      // the core owns the file once called; this only covers a core that failed before taking it
      if ('file' in written) await removeFile(written.file);
      if (error instanceof CoreError) {
        if (error.httpStatus === 507 || error.httpStatus === 413) return failed(FailureReason.OutOfResources, error.message, ids);
        if (error.httpStatus === 400) return failed(FailureReason.CannotUnderstand, error.message, ids);
        return failed(FailureReason.ProcessingFailure, error.message, ids);
      }
      if (isOutOfSpace(error)) return failed(FailureReason.OutOfResources, (error as Error).message, ids);
      logger.error({ err: error }, 'STOW-RS: the core could not store an instance');
      return failed(FailureReason.ProcessingFailure, (error as Error).message, ids);
    } finally {
      // stored or refused, the core reads the bytes no more
      if ('buffer' in written) givePartBuffer(written.buffer);
    }
  }
}

function failed(reason: number, message: string, ids?: InstanceIdentifiers): FailedOutcome {
  return { kind: 'failed', reason, message, sopClassUid: ids?.sopClassUid, sopInstanceUid: ids?.sopInstanceUid };
}

async function removeFile(file: string): Promise<void> {
  await fsp.rm(file, { force: true }).catch(() => undefined);
}

/**
 * Receives one part: kept in memory while it is no larger than KEEP_WHOLE_BYTES, else streamed to a temporary file
 * (`newFile()`) from then on, keeping its first bytes. On any failure (body cut short, disk full) a file is removed
 * once its descriptor is closed, and the failure says why. The source is never destroyed here: the multipart parser
 * skips an abandoned part, and a single-part request can still be answered.
 */
function writePart(body: Readable, newFile: () => string): Promise<WrittenPart | { failure: FailedOutcome; head: Buffer }> {
  return new Promise((resolve) => {
    // the part while it is small enough to keep; given back once it is not needed here
    let buffer: Buffer | undefined = takePartBuffer();
    let head: Buffer | undefined;
    let size = 0;
    let out: fs.WriteStream | undefined;
    let file = '';
    let failure: FailedOutcome | undefined;

    /** Copies the head out of the pooled buffer, which goes back. */
    const dropBuffer = (): void => {
      if (!buffer) return;
      head = Buffer.from(buffer.subarray(0, Math.min(size, HEAD_BYTES)));
      givePartBuffer(buffer);
      buffer = undefined;
    };
    const finish = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onBodyError);
      body.off('close', onBodyClose);
      if (!failure && size === 0) failure = failed(FailureReason.CannotUnderstand, 'the part is empty');
      if (failure) {
        dropBuffer();
        const outcome = failure;
        const first = head ?? Buffer.alloc(0);
        if (out) void removeFile(file).then(() => resolve({ failure: outcome, head: first }));
        else resolve({ failure: outcome, head: first });
        return;
      }
      if (buffer) {
        const contents = buffer.subarray(0, size);
        resolve({ contents, buffer, size, head: contents });
      } else {
        resolve({ file, size, head: head ?? Buffer.alloc(0) });
      }
    };
    const fail = (outcome: FailedOutcome): void => {
      if (failure) return;
      failure = outcome;
      body.off('data', onData);
      if (!out) return finish();
      // finished once the descriptor is closed
      body.unpipe(out);
      out.destroy();
    };
    const spill = (chunk: Buffer): void => {
      const received = Buffer.concat([(buffer as Buffer).subarray(0, size - chunk.length), chunk]);
      dropBuffer();
      file = newFile();
      out = fs.createWriteStream(file, { highWaterMark: 1 << 20 });
      out.once('error', (error: Error) => {
        fail(failed(isOutOfSpace(error) ? FailureReason.OutOfResources : FailureReason.ProcessingFailure, `cannot write the part: ${error.message}`));
        // drain what is left of this part so that the request can go on
        body.resume();
      });
      out.once('close', finish);
      out.write(received);
      // the chunks after this one (a listener added now does not see the chunk being emitted)
      body.pipe(out);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (out) return;
      if (size > KEEP_WHOLE_BYTES) spill(chunk);
      else chunk.copy(buffer as Buffer, size - chunk.length);
    };
    // a streamed part is complete when its file is closed (pipe() ends it)
    const onEnd = (): void => {
      if (!out) finish();
    };
    const onBodyError = (error: Error): void => fail(failed(FailureReason.CannotUnderstand, `the part is incomplete: ${error.message}`));
    // a source destroyed without an error (a vanished client) must not leave the part waiting forever
    const onBodyClose = (): void => {
      if (!body.readableEnded) onBodyError(new Error('the body was closed before its end'));
    };

    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onBodyError);
    body.once('close', onBodyClose);
  });
}
