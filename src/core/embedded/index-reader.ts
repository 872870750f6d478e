/**
 * Reading the embedded index: resources as Orthanc's JSON and searches (/tools/find, QIDO-RS). One class for the
 * core on the main thread and for the search threads (search-threads.ts), which open the same index for reading.
 */
import type Database from 'better-sqlite3';
import type { FindRequest, InstanceResource, Resource, ResourceLevel } from '../native-model';
import { LEVELS, LEVEL_TAGS, levelIndex, levelOfTag } from '../main-dicom-tags';
import { CoreError } from '../native-model';
import { isOrthancId } from '../orthanc-ids';
import { LEVEL_CODE } from './schema';
import type { StorageArea } from './storage-area';
import { buildConstraints, matchesValue, type Constraint } from './find-query';
import { elementToString, type DicomDataset } from '../../dicom/dicom-file';
import { normalizeTag, tagToKeyword, toOrthancTag, vrOfTag } from '../../dicom/dictionary';
import { readDatasetSync } from './stored-header';

/** Seconds without new instances after which Orthanc calls a resource stable (its StableAge default). */
const STABLE_AGE_SECONDS = 60;

export const DICOM_ATTACHMENT = 1;

export interface ResourceRow {
  internal_id: number;
  public_id: string;
  level: number;
  parent_id: number | null;
  patient_id: number;
  study_id: number | null;
  series_id: number | null;
  dicom_uid: string;
  tags: string;
  last_update: string;
}

export interface AttachmentRow {
  uuid: string;
  size: number;
  md5: string;
}

export type ResponseContent = NonNullable<FindRequest['ResponseContent']>[number];

/** What toResource reads of an ancestor. */
type AncestorRow = Pick<ResourceRow, 'internal_id' | 'public_id' | 'tags'>;

/**
 * What a search answer needs beyond its own rows, read in the statement of the rows instead of a few statements
 * per resource (an all-studies search is 5,000 resources).
 */
interface FindBatch {
  /** Ancestor rows by internal id. */
  rows: Map<number, AncestorRow>;
  /** Parsed `tags` by internal id (rows and ancestors), filled as they are read. */
  tags: Map<number, Record<string, string>>;
  /** Computed attribute (canonical tag) -> internal id -> value, for the computed tags asked. */
  computed: Map<string, Map<number, string>>;
  /** Series: number of children; instances: DICOM attachment and IndexInSeries. */
  childCounts?: Map<number, number>;
  attachments?: Map<number, AttachmentRow>;
  indexInSeries?: Map<number, string>;
}

/** The columns of a ResourceRow (SELECT * would also read is_protected, and each column costs). */
const ROW_COLUMNS = 'r.internal_id, r.public_id, r.level, r.parent_id, r.patient_id, r.study_id, r.series_id, r.dicom_uid, r.tags, r.last_update';

/** Columns of `resources` holding the ancestor at each level, by level code. */
const ANCESTOR_COLUMNS = ['patient_id', 'study_id', 'series_id'] as const;

/** What a search reads with its rows: extra select-list items and joins on `r`, and the batch made of them. */
interface AnswerColumns {
  select: string;
  joins: string;
  batch(rows: ResourceRow[]): FindBatch;
}

/** NumberOfSeriesRelatedInstances. */
const SERIES_INSTANCES = '00201209';

/** Computed attributes: [level of the resource, column of its descendants, level counted, tag of the values listed]. */
const COMPUTED_TAGS: ReadonlyMap<string, readonly [ResourceLevel, string, ResourceLevel, string?]> = new Map([
  ['00201200', ['Patient', 'patient_id', 'Study']],
  ['00201202', ['Patient', 'patient_id', 'Series']],
  ['00201204', ['Patient', 'patient_id', 'Instance']],
  ['00201206', ['Study', 'study_id', 'Series']],
  ['00201208', ['Study', 'study_id', 'Instance']],
  [SERIES_INSTANCES, ['Series', 'series_id', 'Instance']],
  ['00080061', ['Study', 'study_id', 'Series', '00080060']],
  ['00080062', ['Study', 'study_id', 'Instance', '00080016']],
] as const);

/**
 * A computed attribute of the row `r` as an SQL expression: a count, or a JSON array of the sorted distinct values
 * (one aggregate: a DISTINCT subquery under group_concat costs 4x more, in temporary b-trees).
 */
function computedSql([, column, counted, valueTag]: readonly [ResourceLevel, string, ResourceLevel, string?]): string {
  const of = `d.${column} = r.internal_id AND d.level = ${LEVEL_CODE[counted]}`;
  if (valueTag === undefined) return `(SELECT COUNT(*) FROM resources d WHERE ${of})`;
  return (
    `(SELECT json_group_array(DISTINCT t.value ORDER BY t.value) FROM resources d CROSS JOIN tag_index t ON t.internal_id = d.internal_id ` +
    `WHERE ${of} AND t.tag = '${valueTag}' AND t.value <> '')`
  );
}

export function levelName(code: number): ResourceLevel {
  return LEVELS[code];
}

export class IndexReader {
  /** Prepared statements by SQL text: compiling one costs more than running it (searches run thousands per answer). */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(
    readonly db: Database.Database,
    private readonly storage: StorageArea,
  ) {}

  /** A cached prepared statement; the cache is emptied when ad-hoc search SQL (one text per query shape) fills it. */
  prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      if (this.statements.size >= 1000) this.statements.clear();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  findRow(publicId: string, level?: ResourceLevel): ResourceRow | undefined {
    if (!isOrthancId(publicId)) return undefined;
    const row = this.prepare('SELECT * FROM resources WHERE public_id = ?').get(publicId) as ResourceRow | undefined;
    if (row && level !== undefined && row.level !== LEVEL_CODE[level]) return undefined;
    return row;
  }

  /** Orthanc's JSON for a resource; `content` limits what is computed (children, parent, ...). */
  toResource(row: ResourceRow, content?: ReadonlySet<ResponseContent>, requestedTags?: string[], batch?: FindBatch): Resource {
    const wants = (part: ResponseContent): boolean => !content || content.has(part);
    const level = levelName(row.level);
    const tags = JSON.parse(row.tags) as Record<string, string>;
    batch?.tags.set(row.internal_id, tags);
    const base = {
      ID: row.public_id,
      MainDicomTags: wants('MainDicomTags') ? mainDicomTags(level, tags) : {},
      Labels: wants('Labels') ? this.labelsOf(row.internal_id) : [],
      // RequestedTags come with a search, whose batch holds their computed values
      ...(requestedTags && batch ? { RequestedTags: this.requestedTags(row, requestedTags, batch) } : {}),
    };
    const stability = wants('IsStable') ? { IsStable: isStable(row.last_update), LastUpdate: row.last_update } : { IsStable: false, LastUpdate: row.last_update };
    const children = (): string[] => (wants('Children') ? this.childIds(row.internal_id) : []);
    const parentId = (): string => (wants('Parent') && row.parent_id !== null ? this.publicIdOf(row.parent_id) : '');
    switch (level) {
      case 'Patient':
        return { ...base, ...stability, Type: 'Patient', Studies: children() };
      case 'Study': {
        const patient = batch?.rows.get(row.patient_id) ?? this.rowById(row.patient_id);
        const patientTags = batchTags(batch, patient);
        return {
          ...base,
          ...stability,
          Type: 'Study',
          ParentPatient: wants('Parent') ? patient.public_id : '',
          PatientMainDicomTags: wants('MainDicomTags') ? mainDicomTags('Patient', patientTags) : {},
          Series: children(),
        };
      }
      case 'Series': {
        const instances = children();
        const expected = expectedInstances(tags);
        return {
          ...base,
          ...stability,
          Type: 'Series',
          ParentStudy: parentId(),
          Instances: instances,
          ExpectedNumberOfInstances: expected,
          Status: seriesStatus(
            expected,
            wants('Children') ? instances.length : (batch?.childCounts ? (batch.childCounts.get(row.internal_id) ?? 0) : this.countChildren(row.internal_id)),
          ),
        };
      }
      case 'Instance': {
        const attachment = batch?.attachments ? batch.attachments.get(row.internal_id) : this.attachmentOf(row.internal_id);
        const index = batch?.indexInSeries ? batch.indexInSeries.get(row.internal_id) : this.metadataOf(row.internal_id, 'IndexInSeries');
        return {
          ...base,
          Type: 'Instance',
          ParentSeries: parentId(),
          FileSize: attachment?.size ?? 0,
          FileUuid: attachment?.uuid ?? '',
          IndexInSeries: index === undefined ? null : Number(index),
        };
      }
    }
  }

  rowById(internalId: number): ResourceRow {
    return this.prepare('SELECT * FROM resources WHERE internal_id = ?').get(internalId) as ResourceRow;
  }

  private publicIdOf(internalId: number): string {
    return (this.prepare('SELECT public_id FROM resources WHERE internal_id = ?').get(internalId) as { public_id: string }).public_id;
  }

  private childIds(internalId: number): string[] {
    return (this.prepare('SELECT public_id FROM resources WHERE parent_id = ? ORDER BY internal_id').all(internalId) as Array<{ public_id: string }>).map(
      (r) => r.public_id,
    );
  }

  countChildren(internalId: number): number {
    return (this.prepare('SELECT COUNT(*) AS n FROM resources WHERE parent_id = ?').get(internalId) as { n: number }).n;
  }

  labelsOf(internalId: number): string[] {
    return (this.prepare('SELECT label FROM labels WHERE internal_id = ? ORDER BY label').all(internalId) as Array<{ label: string }>).map((r) => r.label);
  }

  attachmentOf(internalId: number): AttachmentRow | undefined {
    return this.prepare('SELECT uuid, size, md5 FROM attachments WHERE internal_id = ? AND file_type = ?').get(internalId, DICOM_ATTACHMENT) as
      | AttachmentRow
      | undefined;
  }

  metadataOf(internalId: number, name: string): string | undefined {
    const row = this.prepare('SELECT value FROM metadata WHERE internal_id = ? AND name = ?').get(internalId, name) as { value: string } | undefined;
    return row?.value;
  }

  /** Values of RequestedTags: indexed tags of the resource and its ancestors, computed counts, else the first instance's file. */
  private requestedTags(row: ResourceRow, requested: string[], batch: FindBatch): Record<string, string> {
    const answer: Record<string, string> = {};
    let fileTags: DicomDataset | undefined;
    const ancestorTags = batch.tags;
    const tagsOf = (internalId: number | null): Record<string, string> => {
      if (internalId === null) return {};
      let tags = ancestorTags.get(internalId);
      if (!tags) {
        const source = internalId === row.internal_id ? row : (batch.rows.get(internalId) ?? this.rowById(internalId));
        tags = JSON.parse(source.tags) as Record<string, string>;
        ancestorTags.set(internalId, tags);
      }
      return tags;
    };
    const level = levelName(row.level);
    const owners = [row.patient_id, row.study_id, row.series_id, row.internal_id];
    for (const spelling of requested) {
      const resolved = resolveRequestedTag(spelling);
      if (!resolved) continue;
      const { tag, name, indexedAt } = resolved;
      // computed for the search's level only (another level's count falls through to the file, as before)
      const computed = batch.computed.get(tag)?.get(row.internal_id);
      if (computed !== undefined) {
        answer[name] = computed;
        continue;
      }
      if (indexedAt !== undefined && levelIndex(indexedAt) <= levelIndex(level)) {
        // indexed at this level or above: the index row of that level has it, or the file lacks it too
        // (opening a file per answer for an absent attribute would make every search slow)
        const indexed = tagsOf(owners[levelIndex(indexedAt)])[tag];
        if (indexed !== undefined) answer[name] = indexed;
        continue;
      }
      fileTags ??= this.firstInstanceDataset(row);
      const fromFile = fileTags ? elementToString(fileTags[tag]) : undefined;
      if (fromFile !== undefined) answer[name] = fromFile;
    }
    return answer;
  }

  /** The data set (without pixel data) of the first instance under a resource, for attributes the index lacks. */
  private firstInstanceDataset(row: ResourceRow): DicomDataset | undefined {
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    const instance = this.prepare(`SELECT internal_id FROM resources WHERE ${column} = ? AND level = 3 ORDER BY internal_id LIMIT 1`)
      .get(row.internal_id) as { internal_id: number } | undefined;
    const attachment = instance && this.attachmentOf(instance.internal_id);
    if (!attachment) return undefined;
    return readDatasetSync(this.storage.pathOf(attachment.uuid));
  }

  find(request: FindRequest): Resource[] {
    const content = request.ResponseContent ? new Set(request.ResponseContent) : undefined;
    const answer = this.answerColumns(request.Level, content, request.RequestedTags);
    const rows = this.findRows(request, answer);
    const batch = answer.batch(rows);
    return rows.map((row) => this.toResource(row, content, request.RequestedTags, batch));
  }

  /**
   * What toResource needs beyond the rows of an answer, read by the statement of the rows: ancestors joined,
   * counts and lists as subqueries on each row (a PatientID search is then one statement, where statements per
   * kind over a list of ids cost more than the whole search of one or two studies).
   */
  private answerColumns(level: ResourceLevel, content: ReadonlySet<ResponseContent> | undefined, requested?: string[]): AnswerColumns {
    const wants = (part: ResponseContent): boolean => !content || content.has(part);
    const levelCode = LEVEL_CODE[level];
    const select: string[] = [];
    const joins: string[] = [];
    const computedTags: string[] = [];
    // ancestors: the patient of a study, and the levels above whose indexed tags are requested
    const ancestorLevels = new Set<number>();
    if (level === 'Study') ancestorLevels.add(LEVEL_CODE.Patient);
    for (const spelling of requested ?? []) {
      const resolved = resolveRequestedTag(spelling);
      if (!resolved) continue;
      const computed = COMPUTED_TAGS.get(resolved.tag);
      if (computed) {
        if (computed[0] === level && !computedTags.includes(resolved.tag)) {
          computedTags.push(resolved.tag);
          select.push(`${computedSql(computed)} AS c${resolved.tag}`);
        }
        continue;
      }
      if (resolved.indexedAt !== undefined && LEVEL_CODE[resolved.indexedAt] < levelCode) ancestorLevels.add(LEVEL_CODE[resolved.indexedAt]);
    }
    for (const code of ancestorLevels) {
      joins.push(` LEFT JOIN resources a${code} ON a${code}.internal_id = r.${ANCESTOR_COLUMNS[code]}`);
      select.push(`a${code}.public_id AS a${code}_public_id, a${code}.tags AS a${code}_tags`);
    }
    const childCounts = level === 'Series' && !wants('Children');
    // a series' children are its instances: NumberOfSeriesRelatedInstances, when asked, is that count already
    const childCountColumn = computedTags.includes(SERIES_INSTANCES) ? `c${SERIES_INSTANCES}` : 'child_count';
    if (childCounts && childCountColumn === 'child_count') select.push('(SELECT COUNT(*) FROM resources c WHERE c.parent_id = r.internal_id) AS child_count');
    const instances = level === 'Instance';
    if (instances) {
      joins.push(` LEFT JOIN attachments f ON f.internal_id = r.internal_id AND f.file_type = ${DICOM_ATTACHMENT}`);
      select.push(
        'f.uuid AS file_uuid, f.size AS file_size, f.md5 AS file_md5',
        "(SELECT m.value FROM metadata m WHERE m.internal_id = r.internal_id AND m.name = 'IndexInSeries') AS index_in_series",
      );
    }
    return {
      select: select.map((item) => `, ${item}`).join(''),
      joins: joins.join(''),
      batch: (rows) => {
        const batch: FindBatch = { rows: new Map(), tags: new Map(), computed: new Map(computedTags.map((tag) => [tag, new Map()])) };
        if (childCounts) batch.childCounts = new Map();
        if (instances) {
          batch.attachments = new Map();
          batch.indexInSeries = new Map();
        }
        for (const row of rows as Array<ResourceRow & Record<string, string | number | null>>) {
          for (const code of ancestorLevels) {
            const id = row[ANCESTOR_COLUMNS[code]];
            const publicId = row[`a${code}_public_id`];
            if (id !== null && typeof publicId === 'string') batch.rows.set(id, { internal_id: id, public_id: publicId, tags: row[`a${code}_tags`] as string });
          }
          for (const [tag, values] of batch.computed) {
            const value = row[`c${tag}`];
            values.set(row.internal_id, typeof value === 'string' ? (JSON.parse(value) as string[]).join('\\') : String(value));
          }
          batch.childCounts?.set(row.internal_id, row[childCountColumn] as number);
          if (row.file_uuid !== null && row.file_uuid !== undefined) {
            batch.attachments?.set(row.internal_id, { uuid: row.file_uuid as string, size: row.file_size as number, md5: row.file_md5 as string });
          }
          if (row.index_in_series !== null && row.index_in_series !== undefined) batch.indexInSeries?.set(row.internal_id, row.index_in_series as string);
        }
        return batch;
      },
    };
  }

  findIds(request: FindRequest): string[] {
    return this.findRows(request).map((row) => row.public_id);
  }

  private findRows(request: FindRequest, answer?: AnswerColumns): ResourceRow[] {
    const level = request.Level;
    if (!LEVELS.includes(level)) throw new CoreError(400, `Unknown resource level: ${String(level)}`);
    const constraints: Constraint[] = Object.entries(request.Query ?? {}).map(([spelling, value]) => {
      const tag = normalizeTag(spelling);
      if (!tag) throw new CoreError(400, `Unknown DICOM tag in the query: ${spelling}`);
      if (typeof value !== 'string') throw new CoreError(400, `The value of ${spelling} in the query must be a string`);
      return { tag, vr: vrOfTag(tag), value };
    });
    const caseSensitive = request.CaseSensitive ?? false;
    const sql = buildConstraints(level, constraints, caseSensitive);
    const where = ['r.level = ?', ...sql.where];
    const params: Array<string | number> = [LEVEL_CODE[level], ...sql.params];
    if (request.Labels && request.Labels.length > 0) {
      const placeholders = request.Labels.map(() => '?').join(', ');
      const constraint = request.LabelsConstraint ?? 'All';
      if (constraint === 'None') {
        where.push(`NOT EXISTS (SELECT 1 FROM labels l WHERE l.internal_id = r.internal_id AND l.label IN (${placeholders}))`);
      } else {
        const needed = constraint === 'All' ? request.Labels.length : 1;
        where.push(`(SELECT COUNT(*) FROM labels l WHERE l.internal_id = r.internal_id AND l.label IN (${placeholders})) >= ${needed}`);
      }
      params.push(...request.Labels);
    }
    const since = request.Since ?? 0;
    const limit = request.Limit ?? 0;
    // with other constraints, '+' keeps SQLite from walking the level index in id order and testing each row:
    // the constraints' indexes find the few matches, which are then sorted
    if (where.length > 1) where[0] = '+r.level = ?';
    const select = `SELECT ${ROW_COLUMNS}${answer?.select ?? ''}`;
    if (sql.unindexed.length === 0 && where.length === 1) {
      // the level index reads in id order: no sort, and the answer's columns are computed for the page only
      const statement = `${select} FROM resources r${answer?.joins ?? ''} WHERE ${where[0]} ORDER BY r.internal_id LIMIT ? OFFSET ?`;
      return this.prepare(statement).all(...params, limit > 0 ? limit : -1, since) as ResourceRow[];
    }
    // the matching ids are sorted apart (MATERIALIZED keeps SQLite from merging the two): the answer's columns
    // (ancestors, counts, lists) are then computed only for the rows read, not for every match sorted; a later
    // page skips its first matches there, before their columns are computed
    const skip = sql.unindexed.length === 0 && since > 0;
    const statement =
      `WITH matches AS MATERIALIZED (SELECT r.internal_id AS id FROM resources r WHERE ${where.join(' AND ')} ORDER BY r.internal_id` +
      `${skip ? ' LIMIT -1 OFFSET ?' : ''}) ${select} FROM matches CROSS JOIN resources r ON r.internal_id = matches.id${answer?.joins ?? ''} ORDER BY matches.id`;
    if (sql.unindexed.length === 0) {
      // a LIMIT would make SQLite sort the matches in a temporary b-tree, which costs more than the whole search
      // of a few matches (3x on a PatientID search): the page is cut while reading
      const page: ResourceRow[] = [];
      for (const row of this.prepare(statement).iterate(...params, ...(skip ? [since] : [])) as IterableIterator<ResourceRow>) {
        if (page.push(row) === limit) break;
      }
      return page;
    }
    // attributes outside the index are checked on the first instance's file, as Orthanc does
    const candidates = this.prepare(statement).all(...params) as ResourceRow[];
    const matching = candidates.filter((row) => {
      const dataset = this.firstInstanceDataset(row);
      return sql.unindexed.every((c) => matchesValue(dataset ? elementToString(dataset[c.tag]) : undefined, c, caseSensitive));
    });
    return matching.slice(since, limit > 0 ? since + limit : undefined);
  }

  getInstances(level: ResourceLevel, id: string): InstanceResource[] | undefined {
    const row = this.findRow(id, level);
    if (!row) return undefined;
    const column = ['patient_id', 'study_id', 'series_id', 'internal_id'][row.level];
    // files and IndexInSeries of all the instances in the same statement (a WADO-RS retrieve lists a whole series)
    const answer = this.answerColumns('Instance', undefined);
    const rows = this.prepare(`SELECT ${ROW_COLUMNS}${answer.select} FROM resources r${answer.joins} WHERE r.${column} = ? AND r.level = 3 ORDER BY r.internal_id`)
      .all(row.internal_id) as ResourceRow[];
    const batch = answer.batch(rows);
    return rows.map((r) => this.toResource(r, undefined, undefined, batch) as InstanceResource);
  }
}

interface RequestedTag {
  tag: string;
  /** The key of the answer: keyword, else "gggg,eeee". */
  name: string;
  /** The level whose index holds the tag, if any. */
  indexedAt?: ResourceLevel;
}

const requestedTagCache = new Map<string, RequestedTag | null>();

/** A RequestedTags spelling resolved once (dictionary lookups cost more than answering from the index). */
function resolveRequestedTag(spelling: string): RequestedTag | undefined {
  let resolved = requestedTagCache.get(spelling);
  if (resolved === undefined) {
    const tag = normalizeTag(spelling);
    resolved = tag ? { tag, name: tagToKeyword(tag) ?? toOrthancTag(tag), indexedAt: levelOfTag(tag) } : null;
    if (requestedTagCache.size < 10_000) requestedTagCache.set(spelling, resolved);
  }
  return resolved ?? undefined;
}

/** The parsed tags of a row, through the batch's cache when there is one. */
function batchTags(batch: FindBatch | undefined, row: AncestorRow): Record<string, string> {
  let tags = batch?.tags.get(row.internal_id);
  if (!tags) {
    tags = JSON.parse(row.tags) as Record<string, string>;
    batch?.tags.set(row.internal_id, tags);
  }
  return tags;
}

function mainDicomTags(level: ResourceLevel, tags: Record<string, string>): Record<string, string> {
  const answer: Record<string, string> = {};
  for (const [tag, keyword] of LEVEL_TAGS[level].orthanc) {
    if (tags[tag] !== undefined) answer[keyword] = tags[tag];
  }
  return answer;
}

function isStable(lastUpdate: string): boolean {
  const iso = `${lastUpdate.slice(0, 4)}-${lastUpdate.slice(4, 6)}-${lastUpdate.slice(6, 8)}T${lastUpdate.slice(9, 11)}:${lastUpdate.slice(11, 13)}:${lastUpdate.slice(13, 15)}Z`;
  return Date.now() - Date.parse(iso) > STABLE_AGE_SECONDS * 1000;
}

/** Orthanc derives the expected count of a series from these attributes, first present wins. */
function expectedInstances(tags: Record<string, string>): number | null {
  for (const tag of ['00201002', '00181090', '00541081', '00200105']) {
    const value = parseInt(tags[tag] ?? '', 10);
    if (Number.isFinite(value) && value > 0) return value;
  }
  return null;
}

function seriesStatus(expected: number | null, actual: number): 'Complete' | 'Missing' | 'Inconsistent' | 'Unknown' {
  if (expected === null) return 'Unknown';
  if (actual === expected) return 'Complete';
  return actual < expected ? 'Missing' : 'Inconsistent';
}
