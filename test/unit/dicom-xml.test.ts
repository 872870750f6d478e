import * as dcmjs from 'dcmjs';
import { readDicomFileWithCharsets } from '../../src/dicom/charset';
import { datasetToDicomJson, DicomJsonDataset, tagValuesToDicomJson } from '../../src/dicom/dicom-json';
import { dicomJsonToXml, escapeXmlAttribute, escapeXmlText } from '../../src/dicom/dicom-xml';

/** Minimal well-formedness check for the XML we emit (no comments, CDATA or DTDs): tags balance, entities known. */
function assertWellFormed(xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  const tokens = body.match(/<[^>]*>|[^<]+/g) ?? [];
  for (const token of tokens) {
    if (!token.startsWith('<')) {
      expect(token).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|#\d+);)/);
      continue;
    }
    const name = /^<\/?([A-Za-z]+)/.exec(token)?.[1];
    expect(name).toBeDefined();
    if (token.startsWith('</')) expect(stack.pop()).toBe(name);
    else if (!token.endsWith('/>')) stack.push(name as string);
  }
  expect(stack).toEqual([]);
}

function xmlOf(dataset: DicomJsonDataset): string {
  const xml = dicomJsonToXml(dataset);
  assertWellFormed(xml);
  return xml;
}

describe('dicomJsonToXml', () => {
  it('writes the Native DICOM Model root and attributes with keywords', () => {
    const xml = xmlOf(tagValuesToDicomJson({ StudyInstanceUID: '1.2.3', Rows: '512' }));
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">' +
        '<DicomAttribute tag="0020000D" vr="UI" keyword="StudyInstanceUID"><Value number="1">1.2.3</Value></DicomAttribute>' +
        '<DicomAttribute tag="00280010" vr="US" keyword="Rows"><Value number="1">512</Value></DicomAttribute>' +
        '</NativeDicomModel>\n',
    );
  });

  it('splits person names into groups and components, skipping empty ones', () => {
    const xml = xmlOf(
      tagValuesToDicomJson({ PatientName: 'Yamada^Tarou=山田^太郎=やまだ^たろう', OperatorsName: 'Doe^^Mid\\\\Roe' }),
    );
    expect(xml).toContain(
      '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1">' +
        '<Alphabetic><FamilyName>Yamada</FamilyName><GivenName>Tarou</GivenName></Alphabetic>' +
        '<Ideographic><FamilyName>山田</FamilyName><GivenName>太郎</GivenName></Ideographic>' +
        '<Phonetic><FamilyName>やまだ</FamilyName><GivenName>たろう</GivenName></Phonetic>' +
        '</PersonName></DicomAttribute>',
    );
    expect(xml).toContain(
      '<PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName><MiddleName>Mid</MiddleName></Alphabetic></PersonName>' +
        '<PersonName number="2"/>' +
        '<PersonName number="3"><Alphabetic><FamilyName>Roe</FamilyName></Alphabetic></PersonName>',
    );
  });

  it('writes all five name components in order', () => {
    const xml = xmlOf(tagValuesToDicomJson({ PatientName: 'F^G^M^P^S' }));
    expect(xml).toContain(
      '<Alphabetic><FamilyName>F</FamilyName><GivenName>G</GivenName><MiddleName>M</MiddleName>' +
        '<NamePrefix>P</NamePrefix><NameSuffix>S</NameSuffix></Alphabetic>',
    );
  });

  it('nests sequence items, bulk data and inline binary', () => {
    const xml = xmlOf({
      '00081250': {
        vr: 'SQ',
        Value: [{ '0020000E': { vr: 'UI', Value: ['1.2'] } }, {}],
      },
      '00282000': { vr: 'OB', InlineBinary: 'AQID' },
      '7FE00010': { vr: 'OW', BulkDataURI: 'http://h/bulk/7FE00010?a=1&b=2' },
    });
    expect(xml).toContain(
      '<DicomAttribute tag="00081250" vr="SQ" keyword="RelatedSeriesSequence">' +
        '<Item number="1"><DicomAttribute tag="0020000E" vr="UI" keyword="SeriesInstanceUID"><Value number="1">1.2</Value></DicomAttribute></Item>' +
        '<Item number="2"/></DicomAttribute>',
    );
    expect(xml).toContain('<DicomAttribute tag="00282000" vr="OB" keyword="ICCProfile"><InlineBinary>AQID</InlineBinary></DicomAttribute>');
    expect(xml).toContain(
      '<DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData"><BulkData uri="http://h/bulk/7FE00010?a=1&amp;b=2"/></DicomAttribute>',
    );
  });

  it('keeps empty values and empty attributes', () => {
    const xml = xmlOf(tagValuesToDicomJson({ StudyDescription: 'a\\\\c', AccessionNumber: '' }));
    expect(xml).toContain('<DicomAttribute tag="00080050" vr="SH" keyword="AccessionNumber"/>');
    expect(xml).toContain('<Value number="1">a</Value><Value number="2"/><Value number="3">c</Value>');
  });

  it('names the private creator of private attributes, no keyword', () => {
    const xml = xmlOf(tagValuesToDicomJson({ '0009,0010': 'ACME 1.0', '0009,1001': 'x' }, { vrs: { '00091001': 'LO' } }));
    expect(xml).toContain('<DicomAttribute tag="00090010" vr="LO"><Value number="1">ACME 1.0</Value></DicomAttribute>');
    expect(xml).toContain('<DicomAttribute tag="00091001" vr="LO" privateCreator="ACME 1.0"><Value number="1">x</Value></DicomAttribute>');
  });

  it('escapes markup and characters XML cannot carry', () => {
    const xml = xmlOf({
      '00081030': { vr: 'LO', Value: ['a&b<c>"d"'] },
      '00204000': { vr: 'LT', Value: ['line1\r\nline2\u0001'] },
    });
    expect(xml).toContain('<Value number="1">a&amp;b&lt;c&gt;"d"</Value>');
    expect(xml).toContain('<Value number="1">line1&#13;\nline2\uFFFD</Value>');
    expect(escapeXmlAttribute('a"b\n<')).toBe('a&quot;b&#10;&lt;');
    expect(escapeXmlText('\uD800x')).toBe('\uFFFDx');
    expect(escapeXmlText('😀')).toBe('😀');
  });

  it('renders a data set read from a file through the JSON encoder', () => {
    const file = new dcmjs.data.DicomDict({
      '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
      '00020002': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] },
      '00020003': { vr: 'UI', Value: ['1.2.3'] },
      '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] },
      '00020012': { vr: 'UI', Value: ['1.2.3.4'] },
    });
    file.dict = {
      '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
      '00100010': { vr: 'PN', Value: ['Müller^Jörg'] },
      '00280030': { vr: 'DS', Value: ['0.5', '0.25'] },
      '00209165': { vr: 'AT', Value: [0x00100010] },
    };
    const dict = readDicomFileWithCharsets(file.write()).dict;
    const xml = xmlOf(datasetToDicomJson(dict));
    expect(xml).toContain('<Alphabetic><FamilyName>Müller</FamilyName><GivenName>Jörg</GivenName></Alphabetic>');
    expect(xml).toContain('<DicomAttribute tag="00280030" vr="DS" keyword="PixelSpacing"><Value number="1">0.5</Value><Value number="2">0.25</Value>');
    expect(xml).toContain('<DicomAttribute tag="00209165" vr="AT" keyword="DimensionIndexPointer"><Value number="1">00100010</Value>');
    expect(xml).toContain('<DicomAttribute tag="00080005" vr="CS" keyword="SpecificCharacterSet"><Value number="1">ISO_IR 192</Value>');
  });
});
