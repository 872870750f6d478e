/**
 * The DICOMDIR builder, checked with DCMTK's dcmdump: it must parse the file, and every offset the file
 * holds must point at the record dcmdump finds there (dcmdump prints each record's offset).
 */
import { DicomDirBuilder, toAscii } from '../../src/dicom/dicomdir';
import type { DicomDataset } from '../../src/dicom/dicom-file';
import { dumpDicomDir as dump, type DumpedRecord } from '../helpers/dicomdir-dump';

const KEYWORDS: Record<string, [string, string]> = {
  SpecificCharacterSet: ['00080005', 'CS'],
  SOPClassUID: ['00080016', 'UI'],
  SOPInstanceUID: ['00080018', 'UI'],
  StudyDate: ['00080020', 'DA'],
  SeriesDate: ['00080021', 'DA'],
  StudyTime: ['00080030', 'TM'],
  AccessionNumber: ['00080050', 'SH'],
  Modality: ['00080060', 'CS'],
  StudyDescription: ['00081030', 'LO'],
  SeriesDescription: ['0008103E', 'LO'],
  PatientName: ['00100010', 'PN'],
  PatientID: ['00100020', 'LO'],
  StudyInstanceUID: ['0020000D', 'UI'],
  SeriesInstanceUID: ['0020000E', 'UI'],
  StudyID: ['00200010', 'SH'],
  SeriesNumber: ['00200011', 'IS'],
  InstanceNumber: ['00200013', 'IS'],
};

/** A data set as dataset-reader gives it, from keywords (a PN value is written as its Alphabetic group). */
function dataset(values: Record<string, string>): DicomDataset {
  const out: DicomDataset = {};
  for (const [keyword, value] of Object.entries(values)) {
    const [tag, vr] = KEYWORDS[keyword];
    out[tag] = { vr, Value: value === '' ? [] : [vr === 'PN' ? { Alphabetic: value } : value], ...(vr === 'IS' ? { _rawValue: [value] } : {}) };
  }
  return out;
}

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';

function file(index: number, values: Record<string, string>): Parameters<DicomDirBuilder['add']>[0] {
  return { fileId: ['IMAGES', `IM${index}`], transferSyntax: EXPLICIT, dataset: dataset({ SOPClassUID: CT, ...values }) };
}

/** The tree the offsets describe, as nested [type, children] — built by following the links only. */
function tree(root: Record<string, string>, records: DumpedRecord[]): unknown[] {
  const byOffset = new Map(records.map((r) => [r.offset, r]));
  const chain = (offset: number): unknown[] => {
    const out: unknown[] = [];
    for (let at = offset; at !== 0; ) {
      const record = byOffset.get(at);
      if (!record) throw new Error(`offset ${at} is not a record`);
      const lower = Number(record.keys['0004,1420']);
      out.push([record.type, record.keys['0004,1500'] ?? record.keys['0010,0020'] ?? record.keys['0020,000d'] ?? record.keys['0020,000e'], lower ? chain(lower) : []]);
      at = Number(record.keys['0004,1400']);
    }
    return out;
  };
  return chain(Number(root['0004,1200']));
}

describe('DicomDirBuilder', () => {
  it('writes a DICOMDIR that DCMTK reads, with every offset on its record', async () => {
    const builder = new DicomDirBuilder();
    const study1 = { PatientID: 'P1', PatientName: 'Doe^Jane', StudyInstanceUID: '1.2.3.1', StudyDate: '20240101', StudyTime: '101500', AccessionNumber: 'A1', StudyDescription: 'Head', StudyID: 'S1' };
    builder.add(file(0, { ...study1, Modality: 'CT', SeriesInstanceUID: '1.2.3.1.1', SeriesNumber: '1', SOPInstanceUID: '1.2.3.1.1.1', InstanceNumber: '1' }));
    builder.add(file(1, { ...study1, Modality: 'CT', SeriesInstanceUID: '1.2.3.1.1', SeriesNumber: '1', SOPInstanceUID: '1.2.3.1.1.2', InstanceNumber: '2' }));
    builder.add(file(2, { ...study1, Modality: 'MR', SeriesInstanceUID: '1.2.3.1.2', SeriesNumber: '2', SOPInstanceUID: '1.2.3.1.2.1', InstanceNumber: '1' }));
    builder.add(file(3, { PatientID: 'P2', PatientName: 'Roe', StudyInstanceUID: '1.2.3.2', Modality: 'OT', SeriesInstanceUID: '1.2.3.2.1', SOPInstanceUID: '1.2.3.2.1.1', InstanceNumber: '7' }));
    const { code, output, root, records } = await dump(builder.encode());
    expect([code, output]).toEqual([0, expect.not.stringMatching(/^[EW]:/m)]);
    expect(root['0004,1130']).toBe('ORTHANC_MEDIA');
    expect(root['0004,1212']).toBe('0');
    expect(records.map((r) => r.type)).toEqual(['PATIENT', 'STUDY', 'SERIES', 'IMAGE', 'IMAGE', 'SERIES', 'IMAGE', 'PATIENT', 'STUDY', 'SERIES', 'IMAGE']);
    expect(Number(root['0004,1202'])).toBe(records[7].offset);
    expect(tree(root, records)).toEqual([
      ['PATIENT', 'P1', [['STUDY', '1.2.3.1', [
        ['SERIES', '1.2.3.1.1', [['IMAGE', 'IMAGES\\IM0', []], ['IMAGE', 'IMAGES\\IM1', []]]],
        ['SERIES', '1.2.3.1.2', [['IMAGE', 'IMAGES\\IM2', []]]],
      ]]]],
      ['PATIENT', 'P2', [['STUDY', '1.2.3.2', [['SERIES', '1.2.3.2.1', [['IMAGE', 'IMAGES\\IM3', []]]]]]]],
    ]);
    expect(records[3].keys).toEqual({
      '0004,1400': String(records[4].offset),
      '0004,1410': '65535',
      '0004,1420': '0',
      '0004,1430': 'IMAGE',
      '0004,1500': 'IMAGES\\IM0',
      '0004,1510': 'CTImageStorage',
      '0004,1511': '1.2.3.1.1.1',
      '0004,1512': 'LittleEndianExplicit',
      '0020,0013': '1',
    });
  });

  it("applies Orthanc's key rules: type 1/2 always, 1C when valued, dates from the series, ASCII only", async () => {
    const builder = new DicomDirBuilder({ now: new Date('2026-11-23T04:05:06Z') });
    // no PatientName (type 2: written empty), no StudyID (1C: absent), a SeriesDate instead of a StudyDate
    builder.add(file(0, {
      PatientID: 'P-Ü1', StudyInstanceUID: '1.2.9', SeriesDate: '20230405', Modality: 'CT', SeriesInstanceUID: '1.2.9.1',
      SOPInstanceUID: '1.2.9.1.1', SpecificCharacterSet: 'ISO_IR 192', StudyDescription: 'Tête', SeriesDescription: 'Axial',
    }));
    // the same SOP Instance UID again adds nothing
    builder.add(file(1, { PatientID: 'P-Ü1', StudyInstanceUID: '1.2.9', Modality: 'CT', SeriesInstanceUID: '1.2.9.1', SOPInstanceUID: '1.2.9.1.1' }));
    const { records } = await dump(builder.encode());
    expect(records.map((r) => r.type)).toEqual(['PATIENT', 'STUDY', 'SERIES', 'IMAGE']);
    const [patient, study, series, image] = records.map((r) => r.keys);
    expect(patient).toMatchObject({ '0010,0020': 'P-1', '0008,0005': 'ISO_IR 192' });
    expect(patient['0010,0010']).toBe('');
    expect(study).toMatchObject({ '0008,0020': '20230405', '0008,0030': '040506', '0008,1030': 'Tte' });
    expect(study['0020,0010']).toBeUndefined();
    expect(series['0008,103e']).toBeUndefined(); // not an extended DICOMDIR
    expect(series['0020,0011']).toBeUndefined();
    expect(image['0020,0013']).toBe(''); // type 1 but missing: written empty, as Orthanc does
  });

  it('adds Series Description to an extended DICOMDIR', async () => {
    const builder = new DicomDirBuilder({ extended: true });
    builder.add(file(0, { PatientID: 'P', StudyInstanceUID: '1.5', Modality: 'MR', SeriesInstanceUID: '1.5.1', SOPInstanceUID: '1.5.1.1', SeriesDescription: 'T1 axial' }));
    const { records } = await dump(builder.encode());
    expect(records[2].keys['0008,103e']).toBe('T1 axial');
  });

  it('keeps printable ASCII and newlines only', () => {
    expect(toAscii('Ünal^Ayşe\tx\ny~\u007f')).toBe('nal^Ayex\ny~');
  });
});
