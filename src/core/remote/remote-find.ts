/**
 * POST /tools/find against a real Orthanc, with the embedded core's semantics where Orthanc differs:
 *  - a constraint on an attribute of a lower level (Modality on a study search) means "some descendant matches";
 *    Orthanc answers nothing for it, so it is matched by a search at that lower level, mapped back to ancestors;
 *  - `CaseSensitive` defaults to false here and is always sent explicitly;
 *  - universal constraints ('' and '*') are dropped (Orthanc refuses '*' on UIDs);
 *  - tags are sent as "gggg,eeee" so that the core's dictionary need not know our keywords;
 *  - Labels on a core without labels: nothing has a label; RequestedTags on a core before 1.11: computed here.
 */
import { normalizeTag, toOrthancTag } from '../../dicom/dictionary';
import { LEVELS, LEVEL_PATH, LEVEL_TAGS, levelIndex, levelOfTag } from '../main-dicom-tags';
import { CoreError, type FindRequest, type Resource, type ResourceLevel } from '../native-model';
import { mapLimit } from '../map-limit';
import { GenerationCache, type ChangeGeneration } from './core-cache';
import type { OrthancHttp } from './orthanc-http';
import { normalizeResource, parentOf } from './orthanc-resources';
import { RequestedTagsEmulator, rekeyRequestedTags, type StudySummary } from './requested-tags';

/** What a core can do, from its GET /system. */
export interface CoreFeatures {
  apiVersion: number;
  /** /tools/find answers RequestedTags itself (Orthanc 1.11+, ApiVersion 18). */
  requestedTags: boolean;
  /** The core knows labels (Orthanc 1.12+, "HasLabels" in /system). */
  labels: boolean;
}

/** Resources whose RequestedTags are computed at the same time (each costs a few calls to the core). */
const RESOURCE_CONCURRENCY = 8;

interface FindPlan {
  level: ResourceLevel;
  /** Constraints Orthanc evaluates right at the requested level ("gggg,eeee" -> value). */
  query: Record<string, string>;
  /** Constraints on lower-level attributes: searched at `level`, then mapped up to the requested level. */
  deeper?: { level: ResourceLevel; query: Record<string, string> };
  /** The search can match nothing (labels asked of a core without labels). */
  empty: boolean;
  caseSensitive: boolean;
  since: number;
  limit: number;
}

/** Orthanc's main DICOM tags (indexed in its database) per level. */
const ORTHANC_MAIN_TAGS: Record<ResourceLevel, ReadonlySet<string>> = {
  Patient: new Set(LEVEL_TAGS.Patient.orthanc.map(([tag]) => tag)),
  Study: new Set(LEVEL_TAGS.Study.orthanc.map(([tag]) => tag)),
  Series: new Set(LEVEL_TAGS.Series.orthanc.map(([tag]) => tag)),
  Instance: new Set(LEVEL_TAGS.Instance.orthanc.map(([tag]) => tag)),
};

export function planFind(request: FindRequest, features: CoreFeatures): FindPlan {
  const level = request.Level;
  if (!LEVELS.includes(level)) throw new CoreError(400, `Unknown resource level: ${String(level)}`);
  const depth = levelIndex(level);
  const query: Record<string, string> = {};
  const cheapAncestors: Record<string, string> = {};
  const deeperQuery: Record<string, string> = {};
  let deepest = depth;
  for (const [spelling, value] of Object.entries(request.Query ?? {})) {
    const tag = normalizeTag(spelling);
    if (!tag) throw new CoreError(400, `Unknown DICOM tag in the query: ${spelling}`);
    if (typeof value !== 'string') throw new CoreError(400, `The value of ${spelling} in the query must be a string`);
    if (value === '' || value === '*') continue;
    const key = toOrthancTag(tag);
    const tagLevel = levelOfTag(tag);
    if (tagLevel !== undefined && levelIndex(tagLevel) > depth) {
      deeperQuery[key] = value;
      deepest = Math.max(deepest, levelIndex(tagLevel));
      continue;
    }
    query[key] = value;
    // also narrows the lower-level search, for free when Orthanc indexes the attribute
    if (tagLevel !== undefined && ORTHANC_MAIN_TAGS[tagLevel].has(tag)) cheapAncestors[key] = value;
  }
  const labels = request.Labels ?? [];
  return {
    level,
    query,
    deeper: deepest > depth ? { level: LEVELS[deepest], query: { ...cheapAncestors, ...deeperQuery } } : undefined,
    empty: !features.labels && labels.length > 0 && (request.LabelsConstraint ?? 'All') !== 'None',
    caseSensitive: request.CaseSensitive ?? false,
    since: nonNegative(request.Since, 'Since'),
    limit: nonNegative(request.Limit, 'Limit'),
  };
}

function nonNegative(value: number | undefined, name: string): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0) throw new CoreError(400, `${name} must be a non-negative integer`);
  return value;
}

/** Attribute values read from files and study summaries, kept while the core is unchanged (see core-cache.ts). */
const FILE_VALUE_CACHE_ENTRIES = 50_000;

export class RemoteFinder {
  private readonly fileValues = new GenerationCache<string | null>(FILE_VALUE_CACHE_ENTRIES);
  private readonly studies = new GenerationCache<StudySummary>(FILE_VALUE_CACHE_ENTRIES);

  constructor(
    private readonly http: OrthancHttp,
    private readonly generation?: ChangeGeneration,
  ) {}

  async find(request: FindRequest, features: CoreFeatures): Promise<Resource[]> {
    const plan = planFind(request, features);
    if (plan.empty) return [];
    const requested = request.RequestedTags ?? [];
    if (!plan.deeper) {
      const nativeTags = features.requestedTags && requested.length > 0;
      const answers = await this.http.json<unknown[]>('POST', '/tools/find', {
        ...this.body(plan, request, features, true),
        ...(nativeTags ? { RequestedTags: orthancTags(requested) } : {}),
      });
      const resources = answers.map(normalizeResource);
      if (requested.length === 0) return resources;
      if (nativeTags) return resources.map((r) => ({ ...r, RequestedTags: rekeyRequestedTags(r.RequestedTags, requested) }));
      return this.withRequestedTags(resources, requested);
    }
    const ids = page(await this.idsMatchingDeeper(plan, request, features), plan);
    const found = await mapLimit(ids, RESOURCE_CONCURRENCY, (id) =>
      this.http.jsonOrUndefined<unknown>('GET', `/${LEVEL_PATH[plan.level]}/${id}`),
    );
    // a resource deleted between the two calls is simply left out
    const resources = found.filter((r) => r !== undefined).map(normalizeResource);
    return requested.length === 0 ? resources : this.withRequestedTags(resources, requested);
  }

  async findIds(request: FindRequest, features: CoreFeatures): Promise<string[]> {
    const plan = planFind(request, features);
    if (plan.empty) return [];
    if (!plan.deeper) return this.http.json<string[]>('POST', '/tools/find', this.body(plan, request, features, false));
    return page(await this.idsMatchingDeeper(plan, request, features), plan);
  }

  /** The Orthanc body for the requested level; paging goes to the core only when nothing is filtered here. */
  private body(plan: FindPlan, request: FindRequest, features: CoreFeatures, expand: boolean): Record<string, unknown> {
    const paged = !plan.deeper;
    return {
      Level: plan.level,
      Query: plan.query,
      Expand: expand,
      CaseSensitive: plan.caseSensitive,
      ...(paged && plan.since > 0 ? { Since: plan.since } : {}),
      ...(paged && plan.limit > 0 ? { Limit: plan.limit } : {}),
      ...(features.labels && request.Labels && request.Labels.length > 0
        ? { Labels: request.Labels, LabelsConstraint: request.LabelsConstraint ?? 'All' }
        : {}),
    };
  }

  /** Identifiers matching every constraint, in the core's order, before paging. */
  private async idsMatchingDeeper(plan: FindPlan, request: FindRequest, features: CoreFeatures): Promise<string[]> {
    const deeper = plan.deeper as NonNullable<FindPlan['deeper']>;
    const lower = await this.http.json<unknown[]>('POST', '/tools/find', {
      Level: deeper.level,
      Query: deeper.query,
      Expand: true,
      CaseSensitive: plan.caseSensitive,
    });
    if (lower.length === 0) return [];
    const ancestors = await this.ancestorsAt(lower.map(normalizeResource), plan.level);
    if (ancestors.size === 0) return [];
    const candidates = await this.http.json<string[]>('POST', '/tools/find', this.body(plan, request, features, false));
    return candidates.filter((id) => ancestors.has(id));
  }

  /** The ancestors at `level` of lower-level resources (one GET per distinct intermediate parent). */
  private async ancestorsAt(resources: Resource[], level: ResourceLevel): Promise<Set<string>> {
    const target = levelIndex(level);
    let current = new Set(resources.map(parentOf));
    for (let depth = levelIndex(resources[0].Type) - 1; depth > target; depth--) {
      const path = LEVEL_PATH[LEVELS[depth]];
      const parents = await mapLimit([...current], RESOURCE_CONCURRENCY, async (id) => {
        const parent = await this.http.jsonOrUndefined<unknown>('GET', `/${path}/${id}`);
        return parent === undefined ? '' : parentOf(normalizeResource(parent));
      });
      current = new Set(parents);
    }
    current.delete('');
    return current;
  }

  private async withRequestedTags(resources: Resource[], requested: string[]): Promise<Resource[]> {
    // read after the search: values cached at this sequence number describe the core as the search saw it or later
    const seq = resources.length > 0 ? await this.generation?.current() : undefined;
    const fileValues = { cache: this.fileValues, seq, studies: this.studies };
    return mapLimit(resources, RESOURCE_CONCURRENCY, async (resource) => ({
      ...resource,
      RequestedTags: await new RequestedTagsEmulator(this.http, resource, fileValues).answer(requested),
    }));
  }
}

function orthancTags(spellings: string[]): string[] {
  return spellings.map(normalizeTag).filter((tag): tag is string => tag !== undefined).map(toOrthancTag);
}

function page(ids: string[], plan: FindPlan): string[] {
  return ids.slice(plan.since, plan.limit > 0 ? plan.since + plan.limit : undefined);
}
