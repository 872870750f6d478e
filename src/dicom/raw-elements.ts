/**
 * Walks the elements of a data set in memory and records where each value lies, so that
 * GET /instances/{id}/content/... can answer the bytes exactly as they are in the file (on the one
 * element walker, element-walker.ts).
 */
import {
  DicomScanError, ElementWalker, hexTag, implicitVr, ITEM,
  ITEM_DELIMITATION, MAX_DEPTH, nestedEncoding, PIXEL_DATA, SEQUENCE_DELIMITATION, UNDEFINED_LENGTH,
} from './element-walker';
import type { ElementEncoding, ElementHeader } from './element-walker';

export interface RawElement {
  tag: string;
  vr: string;
  /** Offset of the value in the buffer, and its length (undefined length: see items). */
  offset: number;
  length: number;
  /** Items of a sequence (or fragments of encapsulated Pixel Data). */
  items?: RawItem[];
}

export interface RawItem {
  offset: number;
  length: number;
  elements: RawElement[];
}

export type RawEncoding = ElementEncoding;

/** Elements between `start` and `end` (the end of the buffer for the top-level data set). */
export function walkElements(buffer: Buffer, encoding: RawEncoding, start: number, end = buffer.length): RawElement[] {
  return walkScope(new ElementWalker(buffer.subarray(0, end), true, start), encoding, 0);
}

/** The elements up to the end of the walker's bytes or an item delimiter. */
function walkScope(walker: ElementWalker, encoding: RawEncoding, depth: number): RawElement[] {
  const out: RawElement[] = [];
  while (walker.offset + 8 <= walker.buffer.length) {
    const header = walker.header(encoding);
    if (header.tag === ITEM_DELIMITATION) break; // end of an undefined-length item
    const tag = hexTag(header.tag);
    const vr = header.vr || implicitVr(header.tag);
    const offset = header.valueOffset;
    if (vr === 'SQ' || header.length === UNDEFINED_LENGTH) {
      const items = readItems(walker, encoding, header, depth + 1);
      out.push({ tag, vr: header.tag === PIXEL_DATA ? vr : 'SQ', offset, length: walker.offset - offset, items });
      continue;
    }
    out.push({ tag, vr, offset, length: header.length });
    walker.offset = offset + header.length;
  }
  return out;
}

/** The items of a sequence (or the fragments of encapsulated Pixel Data), leaving the walker after them. */
function readItems(walker: ElementWalker, encoding: RawEncoding, header: ElementHeader, depth: number): RawItem[] {
  if (depth > MAX_DEPTH) throw new DicomScanError('sequences nested too deeply');
  const all = walker.buffer;
  const nested = nestedEncoding(header, encoding);
  const end = header.length === UNDEFINED_LENGTH ? all.length : header.valueOffset + header.length;
  const inner = new ElementWalker(all.subarray(0, end), true, header.valueOffset);
  const items: RawItem[] = [];
  while (inner.offset + 8 <= end) {
    const item = inner.header(nested);
    if (item.tag === SEQUENCE_DELIMITATION) break;
    if (item.tag !== ITEM) throw new Error(`Unexpected ${hexTag(item.tag)} in a sequence`);
    const offset = item.valueOffset;
    if (header.tag === PIXEL_DATA) {
      items.push({ offset, length: item.length, elements: [] });
      inner.offset = offset + item.length;
      continue;
    }
    const itemEnd = item.length === UNDEFINED_LENGTH ? end : offset + item.length;
    const scope = new ElementWalker(all.subarray(0, itemEnd), true, offset);
    const elements = walkScope(scope, nested, depth + 1);
    // an undefined-length item ends after its delimiter (read by walkScope)
    const stop = item.length === UNDEFINED_LENGTH ? Math.min(scope.offset, end) : itemEnd;
    items.push({ offset, length: stop - offset, elements });
    inner.offset = stop;
  }
  walker.offset = header.length === UNDEFINED_LENGTH ? inner.offset : end;
  return items;
}
