/**
 * Orthanc's DICOM network REST API for the embedded core: /modalities (echo, store, query, move) and
 * /queries (answers, retrieve). By default the HTTP answer comes when the association ends; store, move and retrieve
 * also run as jobs ("Synchronous": false or "Asynchronous": true), answering {ID, Path} at once.
 */
import { Router, type Request } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { LEVELS, LEVEL_UID_TAG, levelIndex } from '../../main-dicom-tags';
import { normalizeTag, tagToKeyword } from '../../../dicom/dictionary';
import { HttpError } from '../../../server/errors';
import { isAsynchronous, jobsOf, priorityOf, submitJob, type JobWork } from '../../../server/jobs';
import { anyBodyAsText, jsonBody } from './tools';
import { dicomNetworkOf, type DicomNetwork, type StoredQuery } from '../dicom-network/dicom-network';
import { checkModalityName, modalityJson, parseModalityBody } from '../dicom-network/modality-registry';
import { DimseError, echo, find, move, storeFiles, type Peer } from '../dicom-network/scu';
import { fullJson, naturalValue, simplifiedJson, type NaturalizedElements } from '../dicom-network/dimse-values';
import { instanceFilesOf } from '../dicom-network/instance-files';
import { logExportedInstance } from '../dicom-network/exported-resources';

type Body = Record<string, unknown>;

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An optional JSON object body: empty body = {} (curl -X POST .../echo sends nothing). */
function optionalObject(req: Request): Body {
  const text = typeof req.body === 'string' ? req.body.trim() : '';
  if (text === '') return {};
  const body = jsonBody(req);
  if (!isObject(body)) throw new HttpError(400, 'The request body must be a JSON object');
  return body;
}

function timeoutOf(body: Body): number | undefined {
  const value = body.Timeout;
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new HttpError(400, 'Field "Timeout" must be a non-negative number of seconds');
  return value;
}

function aetField(body: Body, key: string, fallback: string): string {
  const value = body[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.trim() === '' || value.length > 16) throw new HttpError(400, `Field "${key}" must be an AE title of 1 to 16 characters`);
  return value;
}

function levelField(value: unknown): ResourceLevel {
  const text = typeof value === 'string' ? value.trim().toLowerCase() : '';
  const level = text === 'image' ? 'Instance' : LEVELS.find((l) => l.toLowerCase() === text);
  if (!level) throw new HttpError(400, 'Field "Level" must be one of Patient, Study, Series, Instance');
  return level;
}

/** A network failure, as Orthanc names it ("Error in the network protocol"); 502 because the peer failed, not us. */
async function overDimse<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DimseError) throw new HttpError(502, error.message);
    throw error;
  }
}

/** Orthanc's query keys (keyword or "gggg,eeee" -> string) as a naturalized identifier. */
function identifierOf(query: unknown, what: string): NaturalizedElements {
  if (!isObject(query)) throw new HttpError(400, `Field "${what}" must be a JSON object`);
  const elements: NaturalizedElements = {};
  for (const [spelling, value] of Object.entries(query)) {
    const tag = normalizeTag(spelling);
    const keyword = tag && tagToKeyword(tag);
    if (!keyword) throw new HttpError(400, `Unknown DICOM tag in "${what}": ${spelling}`);
    if (typeof value !== 'string') throw new HttpError(400, `The value of ${spelling} in "${what}" must be a string`);
    elements[keyword] = naturalValue(value);
  }
  return elements;
}

/** The unique keys a C-MOVE needs at a level (Study Root hierarchy; PatientID alone at the patient level). */
function uniqueKeys(level: ResourceLevel): string[] {
  const levels = level === 'Patient' ? ['Patient' as const] : LEVELS.slice(1, levelIndex(level) + 1);
  return levels.map((l) => tagToKeyword(LEVEL_UID_TAG[l]) as string);
}

function retrieveIdentifier(answer: NaturalizedElements, level: ResourceLevel): NaturalizedElements {
  return Object.fromEntries(uniqueKeys(level).filter((key) => answer[key] !== undefined).map((key) => [key, answer[key]]));
}

/** Runs `work` now and answers its result, or as a job answering {ID, Path}, as the body asks. */
function runOrSubmit(core: EmbeddedCore, body: Body, type: string, work: JobWork): Promise<Record<string, unknown>> | Record<string, unknown> {
  if (!isAsynchronous(body)) return work({ signal: new AbortController().signal, progress: () => undefined, setContent: () => undefined });
  return submitJob(jobsOf(core), { type, priority: priorityOf(body), work });
}

export function modalityRoutes(core: EmbeddedCore): Router {
  const router = Router();
  const network = (): DicomNetwork => {
    const attached = dicomNetworkOf(core);
    if (!attached) throw new HttpError(503, 'The DICOM network is not available for this core');
    return attached;
  };
  const peerOf = (name: string): Peer => network().modalities.require(name);

  // the transfer syntaxes the DICOM server accepts: patterns in, the matching syntaxes out (as Orthanc 1.10)
  router.get('/tools/accepted-transfer-syntaxes', (_req, res) => {
    res.json(network().acceptedSyntaxes.list());
  });
  router.put('/tools/accepted-transfer-syntaxes', anyBodyAsText, (req, res) => {
    const body = jsonBody(req);
    const patterns = typeof body === 'string' ? [body] : body;
    if (!Array.isArray(patterns) || !patterns.every((p): p is string => typeof p === 'string')) {
      throw new HttpError(400, 'Bad file format', 'Expected a transfer syntax UID pattern or a list of them');
    }
    network().acceptedSyntaxes.set(patterns);
    res.json(network().acceptedSyntaxes.list());
  });

  router.get('/modalities', (req, res) => {
    const { modalities } = network();
    if (req.query.expand === undefined) {
      res.json(modalities.names());
      return;
    }
    res.json(Object.fromEntries(modalities.names().map((name) => [name, modalityJson(modalities.require(name))])));
  });

  router.get('/modalities/:name', (req, res) => {
    peerOf(req.params.name);
    res.json(['configuration', 'echo', 'move', 'query', 'store']);
  });

  router.get('/modalities/:name/configuration', (req, res) => {
    res.json(modalityJson(network().modalities.require(req.params.name)));
  });

  router.put('/modalities/:name', anyBodyAsText, (req, res) => {
    checkModalityName(req.params.name);
    network().modalities.set(req.params.name, parseModalityBody(jsonBody(req)));
    res.json({});
  });

  router.delete('/modalities/:name', (req, res) => {
    network().modalities.delete(req.params.name);
    res.json({});
  });

  router.post('/modalities/:name/echo', anyBodyAsText, async (req, res) => {
    const peer = peerOf(req.params.name);
    const body = optionalObject(req);
    await overDimse(() => echo(peer, { localAet: network().aet, timeout: timeoutOf(body) }));
    res.json({});
  });

  router.post('/modalities/:name/store', anyBodyAsText, async (req, res) => {
    const net = network();
    const modality = net.modalities.require(req.params.name);
    const { resources, options } = parseStoreBody(req);
    const localAet = aetField(options, 'LocalAet', net.aet);
    const files = await instanceFilesOf(core, resources);
    const originatorId = options.MoveOriginatorID;
    if (originatorId !== undefined && (typeof originatorId !== 'number' || !Number.isInteger(originatorId) || originatorId < 0 || originatorId > 65535)) {
      throw new HttpError(400, 'Field "MoveOriginatorID" must be an integer between 0 and 65535');
    }
    const originatorAet = options.MoveOriginatorAet === undefined ? undefined : aetField(options, 'MoveOriginatorAet', '');
    const moveOriginator = originatorAet ? { aet: originatorAet, messageId: typeof originatorId === 'number' ? originatorId : 0 } : undefined;
    const timeout = timeoutOf(options); // checked now: a bad field is a 400, not a failed job
    const work: JobWork = async ({ signal, progress }) => {
      const accepted = await overDimse(() =>
        storeFiles(
          modality,
          files.map((f) => f.path),
          { localAet, timeout, moveOriginator, signal, onAnswered: (n) => progress((100 * n) / files.length) },
        ),
      );
      if (net.config.logExportedResources) files.forEach((file, n) => accepted[n] && logExportedInstance(core, file.id, modality.aet));
      const failed = accepted.filter((ok) => !ok).length;
      // as Orthanc's store job: one refused instance fails the whole request unless "Permissive"
      if (failed > 0 && options.Permissive !== true) {
        throw new HttpError(502, `C-STORE to AET "${modality.aet}": ${failed} of ${files.length} instances were refused`);
      }
      return {
        Description: 'REST API',
        FailedInstancesCount: failed,
        InstancesCount: files.length,
        LocalAet: localAet,
        ParentResources: resources,
        RemoteAet: modality.aet,
      };
    };
    res.json(await runOrSubmit(core, options, 'DicomModalityStore', work));
  });

  router.post('/modalities/:name/query', anyBodyAsText, async (req, res) => {
    const net = network();
    const modality = net.modalities.require(req.params.name);
    const body = jsonBody(req);
    if (!isObject(body)) throw new HttpError(400, 'The body of /modalities/{name}/query must be a JSON object');
    const level = levelField(body.Level);
    const query = identifierOf(body.Query ?? {}, 'Query');
    // "Normalize" (default true): make sure the unique keys come back, so that the answers can be retrieved
    if (body.Normalize !== false) for (const key of uniqueKeys(level)) query[key] ??= '';
    const answers = await overDimse(() => find(modality, level, query, { localAet: net.aet, timeout: timeoutOf(body) }));
    const stored = net.addQuery({ modality: req.params.name, level, query, answers });
    res.json({ ID: stored.id, Path: `/queries/${stored.id}` });
  });

  router.post('/modalities/:name/move', anyBodyAsText, async (req, res) => {
    const net = network();
    const modality = net.modalities.require(req.params.name);
    const body = jsonBody(req);
    if (!isObject(body)) throw new HttpError(400, 'The body of /modalities/{name}/move must be a JSON object');
    const level = levelField(body.Level);
    if (!Array.isArray(body.Resources) || body.Resources.length === 0) throw new HttpError(400, 'Field "Resources" must be a non-empty list of objects');
    const identifiers = body.Resources.map((r) => identifierOf(r, 'Resources'));
    const targetAet = aetField(body, 'TargetAet', net.aet);
    const localAet = aetField(body, 'LocalAet', net.aet);
    const timeout = timeoutOf(body);
    const work: JobWork = async ({ signal }) => {
      await overDimse(() => move(modality, level, identifiers, targetAet, { localAet, timeout, signal }));
      return { Description: 'REST API', LocalAet: localAet, Query: identifiers.map(simplifiedJson), RemoteAet: modality.aet, TargetAet: targetAet };
    };
    res.json(await runOrSubmit(core, body, 'DicomMoveScu', work));
  });

  // ------------------------------------------------------------------ /queries

  const queryOf = (id: string): StoredQuery => {
    const stored = network().getQuery(id);
    if (!stored) throw new HttpError(404, `Unknown query: ${id}`);
    return stored;
  };
  const answerOf = (stored: StoredQuery, index: string): NaturalizedElements => {
    const n = /^\d+$/.test(index) ? Number(index) : -1;
    if (n < 0 || n >= stored.answers.length) throw new HttpError(404, `Unknown answer ${index} in query ${stored.id}`);
    return stored.answers[n];
  };
  const contentOf = (req: Request, answer: NaturalizedElements): Record<string, unknown> =>
    req.query.simplify !== undefined || req.query.short !== undefined ? simplifiedJson(answer) : fullJson(answer);

  /** C-MOVE of answers to TargetAet (default: us), answered like Orthanc's retrieve job (or as that job). */
  const retrieve = async (req: Request, stored: StoredQuery, answers: NaturalizedElements[]): Promise<Record<string, unknown>> => {
    const net = network();
    const modality = net.modalities.require(stored.modality);
    const text = typeof req.body === 'string' ? req.body.trim() : '';
    // Orthanc takes either the target AET as plain text or a JSON object { TargetAet, Timeout, ... }
    const body: Body = text === '' ? {} : text.startsWith('{') ? optionalObject(req) : { TargetAet: text };
    const targetAet = aetField(body, 'TargetAet', net.aet);
    const identifiers = answers.map((answer) => retrieveIdentifier(answer, stored.level));
    const timeout = timeoutOf(body);
    const work: JobWork = async ({ signal }) => {
      await overDimse(() => move(modality, stored.level, identifiers, targetAet, { localAet: net.aet, timeout, signal }));
      return { Description: 'REST API', LocalAet: net.aet, Query: identifiers.map(simplifiedJson), RemoteAet: modality.aet, TargetAet: targetAet };
    };
    return runOrSubmit(core, body, 'DicomMoveScu', work);
  };

  router.get('/queries', (_req, res) => {
    res.json(network().queryIds());
  });
  router.get('/queries/:id', (req, res) => {
    queryOf(req.params.id);
    res.json(['answers', 'level', 'modality', 'query', 'retrieve']);
  });
  router.delete('/queries/:id', (req, res) => {
    queryOf(req.params.id);
    network().deleteQuery(req.params.id);
    res.json({});
  });
  router.get('/queries/:id/level', (req, res) => {
    res.type('text/plain').send(queryOf(req.params.id).level);
  });
  router.get('/queries/:id/modality', (req, res) => {
    res.type('text/plain').send(queryOf(req.params.id).modality);
  });
  router.get('/queries/:id/query', (req, res) => {
    res.json(simplifiedJson(queryOf(req.params.id).query));
  });
  router.get('/queries/:id/answers', (req, res) => {
    const stored = queryOf(req.params.id);
    if (req.query.expand === undefined) res.json(stored.answers.map((_a, n) => String(n)));
    else res.json(stored.answers.map((answer) => contentOf(req, answer)));
  });
  router.get('/queries/:id/answers/:n', (req, res) => {
    answerOf(queryOf(req.params.id), req.params.n);
    res.json(['content', 'retrieve']);
  });
  router.get('/queries/:id/answers/:n/content', (req, res) => {
    res.json(contentOf(req, answerOf(queryOf(req.params.id), req.params.n)));
  });
  router.post('/queries/:id/answers/:n/retrieve', anyBodyAsText, async (req, res) => {
    const stored = queryOf(req.params.id);
    res.json(await retrieve(req, stored, [answerOf(stored, req.params.n)]));
  });
  router.post('/queries/:id/retrieve', anyBodyAsText, async (req, res) => {
    const stored = queryOf(req.params.id);
    res.json(await retrieve(req, stored, stored.answers));
  });

  return router;
}

/** POST /modalities/{name}/store: one identifier (plain text or JSON string), a JSON list, or { Resources, ... }. */
function parseStoreBody(req: Request): { resources: string[]; options: Body } {
  const text = typeof req.body === 'string' ? req.body.trim() : '';
  if (text === '') throw new HttpError(400, 'The body of /modalities/{name}/store must name the resources to send');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const isIdList = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');
  if (typeof body === 'string') return { resources: [body], options: {} };
  if (isIdList(body)) return { resources: body, options: {} };
  if (isObject(body)) {
    const resources = typeof body.Resources === 'string' ? [body.Resources] : body.Resources;
    if (!isIdList(resources)) throw new HttpError(400, 'Field "Resources" must be a list of Orthanc identifiers');
    return { resources, options: body };
  }
  throw new HttpError(400, 'The body of /modalities/{name}/store must be an identifier, a list of identifiers or an object');
}
