/**
 * Walks the elements of a data set in memory and records where each value lies, so that
 * GET /instances/{id}/content/... can answer the bytes exactly as they are in the file.
 */
import { vrOfTag } from './dictionary';

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

export interface RawEncoding {
  littleEndian: boolean;
  explicitVr: boolean;
}

const UNDEFINED = 0xffffffff;
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT']);

class Reader {
  constructor(readonly buffer: Buffer, readonly encoding: RawEncoding, public at: number) {}
  u16(): number {
    const v = this.encoding.littleEndian ? this.buffer.readUInt16LE(this.at) : this.buffer.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    const v = this.encoding.littleEndian ? this.buffer.readUInt32LE(this.at) : this.buffer.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  tag(): string {
    const group = this.u16();
    const element = this.u16();
    return (group.toString(16).padStart(4, '0') + element.toString(16).padStart(4, '0')).toUpperCase();
  }
}

/** Elements between `start` and `end` (the end of the buffer for the top-level data set). */
export function walkElements(buffer: Buffer, encoding: RawEncoding, start: number, end = buffer.length): RawElement[] {
  const reader = new Reader(buffer, encoding, start);
  const out: RawElement[] = [];
  while (reader.at + 8 <= end) {
    const tag = reader.tag();
    if (tag === 'FFFEE00D') {
      reader.at += 4;
      break; // end of an undefined-length item
    }
    let vr: string;
    let length: number;
    if (encoding.explicitVr) {
      vr = buffer.toString('latin1', reader.at, reader.at + 2);
      reader.at += 2;
      if (LONG_VRS.has(vr)) {
        reader.at += 2;
        length = reader.u32();
      } else length = reader.u16();
    } else {
      length = reader.u32();
      vr = vrOfTag(tag);
    }
    const offset = reader.at;
    if (vr === 'SQ' || length === UNDEFINED) {
      const items = readItems(buffer, encoding, offset, length, end, tag === '7FE00010');
      out.push({ tag, vr: tag === '7FE00010' ? vr : 'SQ', offset, length: items.end - offset, items: items.items });
      reader.at = items.end;
      continue;
    }
    out.push({ tag, vr, offset, length });
    reader.at = offset + length;
  }
  return out;
}

function readItems(buffer: Buffer, encoding: RawEncoding, start: number, length: number, limit: number, fragments: boolean): { items: RawItem[]; end: number } {
  // items and delimiters are always encoded as implicit VR
  const itemEncoding: RawEncoding = { littleEndian: encoding.littleEndian, explicitVr: false };
  const reader = new Reader(buffer, itemEncoding, start);
  const end = length === UNDEFINED ? limit : start + length;
  const items: RawItem[] = [];
  while (reader.at + 8 <= end) {
    const tag = reader.tag();
    const itemLength = reader.u32();
    if (tag === 'FFFEE0DD') break;
    if (tag !== 'FFFEE000') throw new Error(`Unexpected ${tag} in a sequence`);
    const offset = reader.at;
    if (fragments) {
      items.push({ offset, length: itemLength, elements: [] });
      reader.at = offset + itemLength;
      continue;
    }
    // a nested encoding: implicit VR sequences keep their encoding (UN with undefined length: implicit VR)
    const elements = walkElements(buffer, encoding, offset, itemLength === UNDEFINED ? end : offset + itemLength);
    const last = elements.length ? elements[elements.length - 1] : undefined;
    const itemEnd = itemLength === UNDEFINED ? findItemEnd(offset, end, last) : offset + itemLength;
    items.push({ offset, length: itemEnd - offset, elements });
    reader.at = itemEnd;
  }
  return { items, end: length === UNDEFINED ? reader.at : end };
}

/** After the last element of an undefined-length item comes its delimiter (8 bytes). */
function findItemEnd(offset: number, end: number, last: RawElement | undefined): number {
  const at = last ? last.offset + last.length : offset;
  return Math.min(at + 8, end);
}
