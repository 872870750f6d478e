import * as dcmjs from 'dcmjs';
import { readDicomFileWithCharsets } from '../../src/dicom/charset';
import {
  BulkDataPath,
  datasetToDicomJson,
  DicomJsonDataset,
  mergeDicomJson,
  parseDicomNumber,
  parsePersonName,
  serializeDicomJson,
  tagValuesToDicomJson,
} from '../../src/dicom/dicom-json';
import { TEST_META, silenceDcmjs } from '../helpers/dcmjs-test-file';

type Dataset = dcmjs.data.DicomDataset;


/** Write with dcmjs, optionally patch bytes (VRs dcmjs cannot write), read back: the full path. */
function roundTrip(dataset: Dataset, patch?: (bytes: Buffer) => void): Dataset {
  const file = new dcmjs.data.DicomDict(TEST_META);
  file.dict = dataset;
  const bytes = Buffer.from(file.write());
  patch?.(bytes);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return readDicomFileWithCharsets(buffer as ArrayBuffer).dict;
}

/** Rewrite the explicit VR of an element, found by its little-endian tag bytes followed by the old VR. */
function patchVr(bytes: Buffer, tag: string, from: string, to: string): void {
  const group = parseInt(tag.slice(0, 4), 16);
  const element = parseInt(tag.slice(4), 16);
  const needle = Buffer.from([group & 0xff, group >> 8, element & 0xff, element >> 8, from.charCodeAt(0), from.charCodeAt(1)]);
  const at = bytes.indexOf(needle);
  if (at < 0) throw new Error(`element ${tag} not found`);
  bytes.write(to, at + 4, 'latin1');
}

function base64(...values: number[]): string {
  return Buffer.from(values).toString('base64');
}

beforeAll(silenceDcmjs);

describe('datasetToDicomJson: every VR through dcmjs write/read', () => {
  const sv = Buffer.alloc(8);
  sv.writeBigInt64LE(-5n);
  let json: DicomJsonDataset = {};
  // Built in beforeAll so that dcmjs's warnings about the patched VRs stay silenced.
  beforeAll(() => {
    json = datasetToDicomJson(everyVr());
  });
  const everyVr = (): Dataset =>
    roundTrip(
    {
      '0072005E': { vr: 'AE', Value: ['STORESCP'] },
      '0072005F': { vr: 'AS', Value: ['042Y'] },
      '00720060': { vr: 'AT', Value: [0x00100010, 0x7fe00010] },
      '00720061': { vr: 'DA', Value: ['20240102'] },
      '00720062': { vr: 'CS', Value: ['A', 'B'] },
      '00720063': { vr: 'DT', Value: ['20240102030405.123456+0100'] },
      '00720064': { vr: 'IS', Value: ['42', '-7'] },
      '00720065': { vr: 'OB', Value: [new Uint8Array([1, 2, 3, 4]).buffer] },
      '00720066': { vr: 'LO', Value: ['lo1', 'lo2'] },
      '00720067': { vr: 'OF', Value: [new Float32Array([1.5]).buffer] },
      '00720068': { vr: 'LT', Value: ['  leading spaces\\backslash  '] },
      '00720069': { vr: 'OW', Value: [new Uint16Array([0x0102]).buffer] },
      '0072006A': { vr: 'PN', Value: ['Doe^John\\=Ideo^Graph\\'] },
      '0072006B': { vr: 'TM', Value: ['120000.5'] },
      '0072006C': { vr: 'SH', Value: ['sh'] },
      '0072006E': { vr: 'ST', Value: ['st\\text'] },
      '0072006F': { vr: 'UC', Value: ['uc1', 'uc2'] },
      '00720070': { vr: 'UT', Value: ['ut\\text'] },
      '00720071': { vr: 'UR', Value: ['http://example.com/a'] },
      '00720072': { vr: 'DS', Value: ['1.50', '-2e3'] },
      '00720073': { vr: 'OD', Value: [new Float64Array([3.25]).buffer] },
      '00720074': { vr: 'FD', Value: [0.1, -1e300] },
      '00720075': { vr: 'OB', Value: [new Uint32Array([7, 8]).buffer] }, // patched to OL
      '00720076': { vr: 'FL', Value: [0.1, 2.5] },
      '00720078': { vr: 'UL', Value: [4000000000] },
      '0072007A': { vr: 'US', Value: [65535] },
      '0072007C': { vr: 'SL', Value: [-100000] },
      '0072007E': { vr: 'SS', Value: [-3] },
      '0072007F': { vr: 'UI', Value: ['1.2.840.10008.1.2'] },
      '00720081': { vr: 'OB', Value: [new Uint8Array(8).fill(9).buffer] }, // patched to OV
      '00720082': { vr: 'OB', Value: [sv.buffer.slice(sv.byteOffset, sv.byteOffset + 8)] }, // patched to SV
      '00720083': { vr: 'UV', Value: [18446744073709551615n, 7n] },
      '00720080': { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['T-1'] } }] },
    },
    (bytes) => {
      patchVr(bytes, '00720075', 'OB', 'OL');
      patchVr(bytes, '00720081', 'OB', 'OV');
      patchVr(bytes, '00720082', 'OB', 'SV');
    },
  );

  it.each<[string, object]>([
    ['0072005E', { vr: 'AE', Value: ['STORESCP'] }],
    ['0072005F', { vr: 'AS', Value: ['042Y'] }],
    ['00720060', { vr: 'AT', Value: ['00100010', '7FE00010'] }],
    ['00720061', { vr: 'DA', Value: ['20240102'] }],
    ['00720062', { vr: 'CS', Value: ['A', 'B'] }],
    ['00720063', { vr: 'DT', Value: ['20240102030405.123456+0100'] }],
    ['00720064', { vr: 'IS', Value: [42, -7] }],
    ['00720065', { vr: 'OB', InlineBinary: base64(1, 2, 3, 4) }],
    ['00720066', { vr: 'LO', Value: ['lo1', 'lo2'] }],
    ['00720067', { vr: 'OF', InlineBinary: Buffer.from(new Float32Array([1.5]).buffer).toString('base64') }],
    ['00720068', { vr: 'LT', Value: ['  leading spaces\\backslash'] }],
    ['00720069', { vr: 'OW', InlineBinary: base64(2, 1) }],
    ['0072006A', { vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }, { Ideographic: 'Ideo^Graph' }, null] }],
    ['0072006B', { vr: 'TM', Value: ['120000.5'] }],
    ['0072006C', { vr: 'SH', Value: ['sh'] }],
    ['0072006E', { vr: 'ST', Value: ['st\\text'] }],
    ['0072006F', { vr: 'UC', Value: ['uc1', 'uc2'] }],
    ['00720070', { vr: 'UT', Value: ['ut\\text'] }],
    ['00720071', { vr: 'UR', Value: ['http://example.com/a'] }],
    ['00720072', { vr: 'DS', Value: [1.5, -2000] }],
    ['00720073', { vr: 'OD', InlineBinary: Buffer.from(new Float64Array([3.25]).buffer).toString('base64') }],
    ['00720074', { vr: 'FD', Value: [0.1, -1e300] }],
    ['00720075', { vr: 'OL', InlineBinary: base64(7, 0, 0, 0, 8, 0, 0, 0) }],
    ['00720076', { vr: 'FL', Value: [0.1, 2.5] }],
    ['00720078', { vr: 'UL', Value: [4000000000] }],
    ['0072007A', { vr: 'US', Value: [65535] }],
    ['0072007C', { vr: 'SL', Value: [-100000] }],
    ['0072007E', { vr: 'SS', Value: [-3] }],
    ['0072007F', { vr: 'UI', Value: ['1.2.840.10008.1.2'] }],
    ['00720080', { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['T-1'] } }] }],
    ['00720081', { vr: 'OV', InlineBinary: base64(9, 9, 9, 9, 9, 9, 9, 9) }],
    ['00720082', { vr: 'SV', Value: [-5] }],
    // Beyond 2^53 a JSON number would lose digits: the exact decimal string is kept.
    ['00720083', { vr: 'UV', Value: ['18446744073709551615', 7] }],
  ])('%s', (tag, expected) => {
    expect(json[tag]).toEqual(expected);
  });

  it('lists attributes in ascending tag order', () => {
    const keys = Object.keys(json);
    expect(keys).toEqual([...keys].sort());
  });
});

describe('datasetToDicomJson: empty values, groups, character sets', () => {
  const dict = roundTrip({
    '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    '00080000': { vr: 'UL', Value: [0] },
    '00100010': { vr: 'PN', Value: ['Wang^XiaoDong=王^小東'] },
    '00100020': { vr: 'LO', Value: [''] },
    '00081030': { vr: 'LO', Value: ['a', '', 'c'] },
    '00200013': { vr: 'IS', Value: [] },
    '00186011': { vr: 'SQ', Value: [] },
    '00081250': { vr: 'SQ', Value: [{ '00100010': { vr: 'PN', Value: [''] } }] },
    '00080090': { vr: 'PN', Value: [''] },
  });
  const json = datasetToDicomJson({ ...dict, '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] } });

  it('encodes empty values as the VR alone, empty items as {}', () => {
    expect(json['00100020']).toEqual({ vr: 'LO' });
    expect(json['00200013']).toEqual({ vr: 'IS' });
    expect(json['00186011']).toEqual({ vr: 'SQ' });
    expect(json['00080090']).toEqual({ vr: 'PN' });
    expect(json['00081250']).toEqual({ vr: 'SQ', Value: [{ '00100010': { vr: 'PN' } }] });
    // dcmjs drops empty items when it reads a file, so this one is built by hand.
    expect(datasetToDicomJson({ '00081250': { vr: 'SQ', Value: [{}, null] } })).toEqual({ '00081250': { vr: 'SQ', Value: [{}, {}] } });
  });

  it('keeps positions of empty values among others as null', () => {
    expect(json['00081030']).toEqual({ vr: 'LO', Value: ['a', null, 'c'] });
  });

  it('splits PN into component groups, decoded per the character set', () => {
    expect(json['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Wang^XiaoDong', Ideographic: '王^小東' }] });
  });

  it('leaves out group lengths and the file meta group unless asked', () => {
    expect(json['00080000']).toBeUndefined();
    expect(json['00020010']).toBeUndefined();
    expect(datasetToDicomJson({ '00020010': { vr: 'UI', Value: ['1.2'] } }, { includeFileMeta: true })).toEqual({
      '00020010': { vr: 'UI', Value: ['1.2'] },
    });
  });

  it("reports the source's Specific Character Set, not dcmjs's ISO_IR 192 rewrite", () => {
    const file = new dcmjs.data.DicomDict(TEST_META);
    const raw = 'Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B';
    file.dict = { '00080005': { vr: 'CS', Value: ['', 'ISO 2022 IR 87'] }, '00100010': { vr: 'PN', Value: ['~'.repeat(raw.length)] } };
    const bytes = Buffer.from(file.write());
    bytes.write(raw, bytes.indexOf('~'.repeat(raw.length)), 'latin1');
    const parsed = readDicomFileWithCharsets(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer);
    const out = datasetToDicomJson(parsed.dict);
    expect(out['00080005']).toEqual({ vr: 'CS', Value: [null, 'ISO 2022 IR 87'] });
    expect(out['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }] });
  });
});

describe('datasetToDicomJson: binary values and bulk data', () => {
  const dict = roundTrip({
    '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] },
    '00090010': { vr: 'LO', Value: ['ACME'] },
    '00091010': { vr: 'UN', Value: [new Uint8Array([65, 66, 67, 68]).buffer] },
    '00081250': {
      vr: 'SQ',
      Value: [
        { '00100010': { vr: 'PN', Value: ['Item^One'] } },
        { '00282000': { vr: 'OB', Value: [new Uint8Array([9, 8]).buffer] }, '00081140': { vr: 'SQ', Value: [{ '00720065': { vr: 'OB', Value: [new Uint8Array([1, 1]).buffer] } }] } },
      ],
    },
    '7FE00010': { vr: 'OW', Value: [new Uint16Array([1, 2, 3, 4]).buffer] },
    '00720065': { vr: 'OB', Value: [] },
  });

  it('asks the caller about every binary value with its sequence path', () => {
    const calls: Array<[BulkDataPath, string, string]> = [];
    const json = datasetToDicomJson(dict, {
      binary: (path, tag, vr) => {
        calls.push([path, tag, vr]);
        return tag === '00091010' ? 'inline' : { BulkDataURI: `http://h/bulk/${path.join('/')}` };
      },
    });
    expect(calls).toEqual([
      [['00081250', 2, '00081140', 1, '00720065'], '00720065', 'OB'],
      [['00081250', 2, '00282000'], '00282000', 'OB'],
      [['00091010'], '00091010', 'UN'],
      [['7FE00010'], '7FE00010', 'OW'],
    ]);
    expect(json['7FE00010']).toEqual({ vr: 'OW', BulkDataURI: 'http://h/bulk/7FE00010' });
    expect(json['00091010']).toEqual({ vr: 'UN', InlineBinary: 'QUJDRA==' });
    const item2 = (json['00081250'].Value as DicomJsonDataset[])[1];
    expect(item2['00282000']).toEqual({ vr: 'OB', BulkDataURI: 'http://h/bulk/00081250/2/00282000' });
    expect((item2['00081140'].Value as DicomJsonDataset[])[0]['00720065']).toEqual({
      vr: 'OB',
      BulkDataURI: 'http://h/bulk/00081250/2/00081140/1/00720065',
    });
    expect(json['00720065']).toEqual({ vr: 'OB' }); // empty binary: nothing to fetch
  });

  it('inlines by default and can leave binary attributes out', () => {
    expect(datasetToDicomJson(dict)['7FE00010']).toEqual({ vr: 'OW', InlineBinary: base64(1, 0, 2, 0, 3, 0, 4, 0) });
    const omitted = datasetToDicomJson(dict, { binary: () => 'omit' });
    expect(omitted['7FE00010']).toBeUndefined();
    expect(omitted['00091010']).toBeUndefined();
    expect(omitted['00090010']).toEqual({ vr: 'LO', Value: ['ACME'] });
  });

  it('accepts hand-built data sets (PN as strings or objects, numbers as strings)', () => {
    const json = datasetToDicomJson({
      '00100010': { vr: 'PN', Value: ['Doe^John\\Roe^Jane'] },
      '00081070': { vr: 'PN', Value: [{ Alphabetic: 'A^B', Ideographic: '' }] },
      '00280030': { vr: 'DS', Value: ['0.5', ' 1e1 '] },
      '00200013': { vr: 'IS', Value: ['x'] },
    });
    expect(json['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }, { Alphabetic: 'Roe^Jane' }] });
    expect(json['00081070']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'A^B' }] });
    expect(json['00280030']).toEqual({ vr: 'DS', Value: [0.5, 10] });
    expect(json['00200013']).toEqual({ vr: 'IS' });
  });

  it('concatenates the fragments of encapsulated pixel data when inlined', () => {
    const json = datasetToDicomJson({ '7FE00010': { vr: 'OB', Value: [new Uint8Array([1, 2]).buffer, new Uint8Array([3, 4]).buffer] } });
    expect(json['7FE00010']).toEqual({ vr: 'OB', InlineBinary: base64(1, 2, 3, 4) });
  });
});

describe('tagValuesToDicomJson (native REST model strings)', () => {
  const json = tagValuesToDicomJson({
    PatientName: 'Yamada^Tarou=山田^太郎=やまだ^たろう',
    '0020,000D': '1.2.3',
    '(0008,0020)': '20240101',
    ModalitiesInStudy: 'CT\\MR',
    NumberOfStudyRelatedInstances: ' 12 ',
    PixelSpacing: '1.50\\0.25',
    Rows: '512',
    '00090010': 'ACME',
    '0009,1010': 'hello',
    AccessionNumber: '',
    ReferringPhysicianName: null,
    DimensionIndexPointer: '0010,0010',
    StudyDescription: 'a\\\\c',
    InstanceNumber: 'abc',
    SliceLocation: '1.5\\oops\\-2',
    ReferencedSeriesSequence: [{ SeriesInstanceUID: '1.2.3.4', '0008,1155': '' }],
    ICCProfile: 'data:application/octet-stream;base64,AQID',
    ImageComments: 'line1\\line2',
    '00081250': [],
  });

  it.each<[string, object]>([
    ['00100010', { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }] }],
    ['0020000D', { vr: 'UI', Value: ['1.2.3'] }],
    ['00080020', { vr: 'DA', Value: ['20240101'] }],
    ['00080061', { vr: 'CS', Value: ['CT', 'MR'] }],
    ['00201208', { vr: 'IS', Value: [12] }],
    ['00280030', { vr: 'DS', Value: [1.5, 0.25] }],
    ['00280010', { vr: 'US', Value: [512] }],
    ['00090010', { vr: 'LO', Value: ['ACME'] }],
    ['00091010', { vr: 'UN', InlineBinary: Buffer.from('hello').toString('base64') }],
    ['00080050', { vr: 'SH' }],
    ['00080090', { vr: 'PN' }],
    ['00209165', { vr: 'AT', Value: ['00100010'] }],
    ['00081030', { vr: 'LO', Value: ['a', null, 'c'] }],
    ['00200013', { vr: 'IS' }],
    ['00201041', { vr: 'DS', Value: [1.5, null, -2] }],
    ['00081115', { vr: 'SQ', Value: [{ '00081155': { vr: 'UI' }, '0020000E': { vr: 'UI', Value: ['1.2.3.4'] } }] }],
    ['00282000', { vr: 'OB', InlineBinary: 'AQID' }],
    ['00204000', { vr: 'LT', Value: ['line1\\line2'] }],
    ['00081250', { vr: 'SQ' }],
  ])('%s', (tag, expected) => {
    expect(json[tag]).toEqual(expected);
  });

  it('sorts by tag', () => {
    const keys = Object.keys(JSON.parse(serializeDicomJson(json)) as object);
    expect(keys).toEqual([...keys].sort());
  });

  it('lets the caller give VRs of private tags', () => {
    expect(tagValuesToDicomJson({ '0009,1010': '3.5' }, { vrs: { '00091010': 'DS' } })).toEqual({
      '00091010': { vr: 'DS', Value: [3.5] },
    });
  });

  it('refuses keys that are not tags', () => {
    expect(() => tagValuesToDicomJson({ NotATag: 'x' })).toThrow(RangeError);
  });
});

describe('helpers', () => {
  it('parses numbers as PS3.5 spells them', () => {
    expect(parseDicomNumber('1.50', 'DS')).toBe(1.5);
    expect(parseDicomNumber(' -2e3 ', 'DS')).toBe(-2000);
    expect(parseDicomNumber('.5', 'DS')).toBe(0.5);
    expect(parseDicomNumber('12', 'IS')).toBe(12);
    expect(parseDicomNumber('1.5', 'IS')).toBeNull();
    expect(parseDicomNumber('0x10', 'DS')).toBeNull();
    expect(parseDicomNumber('', 'DS')).toBeNull();
    expect(parseDicomNumber('Infinity', 'FD')).toBeNull();
  });

  it('parses person names into component groups', () => {
    expect(parsePersonName('Doe^John  ')).toEqual({ Alphabetic: 'Doe^John' });
    expect(parsePersonName('=山田^太郎')).toEqual({ Ideographic: '山田^太郎' });
    expect(parsePersonName('==やまだ')).toEqual({ Phonetic: 'やまだ' });
    expect(parsePersonName('  ')).toBeNull();
  });

  it('merges levels, later wins, tag order kept', () => {
    const study = tagValuesToDicomJson({ StudyInstanceUID: '1', PatientName: 'A' });
    const series = tagValuesToDicomJson({ SeriesInstanceUID: '2', Modality: 'CT', PatientName: 'B' });
    const merged = mergeDicomJson(study, undefined, series);
    expect(Object.keys(merged)).toEqual(['00080060', '00100010', '0020000D', '0020000E']);
    expect(merged['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'B' }] });
  });

  it('serializes attributes in tag order even where JS objects reorder integer-like keys', () => {
    const dataset: DicomJsonDataset = {
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe' }] },
      '60000010': { vr: 'US', Value: [512] },
      '30060020': { vr: 'SQ', Value: [{ '30060022': { vr: 'IS', Value: [1] }, '00080100': { vr: 'SH', Value: ['x'] } }] },
    };
    expect(JSON.stringify(dataset).indexOf('60000010')).toBeLessThan(JSON.stringify(dataset).indexOf('00100010'));
    const text = serializeDicomJson([dataset]);
    expect(text).toBe(
      '[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe"}]},' +
        '"30060020":{"vr":"SQ","Value":[{"00080100":{"vr":"SH","Value":["x"]},"30060022":{"vr":"IS","Value":[1]}}]},' +
        '"60000010":{"vr":"US","Value":[512]}}]',
    );
    expect(JSON.parse(text)).toEqual([dataset]);
  });
});
