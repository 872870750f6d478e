/**
 * Text decoding by Specific Character Set (0008,0005), PS3.5 6.1 and PS3.3 C.12.1.1.2.
 *
 * Why this exists: dcmjs 0.51 decodes text while it parses, and gets several cases wrong:
 *  - more than one value in (0008,0005) (every ISO 2022 code extension, e.g. "\ISO 2022 IR 87") throws
 *    "Using multiple character sets is not supported" unless ignoreErrors, and then only value 1 is used;
 *  - escape sequences are never interpreted (ISO 2022 IR 149 is fed whole to an EUC-KR decoder, ...);
 *  - text inside sequence items is always decoded as windows-1252, whatever the character set
 *    (every item gets a fresh stream with dcmjs's default decoder);
 *  - ST and UT values are split at backslashes although they are single-valued.
 * `readDicomFileWithCharsets` reads with dcmjs but keeps text as undecoded bytes, then decodes every
 * SH/LO/ST/LT/UT/UC/PN value here with `decodeText`.
 */
import { TextDecoder } from 'node:util';
import * as dcmjs from 'dcmjs';
import { CHARSET_TEXT_VRS, SINGLE_VALUED_TEXT_VRS } from './dictionary';

type ElementKind =
  | 'ascii'
  | 'latin1'
  | 'sbcs'
  | 'katakana'
  | 'jis0208'
  | 'jis0212'
  | 'ksx1001'
  | 'gb2312'
  | 'replacement';

/** A graphic character set that can be invoked in G0 or G1 (ISO 2022 terms). */
interface CodeElement {
  kind: ElementKind;
  /** TextDecoder label for 'sbcs', 'ksx1001', 'gb2312'. */
  label?: string;
  multiByte: boolean;
}

const ASCII: CodeElement = { kind: 'ascii', multiByte: false };
const LATIN1: CodeElement = { kind: 'latin1', multiByte: false };
const KATAKANA: CodeElement = { kind: 'katakana', multiByte: false };
const JIS_X_0208: CodeElement = { kind: 'jis0208', multiByte: true };
const JIS_X_0212: CodeElement = { kind: 'jis0212', multiByte: true };
const KS_X_1001: CodeElement = { kind: 'ksx1001', label: 'euc-kr', multiByte: true };
const GB_2312: CodeElement = { kind: 'gb2312', label: 'gbk', multiByte: true };
const REPLACEMENT: CodeElement = { kind: 'replacement', multiByte: false };

function singleByte(label: string): CodeElement {
  return { kind: 'sbcs', label, multiByte: false };
}

/** The G1 (upper half) set of each ISO 8859 style defined term, keyed by ISO-IR number. */
const UPPER_HALF_SETS: Readonly<Record<string, CodeElement>> = {
  '100': LATIN1,
  '101': singleByte('iso-8859-2'),
  '109': singleByte('iso-8859-3'),
  '110': singleByte('iso-8859-4'),
  '144': singleByte('iso-8859-5'),
  '127': singleByte('iso-8859-6'),
  '126': singleByte('iso-8859-7'),
  '138': singleByte('iso-8859-8'),
  '148': singleByte('iso-8859-9'), // WHATWG maps it to windows-1254, identical in A0-FF
  '166': singleByte('tis-620'), // windows-874, identical to TIS 620 in A0-FF
  '13': KATAKANA,
  '149': KS_X_1001,
  '58': GB_2312,
};

/** ISO 2022 designations DICOM uses (PS3.3 Table C.12-3/C.12-4), keyed by the bytes after ESC. */
const ESCAPES: ReadonlyArray<{ bytes: readonly number[]; slot: 'G0' | 'G1'; element: CodeElement }> = [
  { bytes: [0x28, 0x42], slot: 'G0', element: ASCII }, // ESC ( B  ISO-IR 6
  { bytes: [0x28, 0x4a], slot: 'G0', element: ASCII }, // ESC ( J  JIS X 0201 Romaji, read as ASCII (see below)
  { bytes: [0x29, 0x49], slot: 'G1', element: KATAKANA }, // ESC ) I  JIS X 0201 Katakana
  { bytes: [0x2d, 0x41], slot: 'G1', element: LATIN1 }, // ESC - A  ISO-IR 100
  { bytes: [0x2d, 0x42], slot: 'G1', element: singleByte('iso-8859-2') },
  { bytes: [0x2d, 0x43], slot: 'G1', element: singleByte('iso-8859-3') },
  { bytes: [0x2d, 0x44], slot: 'G1', element: singleByte('iso-8859-4') },
  { bytes: [0x2d, 0x4c], slot: 'G1', element: singleByte('iso-8859-5') },
  { bytes: [0x2d, 0x47], slot: 'G1', element: singleByte('iso-8859-6') },
  { bytes: [0x2d, 0x46], slot: 'G1', element: singleByte('iso-8859-7') },
  { bytes: [0x2d, 0x48], slot: 'G1', element: singleByte('iso-8859-8') },
  { bytes: [0x2d, 0x4d], slot: 'G1', element: singleByte('iso-8859-9') },
  { bytes: [0x2d, 0x54], slot: 'G1', element: singleByte('tis-620') },
  { bytes: [0x24, 0x42], slot: 'G0', element: JIS_X_0208 }, // ESC $ B  ISO-IR 87
  { bytes: [0x24, 0x40], slot: 'G0', element: JIS_X_0208 }, // ESC $ @  JIS C 6226-1978, seen in old files
  { bytes: [0x24, 0x28, 0x44], slot: 'G0', element: JIS_X_0212 }, // ESC $ ( D  ISO-IR 159
  { bytes: [0x24, 0x29, 0x43], slot: 'G1', element: KS_X_1001 }, // ESC $ ) C  ISO-IR 149
  { bytes: [0x24, 0x29, 0x41], slot: 'G1', element: GB_2312 }, // ESC $ ) A  ISO-IR 58
];

/** What one value of (0008,0005) means. */
type CharsetTerm =
  | { kind: 'default' }
  | { kind: 'iso'; ir: string; iso2022: boolean }
  | { kind: 'whole'; label: string } // UTF-8, GB18030, GBK: no code extensions, decode the value at once
  | { kind: 'unknown'; term: string };

const WHOLE_TERMS: Readonly<Record<string, string>> = { 'ISO IR 192': 'utf-8', GB18030: 'gb18030', GBK: 'gbk' };

function parseTerm(raw: string): CharsetTerm {
  // Tolerate the usual misspellings: "ISO-IR 100", "ISO_IR_100", "iso ir 100".
  const term = raw.trim().toUpperCase().replace(/[-_\s]+/g, ' ');
  if (term === '') return { kind: 'default' };
  const whole = WHOLE_TERMS[term];
  if (whole) return { kind: 'whole', label: whole };
  const iso = /^ISO (2022 )?IR (\d+)$/.exec(term);
  if (iso) {
    const ir = iso[2];
    if (ir === '6') return { kind: 'default' };
    if (UPPER_HALF_SETS[ir] || ir === '87' || ir === '159') return { kind: 'iso', ir, iso2022: iso[1] !== undefined };
  }
  return { kind: 'unknown', term: raw.trim() };
}

/** Split a (0008,0005) value as dcmjs or the native REST API give it ("\ISO 2022 IR 87") into terms. */
export function parseSpecificCharacterSet(value: string | readonly string[] | undefined | null): string[] {
  if (value === undefined || value === null) return [];
  const values = typeof value === 'string' ? value.split('\\') : [...value];
  return values.map((v) => v.trim());
}

/** True when `decodeText` understands every term (unknown terms fall back to Latin-1). */
export function isSupportedCharacterSet(specificCharacterSet: readonly string[]): boolean {
  return specificCharacterSet.every((t) => parseTerm(t).kind !== 'unknown');
}

export interface DecodeTextOptions {
  /**
   * Character set assumed for bytes above 0x7F that no designation covers, e.g. a data set without
   * (0008,0005) holding Latin-1 text. A defined term ("ISO_IR 100", "ISO_IR 192", "GB18030", ...);
   * default: the process-wide default encoding (`setDefaultEncoding`, Orthanc's "DefaultEncoding").
   */
  fallbackCharacterSet?: string;
}

/**
 * Orthanc's encoding names (option "DefaultEncoding", /tools/default-encoding) and the Specific Character
 * Set term each stands for (Orthanc's GetDicomSpecificCharacterSet). Windows1251 has no DICOM term.
 */
const ORTHANC_ENCODINGS: Readonly<Record<string, string | undefined>> = {
  Ascii: 'ISO_IR 6',
  Utf8: 'ISO_IR 192',
  Latin1: 'ISO_IR 100',
  Latin2: 'ISO_IR 101',
  Latin3: 'ISO_IR 109',
  Latin4: 'ISO_IR 110',
  Latin5: 'ISO_IR 148',
  Cyrillic: 'ISO_IR 144',
  Windows1251: undefined,
  Arabic: 'ISO_IR 127',
  Greek: 'ISO_IR 126',
  Hebrew: 'ISO_IR 138',
  Thai: 'ISO_IR 166',
  Japanese: 'ISO_IR 13',
  Chinese: 'GB18030',
  JapaneseKanji: 'ISO 2022 IR 87',
  Korean: 'ISO 2022 IR 149',
  SimplifiedChinese: 'ISO 2022 IR 58',
};

/** Orthanc's canonical spelling of an encoding name (matched case-insensitively, as Orthanc does), or undefined. */
export function orthancEncodingName(name: string): string | undefined {
  const upper = name.toUpperCase();
  return Object.keys(ORTHANC_ENCODINGS).find((known) => known.toUpperCase() === upper);
}

/**
 * The encoding used for text of data sets without (0008,0005): one setting for the whole process, so the
 * native routes, DICOMweb and the index all decode alike. Set from the configuration at start-up and
 * by PUT /tools/default-encoding.
 */
let defaultEncoding = 'Latin1';

export function getDefaultEncoding(): string {
  return defaultEncoding;
}

/** `name` is one of Orthanc's encoding names (any case); throws on an unknown one. */
export function setDefaultEncoding(name: string): void {
  const known = orthancEncodingName(name);
  if (known === undefined) throw new RangeError(`Unknown encoding: ${name}`);
  defaultEncoding = known;
}

/** The Specific Character Set term of the default encoding; undefined for Windows1251 (no DICOM term). */
export function defaultCharacterSet(): string | undefined {
  return ORTHANC_ENCODINGS[defaultEncoding];
}

function defaultFallback(): CharsetTerm {
  const term = ORTHANC_ENCODINGS[defaultEncoding];
  // Windows-1251 is not a DICOM character set, but Orthanc accepts it as the default: decode whole values with it.
  return term === undefined ? { kind: 'whole', label: 'windows-1251' } : parseTerm(term);
}

const decoders = new Map<string, TextDecoder>();

function decoderFor(label: string): TextDecoder {
  let decoder = decoders.get(label);
  if (!decoder) {
    decoder = new TextDecoder(label);
    decoders.set(label, decoder);
  }
  return decoder;
}

function bytesToCodePoints(bytes: readonly number[] | Uint8Array): string {
  let out = '';
  // Chunked: String.fromCharCode with a huge spread overflows the stack.
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...Array.from(bytes.slice(i, i + 8192)));
  }
  return out;
}

function decodeRun(element: CodeElement, bytes: number[]): string {
  switch (element.kind) {
    case 'ascii':
    case 'latin1':
      return bytesToCodePoints(bytes);
    case 'katakana':
      // JIS X 0201 katakana A1-DF map onto the half-width forms U+FF61-U+FF9F.
      return bytes.map((b) => (b >= 0xa1 && b <= 0xdf ? String.fromCharCode(0xff61 + b - 0xa1) : '\uFFFD')).join('');
    case 'jis0208':
      // 7-bit JIS X 0208 pairs become EUC-JP by setting the high bits.
      return decoderFor('euc-jp').decode(Uint8Array.from(bytes, (b) => b | 0x80));
    case 'jis0212': {
      // EUC-JP code set 3: SS3 (0x8F) before each high-bit pair.
      const euc: number[] = [];
      for (let i = 0; i + 1 < bytes.length; i += 2) euc.push(0x8f, bytes[i] | 0x80, bytes[i + 1] | 0x80);
      return decoderFor('euc-jp').decode(Uint8Array.from(euc));
    }
    case 'replacement':
      return '\uFFFD'.repeat(bytes.length);
    default:
      return decoderFor(element.label ?? 'latin1').decode(Uint8Array.from(bytes));
  }
}

/** Collects consecutive bytes decoded by the same set, so TextDecoder sees whole runs. */
class RunCollector {
  private readonly parts: string[] = [];
  private element: CodeElement | undefined;
  private bytes: number[] = [];

  push(element: CodeElement, ...bytes: number[]): void {
    if (element !== this.element) this.flush();
    this.element = element;
    this.bytes.push(...bytes);
  }

  flush(): void {
    if (this.element && this.bytes.length > 0) this.parts.push(decodeRun(this.element, this.bytes));
    this.bytes = [];
    this.element = undefined;
  }

  text(): string {
    this.flush();
    return this.parts.join('');
  }
}

const ESC = 0x1b;

function matchEscape(bytes: Uint8Array, at: number): (typeof ESCAPES)[number] | undefined {
  return ESCAPES.find((e) => e.bytes.every((b, k) => bytes[at + k] === b));
}

/** Skip an unknown ISO 2022 escape: intermediate bytes 02/00-02/15, then one final byte. */
function skipUnknownEscape(bytes: Uint8Array, at: number): number {
  let i = at;
  while (i < bytes.length && bytes[i] >= 0x20 && bytes[i] <= 0x2f) i++;
  return Math.min(i + 1, bytes.length);
}

function isPrintableGl(b: number): boolean {
  return b > 0x20 && b < 0x7f;
}

/**
 * Bytes at which the character sets go back to their initial designation (PS3.5 6.1.2.5.3):
 * end of line (CR, LF, FF, TAB), the value delimiter, and the PN component/group delimiters.
 */
function resetsDesignation(b: number, vr: string): boolean {
  if (b === 0x0d || b === 0x0a || b === 0x0c || b === 0x09) return true;
  if (b === 0x5c) return !SINGLE_VALUED_TEXT_VRS.has(vr);
  if (b === 0x5e || b === 0x3d) return vr === 'PN';
  return false;
}

function initialDesignation(term: CharsetTerm): { g0: CodeElement; g1: CodeElement | undefined } {
  if (term.kind === 'iso') {
    const g1 = UPPER_HALF_SETS[term.ir];
    // IR 87/159 cannot be the initial set (they have no ASCII); G0 stays ASCII until escaped.
    return { g0: ASCII, g1 };
  }
  return { g0: ASCII, g1: undefined };
}

function decodeWithExtensions(
  bytes: Uint8Array,
  initial: { g0: CodeElement; g1: CodeElement | undefined },
  vr: string,
  fallbackG1: CodeElement,
): string {
  const out = new RunCollector();
  let g0 = initial.g0;
  let g1 = initial.g1;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b === ESC) {
      const escape = matchEscape(bytes, i + 1);
      if (escape) {
        if (escape.slot === 'G0') g0 = escape.element;
        else g1 = escape.element;
        i += 1 + escape.bytes.length;
      } else {
        out.push(REPLACEMENT, b);
        i = skipUnknownEscape(bytes, i + 1);
      }
      continue;
    }
    if (b < 0x80) {
      if (g0.multiByte && isPrintableGl(b)) {
        // Two-byte G0 sets (JIS X 0208/0212): 0x5C, 0x5E, 0x3D here are character bytes, not delimiters.
        if (i + 1 < bytes.length && isPrintableGl(bytes[i + 1])) {
          out.push(g0, b, bytes[i + 1]);
          i += 2;
        } else {
          out.push(REPLACEMENT, b);
          i += 1;
        }
        continue;
      }
      // Single-byte GL: ASCII. JIS X 0201 Romaji differs only at 05/12 (YEN SIGN) and 07/14, and
      // 05/12 is the value delimiter whatever its glyph (PS3.18 F.2.4), so it stays a backslash.
      out.push(ASCII, b);
      if (resetsDesignation(b, vr)) {
        g0 = initial.g0;
        g1 = initial.g1;
      }
      i += 1;
      continue;
    }
    const upper = g1 ?? fallbackG1;
    if (upper.multiByte) {
      if (i + 1 < bytes.length && bytes[i + 1] >= 0x80) {
        out.push(upper, b, bytes[i + 1]);
        i += 2;
      } else {
        out.push(REPLACEMENT, b);
        i += 1;
      }
      continue;
    }
    out.push(upper, b);
    i += 1;
  }
  return out.text();
}

function isPlainAscii(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b >= 0x80 || b === ESC) return false;
  return true;
}

/**
 * Decode the bytes of one text element (all its values, backslashes included) to a Unicode string.
 * `specificCharacterSet` is the list of (0008,0005) values in force (empty: default repertoire);
 * `vr` decides which delimiters reset ISO 2022 designations (PN: ^ and =; multi-valued VRs: \).
 * The result keeps the delimiters; split it with `splitTextValues`.
 */
export function decodeText(
  bytes: Uint8Array,
  specificCharacterSet: readonly string[],
  vr: string,
  options: DecodeTextOptions = {},
): string {
  const terms = specificCharacterSet.map(parseTerm);
  const first: CharsetTerm = terms[0] ?? { kind: 'default' };
  const fallback = options.fallbackCharacterSet === undefined ? defaultFallback() : parseTerm(options.fallbackCharacterSet);

  if (first.kind === 'whole') return decoderFor(first.label).decode(bytes);
  if (isPlainAscii(bytes)) return bytesToCodePoints(bytes);
  if (first.kind === 'default' && terms.length <= 1 && fallback.kind === 'whole') {
    // No declared character set but a UTF-8 (or GB18030) default was configured.
    return decoderFor(fallback.label).decode(bytes);
  }
  const fallbackG1 = (fallback.kind === 'iso' ? UPPER_HALF_SETS[fallback.ir] : undefined) ?? LATIN1;
  // One code path for single sets and ISO 2022 extensions: without escapes, GL is ASCII and GR the set's upper half.
  return decodeWithExtensions(bytes, initialDesignation(first), vr, fallbackG1);
}

/** Split decoded text into values: at backslashes, except for the single-valued ST, LT, UT, UR. */
export function splitTextValues(text: string, vr: string): string[] {
  return SINGLE_VALUED_TEXT_VRS.has(vr) ? [text] : text.split('\\');
}

// ---------------------------------------------------------------------------------------------
// Reading Part 10 files with dcmjs while keeping text undecoded.

/** The parts of dcmjs's runtime we hook into; not in its public typings. */
interface DcmjsInternals {
  ReadBufferStream: { prototype: { setDecoder: (decoder: unknown) => void } };
  DicomMessage: {
    _readTag: (...args: unknown[]) => { tag?: { toCleanString?: () => string }; values?: unknown[] };
  };
  ValueRepresentation: { createByTypeString: (type: string) => { applyFormatting: (value: unknown) => unknown } };
}

const internals = dcmjs.data as unknown as DcmjsInternals;

/** dcmjs's default decoder is WHATWG "latin1" = windows-1252, a bijection on bytes: invert it. */
const WINDOWS_1252_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const decoder = new TextDecoder('latin1');
  const map = new Map<string, number>();
  for (let b = 0; b < 256; b++) map.set(decoder.decode(Uint8Array.of(b)), b);
  return map;
})();

function undecodedBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = WINDOWS_1252_TO_BYTE.get(text[i]) ?? 0x3f;
  return bytes;
}

function hasHighCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80 || text.charCodeAt(i) === ESC) return true;
  return false;
}

/** Runs dcmjs's synchronous reader with its charset handling switched off: text stays windows-1252. */
function withUndecodedText<T>(read: () => T): T {
  const streamProto = internals.ReadBufferStream.prototype;
  const message = internals.DicomMessage;
  const originalSetDecoder = streamProto.setDecoder;
  const originalReadTag = message._readTag;
  streamProto.setDecoder = () => undefined;
  message._readTag = function patchedReadTag(this: unknown, ...args: unknown[]) {
    const info = originalReadTag.apply(this, args);
    // dcmjs throws on multi-valued or unknown (0008,0005); its raw values (kept in _rawValue) are what we use.
    if (info.tag?.toCleanString?.() === '00080005') info.values = ['ISO_IR 192'];
    return info;
  };
  try {
    // Safe to patch: the read is synchronous, nothing else runs until the finally block.
    return read();
  } finally {
    streamProto.setDecoder = originalSetDecoder;
    message._readTag = originalReadTag;
  }
}

/** The character set terms an element list declares, from the raw value dcmjs keeps. */
function declaredCharacterSet(element: dcmjs.data.DicomElement | undefined): string[] | undefined {
  if (!element) return undefined;
  const raw = element._rawValue ?? element.Value;
  if (!Array.isArray(raw)) return undefined;
  return raw.map((v) => String(v ?? '').trim());
}

/** Values of the element as windows-1252 text, rejoined with backslashes as they were in the file. */
function rawText(element: dcmjs.data.DicomElement): string | undefined {
  const raw = element._rawValue;
  if (typeof raw === 'string') return raw;
  if (raw instanceof String) return raw.toString();
  if (Array.isArray(raw) && raw.every((v) => typeof v === 'string')) return raw.join('\\');
  return undefined;
}

function redecodeElement(element: dcmjs.data.DicomElement, charset: readonly string[], options: DecodeTextOptions): void {
  const raw = rawText(element);
  if (raw === undefined) return;
  const vr = element.vr;
  const singleValued = SINGLE_VALUED_TEXT_VRS.has(vr);
  // Pure ASCII decodes the same in every set; only ST/UT need fixing (dcmjs split them at '\').
  if (!hasHighCharacters(raw) && !(singleValued && Array.isArray(element.Value) && element.Value.length > 1)) return;
  const text = decodeText(undecodedBytes(raw), charset, vr, options);
  const representation = internals.ValueRepresentation.createByTypeString(vr);
  if (vr === 'PN') {
    element._rawValue = text;
    element.Value = representation.applyFormatting(text) as unknown[];
    return;
  }
  const values = splitTextValues(text, vr);
  element._rawValue = values;
  element.Value = values.map((v) => representation.applyFormatting(v));
}

/**
 * Decode every character-set dependent value of a data set read by `readDicomFileWithCharsets`,
 * honouring (0008,0005) in nested items (an item may declare its own). Mutates `dataset`.
 */
export function decodeDatasetText(
  dataset: dcmjs.data.DicomDataset,
  inherited: readonly string[] = [],
  options: DecodeTextOptions = {},
): void {
  const charset = declaredCharacterSet(dataset['00080005']) ?? inherited;
  for (const tag of Object.keys(dataset)) {
    const element = dataset[tag];
    if (element.vr === 'SQ') {
      for (const item of element.Value ?? []) {
        if (item && typeof item === 'object') decodeDatasetText(item as dcmjs.data.DicomDataset, charset, options);
      }
    } else if (CHARSET_TEXT_VRS.has(element.vr)) {
      redecodeElement(element, charset, options);
    }
  }
}

/**
 * Parse a Part 10 file with dcmjs, decoding text per (0008,0005) correctly (see the file comment).
 * The result has dcmjs's shape; as dcmjs does, (0008,0005) has Value ["ISO_IR 192"] (the strings are
 * Unicode now, so a dcmjs write-back is consistent) and keeps the file's own terms in `_rawValue`.
 */
export function readDicomFileWithCharsets(
  buffer: ArrayBuffer,
  readOptions: dcmjs.data.ReadOptions = {},
  decodeOptions: DecodeTextOptions = {},
): dcmjs.data.DicomDict {
  const file = withUndecodedText(() => dcmjs.data.DicomMessage.readFile(buffer, readOptions));
  decodeDatasetText(file.dict, [], decodeOptions);
  return file;
}
