/**
 * `RequestedTags` of /tools/find for cores that cannot answer them (Orthanc before 1.11, ApiVersion < 18),
 * with the embedded core's rules: computed attributes (counts, ModalitiesInStudy, SOPClassesInStudy) from the
 * resource's children; other attributes from its main DICOM tags, else from the file of its first instance.
 */
import { normalizeTag, tagToKeyword, toOrthancTag } from '../../dicom/dictionary';
import { LEVEL_PATH } from '../main-dicom-tags';
import type { Resource } from '../native-model';
import { mapLimit } from '../map-limit';
import type { GenerationCache } from './core-cache';
import type { OrthancHttp } from './orthanc-http';
import { childrenOf, normalizeResource } from './orthanc-resources';

/** Calls in flight for one resource's SOP classes (one metadata read per instance). */
const METADATA_CONCURRENCY = 8;

interface Statistics {
  CountStudies?: number;
  CountSeries?: number;
  CountInstances?: number;
}

/** The name an answer uses for a requested tag: its keyword, else "gggg,eeee" (as the embedded core does). */
export function requestedTagName(tag: string): string {
  return tagToKeyword(tag) ?? toOrthancTag(tag);
}

/** A core's native RequestedTags answer, keyed the way ours are whatever spelling the core chose. */
export function rekeyRequestedTags(answer: Record<string, string> | undefined, requested: string[]): Record<string, string> {
  const result: Record<string, string> = {};
  if (!answer) return result;
  for (const spelling of requested) {
    const tag = normalizeTag(spelling);
    if (!tag) continue;
    const name = requestedTagName(tag);
    const orthanc = toOrthancTag(tag);
    const value = [name, orthanc, orthanc.toLowerCase(), spelling].map((key) => answer[key]).find((v) => typeof v === 'string');
    if (value !== undefined) result[name] = value;
  }
  return result;
}

/**
 * Values read from files, by "{resource id}|{tag}" (null: the file has none), with the core's change generation
 * they were read at (see core-cache.ts): a search repeated on an unchanged core opens no file.
 */
export interface FileValueCache {
  cache: GenerationCache<string | null>;
  seq: string | undefined;
  /** A study's instance count and ModalitiesInStudy, by study id, under the same rule. */
  studies?: GenerationCache<StudySummary>;
}

export interface StudySummary {
  instances: number;
  modalities: string;
  /** SOPClassesInStudy, once asked (one metadata read per instance). */
  sopClasses?: string;
}

/** Computes the requested attributes of one resource; every core call is made at most once. */
export class RequestedTagsEmulator {
  private statistics?: Promise<Statistics>;
  private fileTags?: Promise<Record<string, unknown> | undefined>;
  private studySeriesList?: Promise<Resource[]>;

  constructor(
    private readonly http: OrthancHttp,
    private readonly resource: Resource,
    private readonly fileValues?: FileValueCache,
  ) {}

  async answer(requested: string[]): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    for (const spelling of requested) {
      const tag = normalizeTag(spelling);
      if (!tag) continue;
      const value = (await this.computed(tag)) ?? this.mainTag(tag) ?? (await this.fromFile(tag));
      if (value !== undefined) result[requestedTagName(tag)] = value;
    }
    return result;
  }

  private async computed(tag: string): Promise<string | undefined> {
    const r = this.resource;
    switch (`${r.Type}/${tag}`) {
      case 'Patient/00201200': // NumberOfPatientRelatedStudies
        return String(childrenOf(r).length);
      case 'Patient/00201202': // NumberOfPatientRelatedSeries
        return String((await this.stats()).CountSeries ?? 0);
      case 'Patient/00201204': // NumberOfPatientRelatedInstances
        return String((await this.stats()).CountInstances ?? 0);
      case 'Study/00201206': // NumberOfStudyRelatedSeries
        return String(childrenOf(r).length);
      case 'Study/00201208': // NumberOfStudyRelatedInstances
        // the series list (wanted anyway for ModalitiesInStudy and the first file) holds every instance
        return String((await this.studySummary()).instances);
      case 'Study/00080061': // ModalitiesInStudy
        return (await this.studySummary()).modalities;
      case 'Study/00080062': { // SOPClassesInStudy
        const summary = await this.studySummary();
        summary.sopClasses ??= await this.sopClassesInStudy();
        return summary.sopClasses;
      }
      case 'Series/00201209': // NumberOfSeriesRelatedInstances
        return String(childrenOf(r).length);
      default:
        return undefined;
    }
  }

  private mainTag(tag: string): string | undefined {
    const keyword = tagToKeyword(tag);
    if (!keyword) return undefined;
    const own = this.resource.MainDicomTags[keyword];
    if (own !== undefined) return own;
    return this.resource.Type === 'Study' ? this.resource.PatientMainDicomTags[keyword] : undefined;
  }

  private async fromFile(tag: string): Promise<string | undefined> {
    const key = `${this.resource.ID}|${tag}`;
    const cached = this.fileValues?.cache.get(key, this.fileValues.seq);
    if (cached !== undefined) return cached ?? undefined;
    this.fileTags ??= this.firstInstanceTags();
    const tags = await this.fileTags;
    const value = tags?.[toOrthancTag(tag).toLowerCase()];
    // sequences (arrays) and binary values (null) have no string form, as in the embedded core
    const answer = typeof value === 'string' ? value : undefined;
    this.fileValues?.cache.set(key, this.fileValues.seq, answer ?? null);
    return answer;
  }

  /** The study's series (one call gives their modalities, instance counts and the study's first instance). */
  private studySeries(): Promise<Resource[]> {
    this.studySeriesList ??= this.http
      .json<unknown[]>('GET', `/studies/${this.resource.ID}/series`)
      .then((series) => series.map(normalizeResource));
    return this.studySeriesList;
  }

  private stats(): Promise<Statistics> {
    const path = `/${LEVEL_PATH[this.resource.Type]}/${this.resource.ID}/statistics`;
    this.statistics ??= this.http.json<Statistics>('GET', path);
    return this.statistics;
  }

  private async studySummary(): Promise<StudySummary> {
    const cache = this.fileValues?.studies;
    const cached = cache?.get(this.resource.ID, this.fileValues?.seq);
    if (cached) return cached;
    const series = await this.studySeries();
    const modalities = series.map((s) => s.MainDicomTags.Modality).filter((m): m is string => !!m);
    const summary = { instances: series.reduce((sum, s) => sum + childrenOf(s).length, 0), modalities: distinctSorted(modalities) };
    cache?.set(this.resource.ID, this.fileValues?.seq, summary);
    return summary;
  }

  private async sopClassesInStudy(): Promise<string> {
    const instances = await this.http.json<Array<{ ID: string }>>('GET', `/studies/${this.resource.ID}/instances`);
    const classes = await mapLimit(instances, METADATA_CONCURRENCY, (i) => this.http.textOrUndefined(`/instances/${i.ID}/metadata/SopClassUid`));
    return distinctSorted(classes.filter((c): c is string => !!c));
  }

  /** Tags ("gggg,eeee" -> value) of the first instance under the resource, walking down first children. */
  private async firstInstanceTags(): Promise<Record<string, unknown> | undefined> {
    let current: Resource | undefined = this.resource;
    while (current && current.Type !== 'Instance') {
      const [first] = childrenOf(current);
      if (first === undefined) return undefined;
      if (current.Type === 'Series') {
        return this.http.jsonOrUndefined<Record<string, unknown>>('GET', `/instances/${first}/tags?short`);
      }
      if (current.Type === 'Study' && current === this.resource) {
        // the first series as listed in the study, from the series list when the study needs it anyway
        const series = (await this.studySeries()).find((s) => s.ID === first);
        if (series) {
          current = series;
          continue;
        }
      }
      const childPath: string = current.Type === 'Patient' ? 'studies' : 'series';
      const child: unknown = await this.http.jsonOrUndefined<unknown>('GET', `/${childPath}/${first}`);
      current = child === undefined ? undefined : normalizeResource(child);
    }
    if (!current) return undefined;
    return this.http.jsonOrUndefined<Record<string, unknown>>('GET', `/instances/${current.ID}/tags?short`);
  }
}

function distinctSorted(values: string[]): string {
  return [...new Set(values)].sort().join('\\');
}
