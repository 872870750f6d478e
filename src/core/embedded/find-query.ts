import type { ResourceLevel } from '../native-model';
import { levelIndex, levelOfTag } from '../main-dicom-tags';
import { LEVEL_CODE } from './schema';

/**
 * Translates /tools/find constraints into SQL over the index (tag_index rows per resource, ancestors as columns).
 * Matching rules are Orthanc's (and DICOM's C-FIND): '*' and '?' wildcards, 'a-b' ranges on dates and times,
 * '\'-separated lists, universal match for '' and '*'.
 */

export interface Constraint {
  /** 8-hex uppercase tag */
  tag: string;
  vr: string;
  value: string;
}

export interface SqlQuery {
  where: string[];
  params: Array<string | number>;
  /** Constraints on attributes no level indexes: the caller checks them on the files. */
  unindexed: Constraint[];
}

/** Column of `resources` holding the ancestor (or self) at each level. */
const ANCESTOR_COLUMN: Record<ResourceLevel, string> = {
  Patient: 'patient_id',
  Study: 'study_id',
  Series: 'series_id',
  Instance: 'internal_id',
};

const RANGE_VRS = new Set(['DA', 'TM', 'DT']);
/** VRs whose values never differ by case: matched on the exact column. */
const CASELESS_VRS = new Set(['DA', 'TM', 'DT', 'UI', 'IS', 'DS', 'US', 'UL', 'SS', 'SL', 'FL', 'FD']);

const tagLevels = new Map<string, ResourceLevel | undefined>();

/** levelOfTag, remembered: it walks every level's list, and searches ask for the same few tags. */
function indexLevelOf(tag: string): ResourceLevel | undefined {
  if (tagLevels.has(tag)) return tagLevels.get(tag);
  const level = levelOfTag(tag);
  if (tagLevels.size < 10_000) tagLevels.set(tag, level);
  return level;
}

export function isUniversal(value: string): boolean {
  return value === '' || value === '*';
}

export function buildConstraints(level: ResourceLevel, constraints: Constraint[], caseSensitive: boolean): SqlQuery {
  const query: SqlQuery = { where: [], params: [], unindexed: [] };
  for (const constraint of constraints) {
    if (isUniversal(constraint.value)) continue;
    if (constraint.tag === '00080061' && level === 'Study') {
      addModalitiesInStudy(query, constraint.value);
      continue;
    }
    const tagLevel = indexLevelOf(constraint.tag);
    if (!tagLevel) {
      query.unindexed.push(constraint);
      continue;
    }
    const insensitive = !caseSensitive && !CASELESS_VRS.has(constraint.vr);
    const match = valueMatch(constraint, insensitive);
    const matchingRows = `FROM tag_index t WHERE t.tag = ? AND (${match.sql})`;
    const matching = `SELECT t.internal_id ${matchingRows}`;
    if (tagLevel === level) {
      // the resource's own attribute: rows looked up by id, in id order (the ancestor column would also visit
      // every descendant of each match, and leave the matches to sort)
      query.where.push(`r.internal_id IN (${matching})`);
    } else if (levelIndex(tagLevel) < levelIndex(level)) {
      // (ancestor, level) pairs: the resources_<ancestor> index then reads only the level searched, not every
      // descendant of the ancestor (the series of a 4,000-instance study: 1 entry instead of 4,001)
      query.where.push(`(r.${ANCESTOR_COLUMN[tagLevel]}, r.level) IN (SELECT t.internal_id, ${LEVEL_CODE[level]} ${matchingRows})`);
    } else {
      // an attribute of a lower level (e.g. Modality on a study search): some descendant must match
      query.where.push(
        `r.internal_id IN (SELECT d.${ANCESTOR_COLUMN[level]} FROM resources d WHERE d.internal_id IN (${matching}))`,
      );
    }
    query.params.push(constraint.tag, ...match.params);
  }
  return query;
}

function addModalitiesInStudy(query: SqlQuery, value: string): void {
  const matches = value
    .split('\\')
    .filter((m) => m !== '')
    .map((m) => itemMatch(m, 'CS', false));
  query.where.push(
    `r.internal_id IN (SELECT d.study_id FROM resources d JOIN tag_index t ON t.internal_id = d.internal_id ` +
      `WHERE d.level = 2 AND t.tag = '00080060' AND (${matches.map((m) => m.sql).join(' OR ')}))`,
  );
  query.params.push(...matches.flatMap((m) => m.params));
}

interface Match {
  sql: string;
  params: string[];
}

function valueMatch(constraint: Constraint, insensitive: boolean): Match {
  const parts = constraint.value.split('\\').map((item) => itemMatch(item, constraint.vr, insensitive));
  return { sql: parts.map((p) => p.sql).join(' OR '), params: parts.flatMap((p) => p.params) };
}

/**
 * One value of a constraint as SQL on a tag_index row. The only index on values is (tag, folded): a case-sensitive
 * match also has a condition on `folded` that the exact one implies, so that the index finds the candidates (one
 * index instead of two: every stored attribute costs one index entry less to write).
 */
function itemMatch(item: string, vr: string, insensitive: boolean): Match {
  if (RANGE_VRS.has(vr) && item.includes('-')) {
    // dates and times hold digits and signs, which folding leaves alone
    const [low, high] = splitRange(fold(item));
    const sql: string[] = [];
    const params: string[] = [];
    if (low !== '') {
      sql.push('t.folded >= ?');
      params.push(low);
    }
    if (high !== '') {
      // '~' sorts after every digit, so "12" as an upper bound includes "120500"
      sql.push('t.folded <= ?');
      params.push(`${high}~`);
    }
    // a range never matches an empty value
    sql.push("t.folded <> ''");
    return { sql: sql.join(' AND '), params };
  }
  if (hasWildcard(item)) {
    if (insensitive) return { sql: 't.folded GLOB ?', params: [toGlob(fold(item))] };
    // folding maps each character on its own, so a value starting with the literal prefix has a folded form starting
    // with the folded prefix
    const prefix = item.slice(0, item.search(/[*?]/));
    if (prefix === '') return { sql: 't.value GLOB ?', params: [toGlob(item)] };
    return { sql: 't.folded GLOB ? AND t.value GLOB ?', params: [`${toGlob(fold(prefix))}*`, toGlob(item)] };
  }
  if (insensitive) return { sql: 't.folded = ?', params: [fold(item)] };
  return { sql: 't.folded = ? AND t.value = ?', params: [fold(item), item] };
}

/** Splits "a-b" at the dash that separates dates/times (DT values may hold a '-' timezone offset: split at the middle one). */
export function splitRange(value: string): [string, string] {
  const dashes = [...value].flatMap((c, i) => (c === '-' ? [i] : []));
  const at = dashes.length === 1 ? dashes[0] : dashes[Math.floor(dashes.length / 2)];
  return [value.slice(0, at).trim(), value.slice(at + 1).trim()];
}

export function hasWildcard(value: string): boolean {
  return value.includes('*') || value.includes('?');
}

/** DICOM wildcards to an SQLite GLOB pattern: '[' and ']' are GLOB specials, so they are bracketed. */
export function toGlob(value: string): string {
  return value.replace(/[[\]]/g, (c) => `[${c}]`);
}

/** The case-folding used for case-insensitive matching (stored in tag_index.folded). */
export function fold(value: string): string {
  return value.toUpperCase();
}

/** Pure-JS match with the same rules, for constraints checked on files rather than in SQL. */
export function matchesValue(actual: string | undefined, constraint: Constraint, caseSensitive: boolean): boolean {
  if (isUniversal(constraint.value)) return true;
  if (actual === undefined) return false;
  const insensitive = !caseSensitive && !CASELESS_VRS.has(constraint.vr);
  const subject = insensitive ? fold(actual) : actual;
  return constraint.value.split('\\').some((raw) => {
    const item = insensitive ? fold(raw) : raw;
    if (RANGE_VRS.has(constraint.vr) && item.includes('-')) {
      const [low, high] = splitRange(item);
      return subject !== '' && (low === '' || subject >= low) && (high === '' || subject <= `${high}~`);
    }
    if (hasWildcard(item)) return wildcardToRegExp(item).test(subject);
    return subject === item;
  });
}

function wildcardToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 's');
}
