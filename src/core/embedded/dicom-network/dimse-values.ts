/**
 * Conversions between dcmjs "naturalized" data sets (what dcmjs-dimse gives and takes: keyword -> value)
 * and the string values of Orthanc's REST API.
 */
import { keywordToTag, normalizeTag, tagToKeyword, toOrthancTag, vrOfTag } from '../../../dicom/dictionary';

export type NaturalizedElements = Record<string, unknown>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A person name as dcmjs reads it ({Alphabetic, Ideographic, Phonetic}) back to its DICOM string form. */
function personName(value: Record<string, unknown>): string {
  const groups = [value.Alphabetic, value.Ideographic, value.Phonetic].map((g) => (typeof g === 'string' ? g : ''));
  while (groups.length > 1 && groups[groups.length - 1] === '') groups.pop();
  return groups.join('=');
}

/** A non-sequence value as Orthanc's string (multiple values joined by '\'); undefined for sequences and binaries. */
export function elementText(value: unknown): string | undefined {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (isRecord(value)) return 'Alphabetic' in value || 'Ideographic' in value || 'Phonetic' in value ? personName(value) : undefined;
  if (Array.isArray(value)) {
    const parts = value.map(elementText);
    return parts.every((p): p is string => p !== undefined) ? parts.join('\\') : undefined;
  }
  return undefined;
}

/** Keys of a naturalized data set that are attributes (dcmjs adds bookkeeping such as `_vrMap`). */
export function attributeKeys(elements: NaturalizedElements): string[] {
  return Object.keys(elements).filter((key) => !key.startsWith('_'));
}

/** The canonical tag ("0010,0010" -> "00100010") of a naturalized key: a keyword, or a hex tag for unknown ones. */
export function tagOfKey(key: string): string | undefined {
  return keywordToTag(key) ?? normalizeTag(key.replace(/^x/, ''));
}

/**
 * A naturalized value for a string from Orthanc's API: numbers stay strings (dcmjs writes them as given),
 * multiple values become a list.
 */
export function naturalValue(text: string): string | string[] {
  return text.includes('\\') ? text.split('\\') : text;
}

/** Orthanc's "simplify" JSON of an answer: keyword (or "gggg,eeee") -> string, sequences as lists of objects. */
export function simplifiedJson(elements: NaturalizedElements): Record<string, unknown> {
  const answer: Record<string, unknown> = {};
  for (const key of attributeKeys(elements).sort(byTag)) {
    const tag = tagOfKey(key);
    if (!tag) continue;
    const name = tagToKeyword(tag) ?? toOrthancTag(tag).toLowerCase();
    const value = elements[key];
    if (vrOfTag(tag) === 'SQ' && Array.isArray(value)) {
      answer[name] = value.filter(isRecord).map(simplifiedJson);
    } else {
      const text = elementText(value);
      answer[name] = text === undefined ? null : text;
    }
  }
  return answer;
}

/** Orthanc's full JSON of an answer: "gggg,eeee" -> { Name, Type, Value }. */
export function fullJson(elements: NaturalizedElements): Record<string, unknown> {
  const answer: Record<string, unknown> = {};
  for (const key of attributeKeys(elements).sort(byTag)) {
    const tag = tagOfKey(key);
    if (!tag) continue;
    const name = tagToKeyword(tag) ?? 'Unknown Tag & Data';
    const value = elements[key];
    const orthancTag = toOrthancTag(tag).toLowerCase();
    if (vrOfTag(tag) === 'SQ' && Array.isArray(value)) {
      answer[orthancTag] = { Name: name, Type: 'Sequence', Value: value.filter(isRecord).map(fullJson) };
    } else {
      const text = elementText(value);
      answer[orthancTag] = text === undefined ? { Name: name, Type: 'Null', Value: null } : { Name: name, Type: 'String', Value: text };
    }
  }
  return answer;
}

function byTag(a: string, b: string): number {
  return (tagOfKey(a) ?? a).localeCompare(tagOfKey(b) ?? b);
}
