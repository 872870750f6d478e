/**
 * QIDO-RS (PS3.18 §10.6): SearchForStudies, SearchForSeries, SearchForInstances.
 *
 * One search = one call to the core's find, asking only for the main DICOM tags and the few
 * RequestedTags the answer needs; the DICOM JSON is built once from those strings. Matching rules and
 * the returned attribute set come from qido-query.ts.
 */
import type { Request, RequestHandler, Response, Router } from 'express';
import { LEVEL_TAGS, LEVEL_UID_TAG } from '../core/main-dicom-tags';
import type { FindRequest, Resource } from '../core/native-model';
import { serializeDicomJson, tagValueToAttribute, type DicomJsonDataset } from '../dicom/dicom-json';
import { dicomJsonToXml } from '../dicom/dicom-xml';
import { isGroupLengthTag, normalizeTag, toOrthancTag } from '../dicom/dictionary';
import { negotiateMediaType, type MediaOffer, type NegotiationResult } from '../dicom/media-types';
import { createBoundary, encodeMultipart, multipartContentType } from '../dicom/multipart-writer';
import { HttpError } from '../server/errors';
import type { DicomWebContext } from './dicomweb-router';
import { publicBaseUrl } from './public-url';
import {
  GATEWAY_COMPUTED,
  INSTANCE_AVAILABILITY,
  QidoQueryError,
  RETRIEVE_URL,
  SPECIFIC_CHARACTER_SET,
  parseQidoQuery,
  vrOf,
  type QidoLevel,
  type QidoPath,
  type QidoQuery,
} from './qido-query';

const JSON_OFFER: MediaOffer = { mediaType: 'application/dicom+json' };
const PLAIN_JSON_OFFER: MediaOffer = { mediaType: 'application/json' };
const XML_OFFER: MediaOffer = { mediaType: 'multipart/related', partType: 'application/dicom+xml' };
/** PS3.18 §10.6.2: DICOM JSON is the default; the XML form is one Native DICOM Model part per match. */
const QIDO_OFFERS: readonly MediaOffer[] = [JSON_OFFER, PLAIN_JSON_OFFER, XML_OFFER];

/** The core decodes every value to Unicode, and we write UTF-8. */
const UTF8 = 'ISO_IR 192';

// ---------------------------------------------------------------------------------------------
// Tag spellings of the native model → canonical tags (keywords are looked up once)

const tagCache = new Map<string, string | undefined>();

function tagOfKey(key: string): string | undefined {
  let tag = tagCache.get(key);
  if (tag === undefined && !tagCache.has(key)) {
    tag = normalizeTag(key);
    tagCache.set(key, tag);
  }
  return tag;
}

// ---------------------------------------------------------------------------------------------
// Asking the core

/** Tags the core gives as MainDicomTags (and PatientMainDicomTags for studies) without being asked. */
const MAIN_TAGS: Record<QidoLevel, ReadonlySet<string>> = {
  Study: new Set([...LEVEL_TAGS.Patient.orthanc, ...LEVEL_TAGS.Study.orthanc].map(([tag]) => tag)),
  Series: new Set(LEVEL_TAGS.Series.orthanc.map(([tag]) => tag)),
  Instance: new Set(LEVEL_TAGS.Instance.orthanc.map(([tag]) => tag)),
};

/** UIDs known from the path: returned as they are, never asked from the core. */
function pathValues(path: QidoPath): Map<string, string> {
  const known = new Map<string, string>();
  if (path.study !== undefined) known.set(LEVEL_UID_TAG.Study, path.study);
  if (path.series !== undefined) known.set(LEVEL_UID_TAG.Series, path.series);
  return known;
}

function findRequestOf(query: QidoQuery, shape: AnswerShape, caseSensitive: boolean): FindRequest {
  const constraints: Record<string, string> = {};
  for (const [tag, value] of query.constraints) constraints[toOrthancTag(tag)] = value;
  const request: FindRequest = {
    Level: query.level,
    Query: constraints,
    Expand: true,
    // fuzzy matching of person names (§8.3.4.2) is implementation-defined: here it ignores case
    CaseSensitive: caseSensitive && !query.fuzzy,
    ResponseContent: ['MainDicomTags'],
    // a copy: the core may keep what it is given
    RequestedTags: [...shape.requested],
  };
  if (query.offset > 0) request.Since = query.offset;
  return request;
}

/**
 * The page size a search may answer: the client's limit, but never more than the server's maximum.
 * `askCore` is one more when the cap (not the client) bounds the page, so that a cut answer can be told apart.
 */
export function pageLimits(clientLimit: number, maxResults: number): { page: number; askCore: number; capped: boolean } {
  const capped = clientLimit === 0 || clientLimit > maxResults;
  const page = capped ? maxResults : clientLimit;
  return { page, askCore: capped ? page + 1 : page, capped };
}

/** PS3.18 §8.3.4.4: a server that returns fewer matches than exist (and than were asked for) says so. */
function truncationWarning(req: Request): string {
  // warn-agent is host[:port] (RFC 7234 §5.5); anything else in a Host header would make an invalid header
  const host = (req.get('host') ?? '').replace(/[^A-Za-z0-9.:[\]-]/g, '') || 'dicomweb-gateway';
  return `299 ${host} "The number of results exceeded the maximum supported by the server. Additional results can be requested."`;
}

// ---------------------------------------------------------------------------------------------
// Building the answer

/** What every search of one shape (level, UIDs in the path, returned attributes) shares: worked out once. */
interface AnswerShape {
  wanted: ReadonlySet<string>;
  /** RequestedTags for the core (Orthanc spelling). */
  requested: readonly string[];
  /** Every attribute an answer can hold, in ascending tag order (the order of DICOM JSON), with its VR. */
  attributes: ReadonlyArray<readonly [string, string]>;
}

const shapes = new Map<string, AnswerShape>();

function answerShapeOf(query: QidoQuery, known: ReadonlyMap<string, string>): AnswerShape {
  const key = `${query.level}|${[...known.keys()].join(',')}|${query.returnTags.join(',')}`;
  let shape = shapes.get(key);
  if (!shape) {
    const main = MAIN_TAGS[query.level];
    const requested = query.returnTags.filter((tag) => !GATEWAY_COMPUTED.has(tag) && !main.has(tag) && !known.has(tag));
    // an answer holds the wanted attributes, the path's UIDs and the ones the gateway fills in (see resourceToDicomJson)
    const tags = new Set([...query.returnTags, ...known.keys(), SPECIFIC_CHARACTER_SET, RETRIEVE_URL]);
    shape = {
      wanted: new Set(query.returnTags),
      requested: requested.map(toOrthancTag),
      attributes: [...tags]
        .filter((tag) => !isGroupLengthTag(tag))
        .sort()
        .map((tag) => [tag, vrOf(tag)] as const),
    };
    // the shapes clients use are few; a client making up new ones each time only empties the cache
    if (shapes.size >= 1000) shapes.clear();
    shapes.set(key, shape);
  }
  return shape;
}

interface AnswerContext {
  query: QidoQuery;
  shape: AnswerShape;
  known: ReadonlyMap<string, string>;
  baseUrl: string;
}

function copyValues(target: Map<string, string>, source: Record<string, string> | undefined, wanted: ReadonlySet<string>): void {
  if (!source) return;
  for (const key of Object.keys(source)) {
    const tag = tagOfKey(key);
    if (tag !== undefined && wanted.has(tag)) target.set(tag, source[key]);
  }
}

/** WADO-RS URL of a match (PS3.18 §10.6.3.3: Retrieve URL). */
function retrieveUrl(level: QidoLevel, values: ReadonlyMap<string, string>, baseUrl: string): string {
  let url = `${baseUrl}studies/${values.get(LEVEL_UID_TAG.Study) ?? ''}`;
  if (level !== 'Study') url += `/series/${values.get(LEVEL_UID_TAG.Series) ?? ''}`;
  if (level === 'Instance') url += `/instances/${values.get(LEVEL_UID_TAG.Instance) ?? ''}`;
  return url;
}

function resourceToDicomJson(resource: Resource, context: AnswerContext): DicomJsonDataset {
  const { wanted, attributes } = context.shape;
  const values = new Map<string, string>(context.known);
  copyValues(values, resource.MainDicomTags, wanted);
  if (resource.Type === 'Study') copyValues(values, resource.PatientMainDicomTags, wanted);
  copyValues(values, resource.RequestedTags, wanted);
  values.set(SPECIFIC_CHARACTER_SET, UTF8);
  if (wanted.has(INSTANCE_AVAILABILITY)) values.set(INSTANCE_AVAILABILITY, 'ONLINE');
  values.set(RETRIEVE_URL, retrieveUrl(context.query.level, values, context.baseUrl));
  // the attributes in tag order straight from the shape: no per-answer tag parsing, VR lookup or sorting
  const dataset: DicomJsonDataset = {};
  for (const [tag, vr] of attributes) {
    const value = values.get(tag);
    if (value !== undefined || values.has(tag)) dataset[tag] = tagValueToAttribute(vr, value);
  }
  return dataset;
}

/** A key JavaScript objects list before all others ("60000010"): JSON.stringify would break the tag order. */
function isArrayIndexLike(tag: string): boolean {
  return /^[1-9]\d*$/.test(tag) && Number(tag) < 2 ** 32 - 1;
}

/**
 * serializeDicomJson, or JSON.stringify when it gives the same text: attributes are built in tag order
 * and no tag of the answer is array-index-like. The generic serializer is ~15x slower, and an all-studies
 * search is mostly serialization (unit-tested to be byte-identical).
 */
export function serializeQidoAnswer(datasets: readonly DicomJsonDataset[], tags: readonly string[]): string {
  return tags.some(isArrayIndexLike) ? serializeDicomJson(datasets) : JSON.stringify(datasets);
}

async function sendDatasets(res: Response, datasets: readonly DicomJsonDataset[], mediaType: string, tags: readonly string[]): Promise<void> {
  res.status(200);
  if (mediaType !== XML_OFFER.mediaType) {
    // encoded once, length known: a string body would be measured again by compression and by Node before being encoded
    const body = Buffer.from(serializeQidoAnswer(datasets, tags), 'utf8');
    res.setHeader('Content-Type', mediaType);
    res.setHeader('Content-Length', body.length);
    res.end(body);
    return;
  }
  const boundary = createBoundary();
  const parts = datasets.map((dataset) => ({
    headers: { contentType: 'application/dicom+xml; charset=utf-8' },
    body: Buffer.from(dicomJsonToXml(dataset), 'utf8'),
  }));
  const chunks: Buffer[] = [];
  for await (const chunk of encodeMultipart(boundary, parts)) chunks.push(chunk);
  res.setHeader('Content-Type', multipartContentType(boundary, 'application/dicom+xml'));
  res.end(Buffer.concat(chunks));
}

// ---------------------------------------------------------------------------------------------
// Routes

/** The query string as ordered key/value pairs (Express's parser would merge and nest them). */
function queryPairs(req: Request): Array<[string, string]> {
  const at = req.url.indexOf('?');
  return at < 0 ? [] : [...new URLSearchParams(req.url.slice(at + 1))];
}

function acceptQueryOf(pairs: ReadonlyArray<[string, string]>): string | undefined {
  const values = pairs.filter(([key]) => key.toLowerCase() === 'accept').map(([, value]) => value);
  return values.length > 0 ? values.join(',') : undefined;
}

const negotiations = new Map<string, NegotiationResult>();

/** negotiateMediaType over the QIDO offers, remembered: clients send the same few Accept headers again and again. */
function negotiateQido(accept: string | undefined, acceptQuery: string | undefined): NegotiationResult {
  const key = `${accept ?? '\0'}\n${acceptQuery ?? '\0'}`;
  let negotiated = negotiations.get(key);
  if (!negotiated) {
    negotiated = negotiateMediaType(accept, QIDO_OFFERS, { acceptQuery });
    if (negotiations.size >= 1000) negotiations.clear();
    negotiations.set(key, negotiated);
  }
  return negotiated;
}

function search(context: DicomWebContext, level: QidoLevel, pathOf: (req: Request) => QidoPath): RequestHandler {
  return async (req, res) => {
    const pairs = queryPairs(req);
    const negotiated = negotiateQido(req.get('accept'), acceptQueryOf(pairs));
    if (negotiated.kind === 'malformed') throw new HttpError(400, negotiated.message);
    if (negotiated.kind === 'not-acceptable') {
      throw new HttpError(406, `QIDO-RS cannot answer in the requested media type: ${negotiated.message}`, `Available: ${negotiated.offered.join(', ')}`);
    }

    const path = pathOf(req);
    let query: QidoQuery;
    try {
      query = parseQidoQuery(level, path, pairs);
    } catch (error) {
      if (error instanceof QidoQueryError) throw new HttpError(400, error.message, error.details);
      throw error;
    }
    if (!query.satisfiable) return sendDatasets(res, [], negotiated.mediaType, []);

    const known = pathValues(path);
    const shape = answerShapeOf(query, known);
    const limits = pageLimits(query.limit, context.config.dicomWeb.qidoMaxResults);
    const request = findRequestOf(query, shape, context.config.dicomWeb.qidoCaseSensitive);
    request.Limit = limits.askCore;
    let resources = await context.core.find(request);
    if (resources.length > limits.page) {
      resources = resources.slice(0, limits.page);
      res.setHeader('Warning', truncationWarning(req));
    }
    const answer: AnswerContext = { query, shape, known, baseUrl: publicBaseUrl(req, context.config) };
    return sendDatasets(res, resources.map((resource) => resourceToDicomJson(resource, answer)), negotiated.mediaType, query.returnTags);
  };
}

function methodNotAllowed(allow: string): RequestHandler {
  return (req) => {
    throw new HttpError(405, `${req.method} is not allowed here`, `Allowed: ${allow}`, { Allow: allow });
  };
}

/**
 * SearchFor{Studies,Series,Instances}; other methods get 405, except POST on /studies (STOW-RS, mounted after us).
 * Added to the DICOMweb router itself rather than as a router of its own: one dispatch less on every search.
 */
export function addQidoRoutes(router: Router, context: DicomWebContext): void {
  const study = (req: Request): string => String(req.params.study);
  const series = (req: Request): string => String(req.params.series);
  const routes: Array<[string, QidoLevel, (req: Request) => QidoPath]> = [
    ['/studies', 'Study', () => ({})],
    ['/series', 'Series', () => ({})],
    ['/instances', 'Instance', () => ({})],
    ['/studies/:study/series', 'Series', (req) => ({ study: study(req) })],
    ['/studies/:study/instances', 'Instance', (req) => ({ study: study(req) })],
    ['/studies/:study/series/:series/instances', 'Instance', (req) => ({ study: study(req), series: series(req) })],
  ];
  for (const [route, level, pathOf] of routes) {
    router.get(route, search(context, level, pathOf));
    if (route === '/studies') {
      router.all(route, (req, res, next) => (req.method === 'POST' ? next() : methodNotAllowed('GET, POST')(req, res, next)));
    } else {
      router.all(route, methodNotAllowed('GET'));
    }
  }
}
