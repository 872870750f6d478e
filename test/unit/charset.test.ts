import * as dcmjs from 'dcmjs';
import {
  decodeText,
  isSupportedCharacterSet,
  parseSpecificCharacterSet,
  readDicomFileWithCharsets,
  splitTextValues,
} from '../../src/dicom/charset';
import { TEST_META, silenceDcmjs } from '../helpers/dcmjs-test-file';

/** Bytes from a JS string whose chars are all < 0x100 (how the standard's listings read: "\x1b$B..."). */
function bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Bytes from PS3.5's column/row notation: "05/09 06/01" → 0x59 0x61. */
function fromColumnRow(listing: string): Uint8Array {
  return Uint8Array.from(listing.trim().split(/\s+/), (cr) => {
    const [column, row] = cr.split('/').map(Number);
    return column * 16 + row;
  });
}

describe('decodeText: PS3.5 Annex H, I, J, K examples', () => {
  it('H.3.1 Japanese, ISO 2022 IR 87 without a default G1 set', () => {
    const raw = fromColumnRow(
      '05/09 06/01 06/13 06/01 06/04 06/01 05/14 05/04 06/01 07/02 06/15 07/05 03/13 ' +
        '01/11 02/04 04/02 03/11 03/03 04/05 04/04 01/11 02/08 04/02 05/14 01/11 02/04 ' +
        '04/02 04/02 04/00 04/15 03/10 01/11 02/08 04/02 03/13 01/11 02/04 04/02 02/04 ' +
        '06/04 02/04 05/14 02/04 04/00 01/11 02/08 04/02 05/14 01/11 02/04 04/02 02/04 ' +
        '03/15 02/04 06/13 02/04 02/06 01/11 02/08 04/02',
    );
    expect(decodeText(raw, ['', 'ISO 2022 IR 87'], 'PN')).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('H.3.2 Japanese, ISO 2022 IR 13 (half-width katakana) with IR 87', () => {
    const raw = bytes(
      '\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J',
    );
    expect(decodeText(raw, ['ISO 2022 IR 13', 'ISO 2022 IR 87'], 'PN')).toBe('ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう');
  });

  it('I.2 Korean, ISO 2022 IR 149 designated in G1 by ESC $ ) C', () => {
    const raw = bytes('Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf');
    expect(decodeText(raw, ['', 'ISO 2022 IR 149'], 'PN')).toBe('Hong^Gildong=洪^吉洞=홍^길동');
  });

  it('J.3 Chinese, GB18030', () => {
    const raw = bytes('Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=');
    expect(decodeText(raw, ['GB18030'], 'PN')).toBe('Wang^XiaoDong=王^小东=');
  });

  it('J Chinese in UTF-8, ISO_IR 192', () => {
    const raw = bytes('Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=');
    expect(decodeText(raw, ['ISO_IR 192'], 'PN')).toBe('Wang^XiaoDong=王^小東=');
  });

  it('K.2 Chinese, ISO 2022 IR 58 (GB 2312 in G1)', () => {
    const raw = bytes('Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=');
    expect(decodeText(raw, ['', 'ISO 2022 IR 58'], 'PN')).toBe('Zhang^XiaoDong=张^小东=');
  });

  it('K Chinese text with a line end, ISO 2022 IR 58', () => {
    const raw = bytes('1. \x1b$)A\xb5\xda\xd2\xbb\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\x1b(B\r\n');
    expect(decodeText(raw, ['', 'ISO 2022 IR 58'], 'LT')).toBe('1. 第一行文字。\r\n');
  });

  it('GBK', () => {
    expect(decodeText(bytes('Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab='), ['GBK'], 'PN')).toBe('Wang^XiaoDong=王^小东=');
  });
});

describe('decodeText: single-byte character sets', () => {
  it.each([
    ['ISO_IR 100', 'Buc^J\xe9r\xf4me', 'Buc^Jérôme'],
    ['ISO_IR 100', '\xc4neas^R\xfcdiger', 'Äneas^Rüdiger'],
    ['ISO_IR 101', 'Wa\xb3\xeasa', 'Wałęsa'],
    ['ISO_IR 109', '\xa1\xa6\xb6', 'ĦĤĥ'],
    ['ISO_IR 110', '\xa1\xa2', 'Ąĸ'],
    ['ISO_IR 144', '\xbb\xee\xdace\xdc\xd1yp\xd3', 'Люкceмбypг'],
    ['ISO_IR 127', '\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1', 'قباني^لنزار'],
    ['ISO_IR 126', '\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2', 'Διονυσιος'],
    ['ISO_IR 138', '\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4', 'שרון^דבורה'],
    ['ISO_IR 148', '\xdd\xfd\xde\xfe\xd0\xf0', 'İıŞşĞğ'],
    ['ISO_IR 13', '\xd4\xcf\xc0\xde^\xc0\xdb\xb3', 'ﾔﾏﾀﾞ^ﾀﾛｳ'],
    ['ISO_IR 166', '\xa1\xb9', 'กน'],
    ['', 'Doe^John', 'Doe^John'],
    ['ISO_IR 6', 'Doe^John', 'Doe^John'],
  ])('%s', (charset, raw, expected) => {
    expect(decodeText(bytes(raw), charset === '' ? [] : [charset], 'PN')).toBe(expected);
  });

  it('reads Latin-1 C1 bytes as Latin-1, not windows-1252', () => {
    expect(decodeText(bytes('\x80\x9f'), ['ISO_IR 100'], 'LO')).toBe('\u0080\u009f');
  });

  it('tolerates common misspellings of defined terms', () => {
    expect(decodeText(bytes('J\xe9r\xf4me'), ['ISO-IR 100'], 'LO')).toBe('Jérôme');
    expect(decodeText(bytes('J\xe9r\xf4me'), [' iso_ir 100 '], 'LO')).toBe('Jérôme');
  });
});

describe('decodeText: code extensions and delimiters', () => {
  it('switches G1 between ISO 8859 parts', () => {
    const raw = bytes('J\xe9r\xf4me=\x1b-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2');
    expect(decodeText(raw, ['ISO 2022 IR 100', 'ISO 2022 IR 126'], 'PN')).toBe('Jérôme=Διονυσιος');
  });

  it('decodes JIS X 0212 (ISO 2022 IR 159)', () => {
    const raw = bytes('JISX0212: \x1b$BqV\x1b$(DiQ\x1b(J\n');
    expect(decodeText(raw, ['ISO 2022 IR 13', 'ISO 2022 IR 87', 'ISO 2022 IR 159'], 'LT')).toBe('JISX0212: 騏驎\n');
  });

  it('does not split at a 0x5C byte inside a two-byte JIS X 0208 character', () => {
    const raw = bytes(
      '\xd4\xcf\xc0\xde^\xc0\xdb\xb3\\\x1b$B\\3ED\x1b(J^\x1b$B\\\\O\\\x1b(J\\\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J',
    );
    const values = splitTextValues(decodeText(raw, ['ISO 2022 IR 13', 'ISO 2022 IR 87'], 'PN'), 'PN');
    expect(values).toHaveLength(3);
    expect(values[0]).toBe('ﾔﾏﾀﾞ^ﾀﾛｳ');
    expect(values[1].startsWith('楹田^樛')).toBe(true);
    expect(values[2]).toBe('やまだ^たろう');
  });

  it('does not split at a 0x5C trail byte of a GB18030 character', () => {
    const raw = bytes('Wang^XiaoDong\\\xcd\xf5^\xd0\\\xb6\xab\\');
    const values = splitTextValues(decodeText(raw, ['GB18030'], 'PN'), 'PN');
    expect(values).toEqual(['Wang^XiaoDong', '王^衆东', '']);
  });

  it('keeps backslashes of single-valued text', () => {
    expect(splitTextValues('C:\\dir\\file', 'LT')).toEqual(['C:\\dir\\file']);
    expect(splitTextValues('a\\b', 'LO')).toEqual(['a', 'b']);
  });

  it('replaces an unknown escape sequence and goes on', () => {
    expect(decodeText(bytes('a\x1b$)Zb'), ['', 'ISO 2022 IR 87'], 'LO')).toBe('a\uFFFDb');
  });

  it('decodes undeclared high bytes with the fallback character set (Latin-1 unless configured)', () => {
    expect(decodeText(bytes('J\xe9r\xf4me'), [], 'PN')).toBe('Jérôme');
    expect(decodeText(bytes('J\xc3\xa9r\xc3\xb4me'), [], 'PN', { fallbackCharacterSet: 'ISO_IR 192' })).toBe('Jérôme');
    expect(decodeText(bytes('\xbb\xee'), [], 'PN', { fallbackCharacterSet: 'ISO_IR 144' })).toBe('Лю');
  });
});

describe('character set terms', () => {
  it('splits (0008,0005) as the REST API and dcmjs give it', () => {
    expect(parseSpecificCharacterSet('\\ISO 2022 IR 87')).toEqual(['', 'ISO 2022 IR 87']);
    expect(parseSpecificCharacterSet(['ISO 2022 IR 13 ', 'ISO 2022 IR 87'])).toEqual(['ISO 2022 IR 13', 'ISO 2022 IR 87']);
    expect(parseSpecificCharacterSet(undefined)).toEqual([]);
  });

  it('knows which terms it supports', () => {
    expect(isSupportedCharacterSet(['', 'ISO 2022 IR 149'])).toBe(true);
    expect(isSupportedCharacterSet(['ISO_IR 192'])).toBe(true);
    expect(isSupportedCharacterSet(['GB18030'])).toBe(true);
    expect(isSupportedCharacterSet(['ISO_IR 999'])).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole files: dcmjs's own decoding against readDicomFileWithCharsets.

type Dataset = dcmjs.data.DicomDataset;


/**
 * A Part 10 file whose text elements carry exact bytes: dcmjs only writes UTF-8, so each raw value
 * is written as an ASCII placeholder of the same length and patched afterwards.
 */
class RawFileBuilder {
  private readonly patches: Array<{ placeholder: Uint8Array; raw: Uint8Array }> = [];

  text(raw: string): string {
    const placeholder = `~${this.patches.length}~`.padEnd(raw.length, '~');
    if (placeholder.length !== raw.length) throw new Error('raw value too short for a placeholder');
    this.patches.push({ placeholder: bytes(placeholder), raw: bytes(raw) });
    return placeholder;
  }

  build(dataset: Dataset): ArrayBuffer {
    const file = new dcmjs.data.DicomDict(TEST_META);
    file.dict = dataset;
    const buffer = new Uint8Array(file.write());
    for (const { placeholder, raw } of this.patches) {
      const at = Buffer.from(buffer).indexOf(Buffer.from(placeholder));
      if (at < 0) throw new Error('placeholder not found');
      buffer.set(raw, at);
    }
    return buffer.buffer;
  }
}

function pn(value: string): { vr: string; Value: unknown[] } {
  return { vr: 'PN', Value: [value] };
}

function charset(...terms: string[]): { vr: string; Value: unknown[] } {
  return { vr: 'CS', Value: terms };
}

describe('readDicomFileWithCharsets (and the dcmjs gaps it closes)', () => {
  beforeAll(silenceDcmjs);

  it('ISO 2022 IR 87: dcmjs refuses the file, we decode it', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({
      '00080005': charset('', 'ISO 2022 IR 87'),
      '00100010': pn(builder.text('Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B')),
    });
    expect(() => dcmjs.data.DicomMessage.readFile(buffer)).toThrow(/multiple character sets/);

    const file = readDicomFileWithCharsets(buffer);
    expect(file.dict['00100010'].Value).toEqual([{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }]);
    expect(file.dict['00080005']._rawValue).toEqual(['', 'ISO 2022 IR 87']);
  });

  it('ISO 2022 IR 149: dcmjs (with ignoreErrors) leaves escape sequences in the text, we do not', () => {
    const builder = new RawFileBuilder();
    const raw = 'Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf';
    const buffer = builder.build({ '00080005': charset('ISO 2022 IR 149'), '00100010': pn(builder.text(raw)) });
    const byDcmjs = dcmjs.data.DicomMessage.readFile(buffer).dict['00100010']._rawValue as string;
    expect(byDcmjs).toContain('\x1b');

    const ours = readDicomFileWithCharsets(buffer).dict['00100010'];
    expect(ours._rawValue).toBe('Hong^Gildong=洪^吉洞=홍^길동');
  });

  it('UTF-8 inside a sequence item: dcmjs decodes it as windows-1252, we as UTF-8', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({
      '00080005': charset('ISO_IR 192'),
      '00100010': pn('Wang^XiaoDong=王^小東='),
      '00081250': { vr: 'SQ', Value: [{ '00100010': pn('Müller^Jörg'), '00081030': { vr: 'LO', Value: ['Café'] } }] },
    });
    const byDcmjs = dcmjs.data.DicomMessage.readFile(buffer).dict;
    expect(byDcmjs['00100010'].Value).toEqual([{ Alphabetic: 'Wang^XiaoDong', Ideographic: '王^小東' }]); // top level is right
    const dcmjsItem = (byDcmjs['00081250'].Value as Dataset[])[0];
    expect(dcmjsItem['00081030'].Value).toEqual(['CafÃ©']);

    const item = (readDicomFileWithCharsets(buffer).dict['00081250'].Value as Dataset[])[0];
    expect(item['00100010'].Value).toEqual([{ Alphabetic: 'Müller^Jörg' }]);
    expect(item['00081030'].Value).toEqual(['Café']);
  });

  it('honours a character set declared inside a sequence item', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({
      '00080005': charset('ISO_IR 100'),
      '00100010': pn(builder.text('Buc^J\xe9r\xf4me')),
      '00081250': {
        vr: 'SQ',
        Value: [{ '00080005': charset('ISO_IR 144'), '00100010': pn(builder.text('\xbb\xee\xdace\xdc\xd1yp\xd3')) }],
      },
    });
    const file = readDicomFileWithCharsets(buffer);
    expect(file.dict['00100010'].Value).toEqual([{ Alphabetic: 'Buc^Jérôme' }]);
    const item = (file.dict['00081250'].Value as Dataset[])[0];
    expect(item['00100010'].Value).toEqual([{ Alphabetic: 'Люкceмбypг' }]);
  });

  it('Latin-1 at top level: dcmjs and we agree', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({ '00080005': charset('ISO_IR 100'), '00100010': pn(builder.text('\xc4neas^R\xfcdiger')) });
    expect(dcmjs.data.DicomMessage.readFile(buffer).dict['00100010'].Value).toEqual([{ Alphabetic: 'Äneas^Rüdiger' }]);
    expect(readDicomFileWithCharsets(buffer).dict['00100010'].Value).toEqual([{ Alphabetic: 'Äneas^Rüdiger' }]);
  });

  it('keeps ST/UT single-valued where dcmjs splits them at backslashes', () => {
    const buffer = new RawFileBuilder().build({
      '00080005': charset('ISO_IR 100'),
      '00204000': { vr: 'LT', Value: ['C:\\images\\a'] },
      '00081080': { vr: 'LO', Value: ['one', 'two'] },
      '00400280': { vr: 'ST', Value: ['x\\y'] },
    });
    expect(dcmjs.data.DicomMessage.readFile(buffer).dict['00400280'].Value).toEqual(['x', 'y']);
    const dict = readDicomFileWithCharsets(buffer).dict;
    expect(dict['00400280'].Value).toEqual(['x\\y']);
    expect(dict['00204000'].Value).toEqual(['C:\\images\\a']);
    expect(dict['00081080'].Value).toEqual(['one', 'two']);
  });

  it('multi-valued GB18030 with a 0x5C trail byte', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({
      '00080005': charset('GB18030'),
      '00081070': pn(builder.text('Wang^XiaoDong\\\xcd\xf5^\xd0\\\xb6\xab')),
    });
    const element = readDicomFileWithCharsets(buffer).dict['00081070'];
    expect(element._rawValue).toBe('Wang^XiaoDong\\王^衆东');
    expect(element.Value).toEqual([{ Alphabetic: 'Wang^XiaoDong' }, { Alphabetic: '王^衆东' }]);
  });

  it('passes dcmjs read options through (stop before Pixel Data)', () => {
    const builder = new RawFileBuilder();
    const buffer = builder.build({
      '00080005': charset('', 'ISO 2022 IR 87'),
      '00100010': pn(builder.text('\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B')),
      '7FE00010': { vr: 'OW', Value: [new Uint16Array([1, 2]).buffer] },
    });
    const file = readDicomFileWithCharsets(buffer, { untilTag: '7FE00010', includeUntilTagValue: false, noCopy: true });
    expect(file.dict['00100010'].Value).toEqual([{ Alphabetic: '山田^太郎' }]);
    expect(file.dict['7FE00010']?.Value).toBeFalsy();
  });

  it('restores dcmjs patching after a failed read', () => {
    expect(() => readDicomFileWithCharsets(new Uint8Array(200).buffer)).toThrow();
    const builder = new RawFileBuilder();
    const buffer = builder.build({ '00080005': charset('ISO_IR 192'), '00100010': pn('Grüße') });
    expect(dcmjs.data.DicomMessage.readFile(buffer).dict['00100010'].Value).toEqual([{ Alphabetic: 'Grüße' }]);
  });
});
