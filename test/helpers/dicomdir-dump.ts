/** DCMTK's view of a DICOMDIR (dcmdump prints each directory record with its offset), for the DICOMDIR tests. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from './dcmtk';

export interface DumpedRecord {
  offset: number;
  type: string;
  /** "gggg,eeee" → the value as dcmdump prints it ('' for an empty one). */
  keys: Record<string, string>;
}

export interface DicomDirDump {
  code: number;
  output: string;
  /** Top-level elements of the data set. */
  root: Record<string, string>;
  records: DumpedRecord[];
}

export async function dumpDicomDir(bytes: Buffer): Promise<DicomDirDump> {
  const dir = mkdtempSync(join(tmpdir(), 'dicomdir-'));
  try {
    writeFileSync(join(dir, 'DICOMDIR'), bytes);
    const { code, output } = await runTool('dcmdump', ['+U8', join(dir, 'DICOMDIR')]);
    const root: Record<string, string> = {};
    const records: DumpedRecord[] = [];
    let current: DumpedRecord | undefined;
    for (const line of output.split('\n')) {
      const offset = /^\s*#\s+offset=\$(\d+)/.exec(line);
      if (offset) {
        current = { offset: Number(offset[1]), type: '', keys: {} };
        records.push(current);
        continue;
      }
      const element = /^(\s*)\(([0-9a-f]{4},[0-9a-f]{4})\) (\w\w) (?:\[(.*?)\]|=?(\S+))/.exec(line);
      if (!element) continue;
      const [, indent, tag, , text, word] = element;
      const value = line.includes('(no value available)') ? '' : (text ?? word);
      if (indent.length === 0) root[tag] = value;
      else if (current && indent.length === 4) {
        current.keys[tag] = value;
        if (tag === '0004,1430') current.type = value;
      }
    }
    return { code, output, root, records };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const OFFSET_KEYS = ['0004,1400', '0004,1420'];

/**
 * The records with every offset replaced by the index of the record it points at ('-' for 0), so that two
 * DICOMDIRs whose headers differ in length (UIDs, implementation names) compare equal when their
 * structure and keys are.
 */
export function structureOf(dump: DicomDirDump): { fileSetId?: string; consistency?: string; first: string; last: string; records: Array<Record<string, string>> } {
  const index = new Map(dump.records.map((r, i) => [String(r.offset), String(i)]));
  const target = (value: string | undefined): string => (value === '0' ? '-' : (index.get(value ?? '') ?? `bad offset ${value}`));
  return {
    fileSetId: dump.root['0004,1130'],
    consistency: dump.root['0004,1212'],
    first: target(dump.root['0004,1200']),
    last: target(dump.root['0004,1202']),
    records: dump.records.map((r) => Object.fromEntries(Object.entries(r.keys).map(([tag, value]) => [tag, OFFSET_KEYS.includes(tag) ? target(value) : value]))),
  };
}
