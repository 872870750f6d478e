import { listMatches, parseQidoQuery, QidoQueryError, type QidoLevel, type QidoPath } from '../../src/dicomweb/qido-query';
import { serializeQidoAnswer } from '../../src/dicomweb/qido-rs';
import { serializeDicomJson, tagValuesToDicomJson } from '../../src/dicom/dicom-json';

function parse(query: string, level: QidoLevel = 'Study', path: QidoPath = {}): ReturnType<typeof parseQidoQuery> {
  return parseQidoQuery(level, path, [...new URLSearchParams(query)]);
}

function error(query: string, level: QidoLevel = 'Study', path: QidoPath = {}): QidoQueryError {
  try {
    parse(query, level, path);
  } catch (e) {
    if (e instanceof QidoQueryError) return e;
    throw e;
  }
  throw new Error(`no error for ${query}`);
}

describe('parseQidoQuery: match keys', () => {
  it('reads keywords, tags in any spelling, and lists', () => {
    expect(parse('PatientID=a').constraints).toEqual(new Map([['00100020', 'a']]));
    expect(parse('00100020=a').constraints).toEqual(new Map([['00100020', 'a']]));
    expect(parse('PatientID=a,b&00100020=c%5Cd').constraints).toEqual(new Map([['00100020', 'a\\b\\c\\d']]));
  });

  it('leaves universal matches out of the constraints but returns the attribute', () => {
    const query = parse('StudyDescription=&InstitutionName=*&PatientName=a,*');
    expect(query.constraints.size).toBe(0);
    expect(query.returnTags).toEqual(expect.arrayContaining(['00081030', '00080080', '00100010']));
  });

  it('validates DA, TM and DT values and ranges', () => {
    expect(parse('StudyDate=20240101-20241231').constraints.get('00080020')).toBe('20240101-20241231');
    expect(parse('StudyDate=-20240101,20250101-').constraints.get('00080020')).toBe('-20240101\\20250101-');
    expect(parse('StudyTime=0930-100000.5').constraints.get('00080030')).toBe('0930-100000.5');
    expect(parse('AcquisitionDateTime=20240101120000-0500').constraints.get('0008002A')).toBe('20240101120000-0500');
    expect(parse('AcquisitionDateTime=2024-2025').constraints.get('0008002A')).toBe('2024-2025');
    expect(error('StudyDate=2024-01-01').message).toMatch(/Invalid DA value/);
    expect(error('StudyDate=20240230x').message).toMatch(/StudyDate/);
    expect(error('StudyDate=20240201-20240101').message).toMatch(/starts after it ends/);
    expect(error('StudyDate=-').message).toMatch(/StudyDate/);
    expect(error('StudyTime=2460').message).toMatch(/StudyTime/);
  });

  it('refuses unknown keys, sequence paths and sequence or computed match keys', () => {
    expect(error('Nope=1').message).toMatch(/Unknown attribute in the query: "Nope"/);
    expect(error('0010002=1').message).toMatch(/Unknown attribute/);
    expect(error('ReferencedStudySequence.StudyInstanceUID=1').message).toMatch(/inside sequences/);
    expect(error('ReferencedStudySequence=1').message).toMatch(/sequence/);
    expect(error('NumberOfStudyRelatedSeries=2').message).toMatch(/not supported/);
    expect(error('RetrieveURL=http://x').message).toMatch(/not supported/);
  });

  it('accepts private tags, and answers InstanceAvailability itself', () => {
    expect(parse('00090010=Lunit&00091001=x').constraints).toEqual(new Map([['00090010', 'Lunit'], ['00091001', 'x']]));
    expect(parse('InstanceAvailability=ONLINE').satisfiable).toBe(true);
    expect(parse('InstanceAvailability=OFFLINE,NEARLINE').satisfiable).toBe(false);
    expect(parse('InstanceAvailability=ONLINE').constraints.size).toBe(0);
  });

  it('ignores empty keys and the accept/charset parameters', () => {
    expect(parse('=x&accept=application/json&charset=utf-8').constraints.size).toBe(0);
  });
});

describe('parseQidoQuery: paging and options', () => {
  it('reads limit, offset and fuzzymatching', () => {
    expect(parse('limit=10&offset=20&fuzzymatching=true')).toMatchObject({ limit: 10, offset: 20, fuzzy: true });
    expect(parse('')).toMatchObject({ limit: 0, offset: 0, fuzzy: false });
  });

  it.each(['limit=-1', 'limit=1.5', 'limit=', 'offset=abc', 'offset=1e3', 'fuzzymatching=yes', 'fuzzymatching=TRUE'])('refuses %s', (query) => {
    expect(error(query)).toBeInstanceOf(QidoQueryError);
  });
});

describe('parseQidoQuery: path UIDs', () => {
  it('adds them as exact constraints', () => {
    expect(parse('', 'Instance', { study: '1.2', series: '1.2.3' }).constraints).toEqual(
      new Map([['0020000D', '1.2'], ['0020000E', '1.2.3']]),
    );
  });

  it('refuses matching syntax in them', () => {
    expect(error('', 'Series', { study: '1.2.*' }).message).toMatch(/StudyInstanceUID in the path/);
    expect(error('', 'Instance', { study: '1', series: 'a\\b' }).message).toMatch(/SeriesInstanceUID in the path/);
  });

  it('cannot match when the query asks for another UID than the path', () => {
    expect(parse('StudyInstanceUID=1.3', 'Series', { study: '1.2' }).satisfiable).toBe(false);
    expect(parse('StudyInstanceUID=1.3,1.2', 'Series', { study: '1.2' }).satisfiable).toBe(true);
    expect(parse('StudyInstanceUID=1.*', 'Series', { study: '1.2' }).satisfiable).toBe(true);
  });
});

describe('parseQidoQuery: returned attributes (PS3.18 §10.6.3.3)', () => {
  const STUDY_DEFAULTS = [
    '00080005', '00080020', '00080030', '00080050', '00080056', '00080061', '00080090', '00080201', '00081190',
    '00100010', '00100020', '00100030', '00100040', '0020000D', '00200010', '00201206', '00201208',
  ];

  it('returns Table 10.6.3-3 for studies', () => {
    expect(parse('').returnTags).toEqual(STUDY_DEFAULTS);
  });

  it('adds study attributes to all-series searches only, without the study counts', () => {
    const all = parse('', 'Series').returnTags;
    expect(all).toEqual(expect.arrayContaining(['00100010', '00080020', '0020000E', '00201209']));
    expect(all).not.toContain('00201206');
    expect(all).not.toContain('00400275'); // a sequence: the native model has no sequence values
    const inStudy = parse('', 'Series', { study: '1.2' }).returnTags;
    expect(inStudy).not.toContain('00100010');
    expect(inStudy).toContain('0020000D');
  });

  it('adds series attributes to instance searches unless the series is in the path', () => {
    expect(parse('', 'Instance', { study: '1' }).returnTags).toEqual(expect.arrayContaining(['00080060', '0020000E']));
    expect(parse('', 'Instance', { study: '1' }).returnTags).not.toContain('00100010');
    expect(parse('', 'Instance', { study: '1', series: '2' }).returnTags).not.toContain('00080060');
    expect(parse('', 'Instance', { study: '1', series: '2' }).returnTags).not.toContain('00201209');
  });

  it('adds includefields of this level or above, and private creators', () => {
    const study = parse('includefield=StudyDescription,SeriesDescription&includefield=00091001').returnTags;
    expect(study).toEqual(expect.arrayContaining(['00081030', '00091001', '00090010']));
    expect(study).not.toContain('0008103E');
    expect(parse('includefield=all').returnTags).toEqual(expect.arrayContaining(['00081030', '00080080', '00080062']));
    expect(parse('includefield=ReferencedStudySequence.StudyInstanceUID').returnTags).toEqual(STUDY_DEFAULTS);
    expect(error('includefield=Bogus').message).toMatch(/Bogus/);
  });
});

describe('listMatches', () => {
  it('matches lists with wildcards', () => {
    expect(listMatches('ON*', 'ONLINE')).toBe(true);
    expect(listMatches('NEARLINE\\ONLIN?', 'ONLINE')).toBe(true);
    expect(listMatches('OFFLINE', 'ONLINE')).toBe(false);
    expect(listMatches('1.2.3', '1.2.34')).toBe(false);
  });
});

describe('serializeQidoAnswer', () => {
  const dataset = tagValuesToDicomJson(
    { '00080005': 'ISO_IR 192', '00100010': 'Wang^XiaoDong=王^小東', '00201206': '2', '00080061': 'CT\\MR', '00091001': 'x', '00080050': '' },
    { vrs: { '00091001': 'UN' } },
  );

  it('gives the text of serializeDicomJson', () => {
    expect(serializeQidoAnswer([dataset, dataset], Object.keys(dataset))).toBe(serializeDicomJson([dataset, dataset]));
    expect(serializeQidoAnswer([], [])).toBe('[]');
  });

  it('keeps tag order for tags JavaScript would list first', () => {
    const overlay = tagValuesToDicomJson({ '00100010': 'A', '60000010': '4' });
    const text = serializeQidoAnswer([overlay], Object.keys(overlay));
    expect(text.indexOf('"00100010"')).toBeLessThan(text.indexOf('"60000010"'));
    expect(text).toBe(serializeDicomJson([overlay]));
  });
});
