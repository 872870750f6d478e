import { readDicomFileWithCharsets } from '../../src/dicom/charset';
import { readDataset } from '../../src/dicom/dataset-reader';
import { datasetToDicomJson } from '../../src/dicom/dicom-json';
import { NeedMoreData } from '../../src/dicom/element-scanner';
import { buildInstance, makeNonImage, TransferSyntax, type TransferSyntaxUid } from '../helpers/dicom-factory';

const SYNTAXES: TransferSyntaxUid[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.RLELossless,
];

/** Text, binary numbers (US, SS, UL, FL, FD), IS/DS, sequences (one empty), private elements. */
function richFile(syntax: TransferSyntaxUid): Buffer {
  return buildInstance({
    transferSyntax: syntax,
    seed: `reader-${syntax}`,
    PatientName: 'Müller^Zoë',
    SpecificCharacterSet: 'ISO_IR 192',
    NumberOfFrames: 2,
    extraElements: {
      '00091010': { vr: 'LO', Value: ['READER TEST'] },
      '00091011': { vr: 'OB', Value: [new Uint8Array([1, 2, 3, 4]).buffer] },
      '00181310': { vr: 'US', Value: [0, 16, 16, 0] },
      '00209241': { vr: 'FL', Value: [0.25] },
      '00189327': { vr: 'FD', Value: [1.5] },
      '00209057': { vr: 'UL', Value: [7] },
      '00289503': { vr: 'SS', Value: [-3, 4] },
      '00081140': {
        vr: 'SQ',
        Value: [
          { '00081150': { vr: 'UI', Value: ['1.2.3'] }, '00081155': { vr: 'UI', Value: ['1.2.3.4'] } },
          { '00081150': { vr: 'UI', Value: ['1.2.5'] }, '00081155': { vr: 'UI', Value: ['1.2.5.6'] }, '00081160': { vr: 'IS', Value: [1, 2] } },
        ],
      },
      '00400275': { vr: 'SQ', Value: [] },
      '00321060': { vr: 'LO', Value: ['Ünïcödé'] },
      '00204000': { vr: 'LT', Value: ['a\\b'] },
      '00209161': { vr: 'UI', Value: ['1.2.840.99'] },
      '00080012': { vr: 'DA', Value: ['20240102'] },
      '0020000D': { vr: 'UI', Value: ['1.2.3.4.5'] },
      '00280030': { vr: 'DS', Value: ['0.5', '0.50'] },
    },
  }).buffer;
}

function viaDcmjs(file: Buffer): ReturnType<typeof datasetToDicomJson> {
  const dict = readDicomFileWithCharsets(file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer, { ignoreErrors: true });
  delete dict.dict['7FE00010'];
  return datasetToDicomJson(dict.dict, { binary: () => 'inline' });
}

function viaReader(file: Buffer, complete = true): ReturnType<typeof datasetToDicomJson> {
  const { dataset } = readDataset(file, { complete, stopAtPixelData: true });
  return datasetToDicomJson(dataset, { binary: () => 'inline' });
}

describe('dataset reader', () => {
  it.each(SYNTAXES)('reads what dcmjs reads (%s), as DICOM JSON', (syntax) => {
    const file = richFile(syntax);
    const ours = viaReader(file);
    const theirs = viaDcmjs(file);
    expect(ours).toEqual(theirs);
    expect(ours['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Müller^Zoë' }] });
    expect(ours['00280030']).toEqual({ vr: 'DS', Value: [0.5, 0.5] });
    expect((ours['00081140'].Value as unknown[]).length).toBe(2);
  });

  it('decodes ISO 2022 code extensions', () => {
    // "Yamada^Tarou=山田^太郎" in ISO 2022 IR 87 (PS3.5 H.3.1)
    const name = Buffer.concat([
      Buffer.from('Yamada^Tarou='),
      Buffer.from([0x1b, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, 0x1b, 0x28, 0x42, 0x5e, 0x1b, 0x24, 0x42, 0x42, 0x40, 0x4f, 0x3a, 0x1b, 0x28, 0x42]),
    ]);
    const file = buildInstance({ seed: 'iso2022', SpecificCharacterSet: '\\ISO 2022 IR 87', PatientName: 'X'.repeat(name.length) }).buffer;
    const at = file.indexOf('X'.repeat(name.length));
    name.copy(file, at);
    const { dataset } = readDataset(file, { complete: true, stopAtPixelData: true });
    expect(datasetToDicomJson(dataset)['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }] });
  });

  it('stops at Pixel Data and asks for more bytes while the prefix is too short', () => {
    const file = richFile(TransferSyntax.ExplicitVRLittleEndian);
    const whole = readDataset(file, { complete: true, stopAtPixelData: true });
    expect(whole.pixelData?.length).toBe(16 * 16 * 2 * 2);
    expect(whole.dataset['7FE00010']).toBeUndefined();
    const prefix = file.subarray(0, whole.pixelData!.tagOffset + 12);
    expect(viaReader(prefix, false)).toEqual(viaReader(file));
    expect(() => readDataset(file.subarray(0, whole.pixelData!.tagOffset - 3), { complete: false, stopAtPixelData: true })).toThrow(NeedMoreData);
    const deflated = richFile(TransferSyntax.DeflatedExplicitVRLittleEndian);
    expect(() => readDataset(deflated.subarray(0, deflated.length - 1), { complete: false, stopAtPixelData: true })).toThrow(NeedMoreData);
  });

  it('reads files without Pixel Data to their end', () => {
    const pdf = makeNonImage({ kind: 'pdf', seed: 'reader-pdf' });
    const read = readDataset(pdf, { complete: true, stopAtPixelData: true });
    expect(read.pixelData).toBeUndefined();
    expect(viaReader(pdf)).toEqual(viaDcmjs(pdf));
  });
});
