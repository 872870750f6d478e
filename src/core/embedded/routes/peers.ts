/**
 * Orthanc's /peers REST API for the embedded core: list, define (PUT), delete, the remote's /system, and store
 * (instances sent with POST /instances to the peer, synchronously by default or as an "OrthancPeerStore" job).
 */
import { Router, type Request } from 'express';
import { pipeline } from 'node:stream/promises';
import type { GatewayConfig } from '../../../config/gateway-config';
import { TS } from '../../../dicom/transfer-syntax';
import { HttpError } from '../../../server/errors';
import { isAsynchronous, jobsOf, priorityOf, submitJob } from '../../../server/jobs';
import { isOrthancId } from '../../orthanc-ids';
import type { EmbeddedCore } from '../embedded-core';
import { dicomNetworkOf } from '../dicom-network/dicom-network';
import { instanceFilesOf } from '../dicom-network/instance-files';
import { logExportedResource } from '../dicom-network/exported-resources';
import { PeerRegistry, publicPeerJson } from '../peers/peer-registry';
import { peerRequest, type PeerTarget } from '../peers/peer-client';
import { peerStoreWork } from '../peers/peer-store';
import { anyBodyAsText, jsonBody } from './tools';

type Body = Record<string, unknown>;

/** What GET /peers/{name} lists in Orthanc 1.10. */
const OPERATIONS = ['configuration', 'store', 'store-straight', 'system'];

const TRANSFER_SYNTAXES: ReadonlySet<string> = new Set(Object.values(TS));

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function badFormat(details: string): HttpError {
  return new HttpError(400, 'Bad file format', details);
}

const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

/** The body of POST /peers/{name}/store: one identifier (plain text or a JSON string), a JSON list, or { Resources, ... }. */
function parseStoreBody(req: Request): { resources: string[]; options: Body } {
  const text = typeof req.body === 'string' ? req.body.trim() : '';
  if (text === '') throw badFormat('Must provide a JSON value');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text; // Orthanc: a body that is not JSON is one identifier
  }
  if (typeof body === 'string') return { resources: [body], options: {} };
  if (isStringList(body)) return { resources: body, options: {} };
  if (isObject(body)) {
    if (!isStringList(body.Resources)) throw badFormat('JSON field "Resources" must contain an array');
    return { resources: body.Resources, options: body };
  }
  throw badFormat('The body must be an identifier, a list of identifiers or an object with "Resources"');
}

function transcodeOf(options: Body): string | undefined {
  const value = options.Transcode;
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !TRANSFER_SYNTAXES.has(value)) throw badFormat(`Unknown transfer syntax UID: ${String(value)}`);
  return value;
}

function compressOf(options: Body): boolean {
  const value = options.Compress ?? false;
  if (typeof value !== 'boolean') throw badFormat('Field "Compress" must be true or false');
  return value;
}

export function peerRoutes(core: EmbeddedCore): Router {
  const router = Router();
  // the native routes only receive the core: its configuration comes with the DICOM network app.ts attaches to it
  const configOf = (): GatewayConfig => {
    const network = dicomNetworkOf(core);
    if (!network) throw new HttpError(503, 'The Orthanc peers are not available for this core');
    return network.config;
  };
  let registry: PeerRegistry | undefined;
  const peers = (): PeerRegistry => (registry ??= new PeerRegistry(configOf().orthancPeers));
  const targetOf = (name: string): PeerTarget => ({ name, peer: peers().require(name) });

  router.get('/peers', (req, res) => {
    const known = peers();
    if (req.query.expand === undefined) res.json(known.names());
    else res.json(Object.fromEntries(known.names().map((name) => [name, publicPeerJson(known.require(name))])));
  });

  router.get('/peers/:name', (req, res) => {
    peers().require(req.params.name);
    res.json(OPERATIONS);
  });

  router.get('/peers/:name/configuration', (req, res) => {
    res.json(publicPeerJson(peers().require(req.params.name)));
  });

  // Orthanc answers PUT and DELETE with an empty text/plain body
  router.put('/peers/:name', anyBodyAsText, (req, res) => {
    peers().define(req.params.name, jsonBody(req));
    res.type('text/plain').send('');
  });

  router.delete('/peers/:name', (req, res) => {
    peers().delete(req.params.name);
    res.type('text/plain').send('');
  });

  router.get('/peers/:name/system', async (req, res) => {
    const response = await peerRequest(configOf(), targetOf(req.params.name), { method: 'GET', path: 'system' });
    res.type('application/json');
    await pipeline(response.body, res);
  });

  // the request body (one DICOM file) streams to the peer's POST /instances; its answer comes back as is
  router.post('/peers/:name/store-straight', async (req, res) => {
    const target = targetOf(req.params.name);
    const length = req.headers['content-length'];
    const headers = { 'content-type': 'application/dicom', ...(length ? { 'content-length': length } : {}) };
    const response = await peerRequest(configOf(), target, { method: 'POST', path: 'instances', headers, body: req });
    res.type('application/json');
    await pipeline(response.body, res);
  });

  router.post('/peers/:name/store', anyBodyAsText, async (req, res) => {
    const config = configOf();
    const target = targetOf(req.params.name);
    const { resources, options } = parseStoreBody(req);
    // every check before anything is logged or sent: a bad request is a 400, not a failed job
    const priority = priorityOf(options);
    const transcode = transcodeOf(options);
    const compress = compressOf(options);
    const invalid = resources.find((id) => !isOrthancId(id));
    if (invalid !== undefined) throw badFormat(`This string is not a valid Orthanc identifier: ${invalid}`);
    const instances = (await instanceFilesOf(core, resources)).map((file) => file.id);
    // as Orthanc: one row per requested resource, when the request is accepted (whatever the transfer's outcome)
    if (config.logExportedResources) {
      for (const id of resources) {
        const level = core.levelOfResource(id);
        if (level) logExportedResource(core, level, id, target.name);
      }
    }
    const work = peerStoreWork(core, config, target, { resources, instances, transcode, compress });
    if (isAsynchronous(options)) {
      res.json(submitJob(jobsOf(core), { type: 'OrthancPeerStore', priority, work }));
      return;
    }
    // synchronous: a client that hangs up stops the transfer
    const controller = new AbortController();
    res.once('close', () => controller.abort());
    res.json(await work({ signal: controller.signal, progress: () => undefined, setContent: () => undefined }));
  });

  return router;
}
