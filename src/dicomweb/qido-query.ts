/**
 * QIDO-RS query parameters (PS3.18 §8.3.4, §10.6.1) → what to ask the core and what to return.
 * Pure functions: no HTTP, no core. The route (qido-rs.ts) turns a QidoQueryError into a 400.
 *
 * Conventions of the reference plugin kept where the standard leaves room: commas and backslashes
 * both separate list items, repeated keys add items, limit=0 means "no limit", unknown parameters
 * are errors here (the plugin silently ignores them, which hides typos in match keys).
 */
import { LEVEL_TAGS, LEVEL_UID_TAG, levelOfTag } from '../core/main-dicom-tags';
import type { ResourceLevel } from '../core/native-model';
import { isBinaryVr, normalizeTagPath, privateCreatorTagOf, isPrivateTag, vrOfTag } from '../dicom/dictionary';

export type QidoLevel = 'Study' | 'Series' | 'Instance';

/** UIDs given in the path: /studies/{study}/series/{series}/instances. */
export interface QidoPath {
  study?: string;
  series?: string;
}

export interface QidoQuery {
  level: QidoLevel;
  /** Canonical tag → constraint for the core ('\' lists, wildcards, ranges); universal matches left out. */
  constraints: Map<string, string>;
  /** Canonical tags of the answer, ascending (sequences excluded: the native model has no sequence values). */
  returnTags: string[];
  /** 0 = no limit */
  limit: number;
  offset: number;
  fuzzy: boolean;
  /** False when a constraint can match nothing (InstanceAvailability=OFFLINE, path and query UIDs that differ). */
  satisfiable: boolean;
}

/** Bad input in the query: answered with 400. */
export class QidoQueryError extends Error {
  constructor(
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'QidoQueryError';
  }
}

export const SPECIFIC_CHARACTER_SET = '00080005';
export const INSTANCE_AVAILABILITY = '00080056';
export const RETRIEVE_URL = '00081190';
const MODALITIES_IN_STUDY = '00080061';
const SOP_CLASSES_IN_STUDY = '00080062';
const NUMBER_OF_STUDY_RELATED_SERIES = '00201206';
const NUMBER_OF_STUDY_RELATED_INSTANCES = '00201208';
const NUMBER_OF_SERIES_RELATED_INSTANCES = '00201209';

/** Attributes the gateway itself fills in (not asked from the core). */
export const GATEWAY_COMPUTED: ReadonlySet<string> = new Set([SPECIFIC_CHARACTER_SET, INSTANCE_AVAILABILITY, RETRIEVE_URL]);

/** Attributes the core computes from the children (PS3.4 C.3.4), with the level they describe. */
const CORE_COMPUTED: ReadonlyMap<string, QidoLevel> = new Map([
  [MODALITIES_IN_STUDY, 'Study'],
  [SOP_CLASSES_IN_STUDY, 'Study'],
  [NUMBER_OF_STUDY_RELATED_SERIES, 'Study'],
  [NUMBER_OF_STUDY_RELATED_INSTANCES, 'Study'],
  [NUMBER_OF_SERIES_RELATED_INSTANCES, 'Series'],
]);

/** PS3.18 Tables 10.6.3-3, -4 and -5 (Specific Character Set, "if present", is always present here). */
const DEFAULT_TAGS: Record<QidoLevel, readonly string[]> = {
  Study: [
    SPECIFIC_CHARACTER_SET,
    '00080020', // StudyDate
    '00080030', // StudyTime
    '00080050', // AccessionNumber
    INSTANCE_AVAILABILITY,
    MODALITIES_IN_STUDY,
    '00080090', // ReferringPhysicianName
    '00080201', // TimezoneOffsetFromUTC
    RETRIEVE_URL,
    '00100010', // PatientName
    '00100020', // PatientID
    '00100030', // PatientBirthDate
    '00100040', // PatientSex
    '0020000D', // StudyInstanceUID
    '00200010', // StudyID
    NUMBER_OF_STUDY_RELATED_SERIES,
    NUMBER_OF_STUDY_RELATED_INSTANCES,
  ],
  Series: [
    SPECIFIC_CHARACTER_SET,
    '00080060', // Modality
    '00080201', // TimezoneOffsetFromUTC
    '0008103E', // SeriesDescription
    RETRIEVE_URL,
    '0020000E', // SeriesInstanceUID
    '00200011', // SeriesNumber
    NUMBER_OF_SERIES_RELATED_INSTANCES,
    '00400244', // PerformedProcedureStepStartDate
    '00400245', // PerformedProcedureStepStartTime
    '00400275', // RequestAttributeSequence (a sequence: dropped, see returnTags)
  ],
  Instance: [
    SPECIFIC_CHARACTER_SET,
    '00080016', // SOPClassUID
    '00080018', // SOPInstanceUID
    INSTANCE_AVAILABILITY,
    '00080201', // TimezoneOffsetFromUTC
    RETRIEVE_URL,
    '00200013', // InstanceNumber
    '00280010', // Rows
    '00280011', // Columns
    '00280100', // BitsAllocated
    '00280008', // NumberOfFrames
  ],
};

const QIDO_LEVELS: readonly QidoLevel[] = ['Study', 'Series', 'Instance'];

/** The QIDO level an attribute belongs to (patient attributes count as study ones); undefined when unknown. */
export function qidoLevelOf(tag: string): QidoLevel | undefined {
  const computed = CORE_COMPUTED.get(tag);
  if (computed) return computed;
  const level: ResourceLevel | undefined = levelOfTag(tag);
  if (level === undefined) return undefined;
  return level === 'Patient' ? 'Study' : level;
}

/** "Series Level Attributes ... shall not be returned" in a study search, and so on (§10.6.3.3). */
function returnableAt(level: QidoLevel, tag: string): boolean {
  if (GATEWAY_COMPUTED.has(tag)) return true;
  const tagLevel = qidoLevelOf(tag);
  return tagLevel === undefined || QIDO_LEVELS.indexOf(tagLevel) <= QIDO_LEVELS.indexOf(level);
}

/** includefield=all: every attribute of the level the index holds, and the computed ones. */
function allTagsOf(level: QidoLevel): string[] {
  const levels: ResourceLevel[] = level === 'Study' ? ['Patient', 'Study'] : [level];
  const indexed = levels.flatMap((l) => [...LEVEL_TAGS[l].orthanc, ...LEVEL_TAGS[l].extra].map(([tag]) => tag));
  const computed = [...CORE_COMPUTED].filter(([, l]) => l === level).map(([tag]) => tag);
  return [...indexed, ...computed];
}

const vrCache = new Map<string, string>();

/** vrOfTag, remembered: the dictionary lookup is costly next to a search (a few tags, looked up per request). */
export function vrOf(tag: string): string {
  let vr = vrCache.get(tag);
  if (vr === undefined) {
    vr = vrOfTag(tag);
    if (vrCache.size < 10_000) vrCache.set(tag, vr);
  }
  return vr;
}

// ---------------------------------------------------------------------------------------------
// Values

function isUniversal(value: string): boolean {
  return value === '' || value === '*';
}

function wildcardToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 's');
}

/** Whether a '\' list with wildcards matches a value (used for constraints the gateway answers itself). */
export function listMatches(constraint: string, value: string): boolean {
  return constraint.split('\\').some((item) => isUniversal(item) || wildcardToRegExp(item).test(value));
}

const DATE = /^\d{8}$/;
const TIME = /^\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?$/;
const DATE_TIME = /^\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?$/;

function validDate(text: string): boolean {
  if (!DATE.test(text)) return false;
  const month = Number(text.slice(4, 6));
  const day = Number(text.slice(6, 8));
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

function validTime(text: string): boolean {
  if (!TIME.test(text)) return false;
  const [hh, mm, ss] = [text.slice(0, 2), text.slice(2, 4), text.slice(4, 6)].map((p) => (p === '' ? 0 : Number(p)));
  return hh < 24 && mm < 60 && ss < 61;
}

const RANGE_CHECKS: Record<string, (text: string) => boolean> = {
  DA: validDate,
  TM: validTime,
  DT: (text) => DATE_TIME.test(text),
};

/** One item of a DA/TM/DT constraint: a value, or a range "a-b", "a-", "-b" (PS3.4 C.2.2.2.5). */
function checkRangeItem(keyword: string, vr: string, item: string): void {
  const valid = RANGE_CHECKS[vr];
  if (valid(item)) return;
  // DT values may carry a "-hhmm" offset: accept the first split into two valid bounds
  for (let at = item.indexOf('-'); at >= 0; at = item.indexOf('-', at + 1)) {
    const low = item.slice(0, at);
    const high = item.slice(at + 1);
    if ((low === '' && high === '') || (low !== '' && !valid(low)) || (high !== '' && !valid(high))) continue;
    if (low !== '' && high !== '' && low.length === high.length && low > high) {
      throw new QidoQueryError(`Invalid range for ${keyword}: "${item}" starts after it ends`);
    }
    return;
  }
  const expected = vr === 'DA' ? 'YYYYMMDD' : vr === 'TM' ? 'HHMMSS.FFFFFF' : 'YYYYMMDDHHMMSS.FFFFFF&ZZXX';
  throw new QidoQueryError(`Invalid ${vr} value for ${keyword}: "${item}"`, `Expected ${expected}, or a range a-b, a- or -b`);
}

/** Values of one match key (repeated keys, comma and backslash lists) → one constraint, '' when universal. */
function constraintOf(key: string, tag: string, values: readonly string[]): string {
  const items = values.flatMap((v) => v.split(/[,\\]/)).map((v) => v.trim());
  if (items.length === 0 || items.every((i) => i === '') || items.some((i) => i === '*')) return '';
  const listed = items.filter((i) => i !== '');
  const vr = vrOf(tag);
  if (vr === 'SQ') throw new QidoQueryError(`Matching on the content of a sequence is not supported: ${key}`);
  if (isBinaryVr(vr) && !isPrivateTag(tag)) throw new QidoQueryError(`Matching on a binary attribute is not supported: ${key}`);
  if (vr in RANGE_CHECKS) for (const item of listed) checkRangeItem(key, vr, item);
  return listed.join('\\');
}

function nonNegativeInteger(name: string, value: string): number {
  const text = value.trim();
  const number = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(number)) {
    throw new QidoQueryError(`Invalid value for "${name}": "${value}"`, 'Expected a non-negative integer');
  }
  return number;
}

/** A UID from the path: it is matched exactly, so matching syntax there is an error, not a search. */
function pathUid(name: string, uid: string): string {
  if (uid === '' || /[*?\\]/.test(uid)) throw new QidoQueryError(`Invalid ${name} in the path: "${uid}"`);
  return uid;
}

// ---------------------------------------------------------------------------------------------
// The query

interface Parameters {
  limit: number;
  offset: number;
  fuzzy: boolean;
  includeAll: boolean;
  includes: string[];
  /** Canonical tag → the key as spelled (for messages) and every value given. */
  matches: Map<string, { key: string; values: string[] }>;
}

/** includefield: keywords or tags, comma-separated; "Seq.Attr" asks for the sequence attribute. */
function readIncludeField(value: string, parameters: Parameters): void {
  for (const field of value.split(',').map((f) => f.trim())) {
    if (field === '') continue;
    if (field.toLowerCase() === 'all') {
      parameters.includeAll = true;
      continue;
    }
    const tags = normalizeTagPath(field);
    if (!tags) throw new QidoQueryError(`Unknown attribute in includefield: "${field}"`);
    parameters.includes.push(tags[0]);
  }
}

function readFuzzy(value: string): boolean {
  if (value !== 'true' && value !== 'false') throw new QidoQueryError(`Invalid value for "fuzzymatching": "${value}"`, 'Expected true or false');
  return value === 'true';
}

function readParameters(params: ReadonlyArray<readonly [string, string]>): Parameters {
  const parameters: Parameters = { limit: 0, offset: 0, fuzzy: false, includeAll: false, includes: [], matches: new Map() };
  for (const [rawKey, value] of params) {
    const key = rawKey.trim();
    const reserved = key.toLowerCase();
    // the route reads `accept` (PS3.18 §8.3.3.1); `charset` (§8.3.3.2) changes nothing: answers are UTF-8
    if (key === '' || reserved === 'accept' || reserved === 'charset') continue;
    if (reserved === 'limit') parameters.limit = nonNegativeInteger(key, value);
    else if (reserved === 'offset') parameters.offset = nonNegativeInteger(key, value);
    else if (reserved === 'fuzzymatching') parameters.fuzzy = readFuzzy(value);
    else if (reserved === 'includefield') readIncludeField(value, parameters);
    else {
      const tags = normalizeTagPath(key);
      if (!tags) throw new QidoQueryError(`Unknown attribute in the query: "${key}"`, 'Expected a DICOM keyword or a tag such as 00100020');
      if (tags.length > 1) throw new QidoQueryError(`Matching on attributes inside sequences is not supported: "${key}"`);
      const entry = parameters.matches.get(tags[0]) ?? { key, values: [] };
      entry.values.push(value);
      parameters.matches.set(tags[0], entry);
    }
  }
  return parameters;
}

/** Match keys → core constraints; false when one can match nothing (the gateway answers some itself). */
function constraintsOf(matches: Parameters['matches'], constraints: Map<string, string>): boolean {
  let satisfiable = true;
  for (const [tag, { key, values }] of matches) {
    const constraint = constraintOf(key, tag, values);
    if (constraint === '' || tag === SPECIFIC_CHARACTER_SET) continue; // universal; answers are always UTF-8
    if (tag === INSTANCE_AVAILABILITY) {
      satisfiable &&= listMatches(constraint, 'ONLINE'); // every instance of this store is ONLINE
    } else if (tag === RETRIEVE_URL || (CORE_COMPUTED.has(tag) && tag !== MODALITIES_IN_STUDY)) {
      throw new QidoQueryError(`Matching on ${key} is not supported`);
    } else {
      constraints.set(tag, constraint);
    }
  }
  return satisfiable;
}

/** The path's UIDs restrict the search; a different UID asked in the query can match nothing. */
function addPathUids(path: QidoPath, constraints: Map<string, string>): boolean {
  let satisfiable = true;
  const uids: Array<[string, string, string | undefined]> = [
    [LEVEL_UID_TAG.Study, 'StudyInstanceUID', path.study],
    [LEVEL_UID_TAG.Series, 'SeriesInstanceUID', path.series],
  ];
  for (const [tag, name, given] of uids) {
    if (given === undefined) continue;
    const uid = pathUid(name, given);
    const asked = constraints.get(tag);
    if (asked !== undefined && !listMatches(asked, uid)) satisfiable = false;
    constraints.set(tag, uid);
  }
  return satisfiable;
}

export function parseQidoQuery(level: QidoLevel, path: QidoPath, params: ReadonlyArray<readonly [string, string]>): QidoQuery {
  const parameters = readParameters(params);
  const constraints = new Map<string, string>();
  const matchable = constraintsOf(parameters.matches, constraints);
  const pathMatchable = addPathUids(path, constraints);
  return {
    level,
    constraints,
    returnTags: cachedReturnTags(level, path, [...parameters.matches.keys()], parameters.includes, parameters.includeAll),
    limit: parameters.limit,
    offset: parameters.offset,
    fuzzy: parameters.fuzzy,
    satisfiable: matchable && pathMatchable,
  };
}

const returnTagsCache = new Map<string, readonly string[]>();

/** returnTagsOf, remembered per query shape (the sets, dictionary lookups and sort are the same every time). */
function cachedReturnTags(level: QidoLevel, path: QidoPath, matched: string[], includes: string[], includeAll: boolean): string[] {
  const key = `${level}|${path.study !== undefined}|${path.series !== undefined}|${matched.join(',')}|${includes.join(',')}|${includeAll}`;
  let tags = returnTagsCache.get(key);
  if (!tags) {
    tags = returnTagsOf(level, path, matched, includes, includeAll);
    if (returnTagsCache.size >= 1000) returnTagsCache.clear();
    returnTagsCache.set(key, tags);
  }
  return [...tags];
}

/** PS3.18 §10.6.3.3: the level's defaults, matched and included attributes of this level or above, parents' defaults. */
function returnTagsOf(level: QidoLevel, path: QidoPath, matched: string[], includes: string[], includeAll: boolean): string[] {
  const tags = new Set<string>(DEFAULT_TAGS[level]);
  const add = (list: Iterable<string>): void => {
    for (const tag of list) tags.add(tag);
  };
  if (level !== 'Study' && path.study === undefined) add(DEFAULT_TAGS.Study);
  if (level === 'Instance' && path.series === undefined) add(DEFAULT_TAGS.Series);
  if (includeAll) add(allTagsOf(level));
  // the identifiers of the parents are always returned: clients need them to follow RetrieveURL
  if (level !== 'Study') tags.add(LEVEL_UID_TAG.Study);
  if (level === 'Instance') tags.add(LEVEL_UID_TAG.Series);
  for (const tag of [...matched, ...includes]) {
    if (!returnableAt(level, tag)) continue;
    tags.add(tag);
    // §10.6.3.3: a private data element comes with its private creator
    const creator = privateCreatorTagOf(tag);
    if (creator !== undefined) tags.add(creator);
  }
  return [...tags].filter((tag) => vrOf(tag) !== 'SQ' && computableAt(level, tag)).sort();
}

/**
 * The cores compute counts and ModalitiesInStudy for the resource searched only, not for its parents: a series
 * search returns the study's main attributes but not NumberOfStudyRelatedSeries (as the reference plugin).
 */
function computableAt(level: QidoLevel, tag: string): boolean {
  const computedLevel = CORE_COMPUTED.get(tag);
  return computedLevel === undefined || computedLevel === level;
}
