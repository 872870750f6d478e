import {
  formatTag,
  isBinaryVr,
  isFileMetaTag,
  isGroupLengthTag,
  isNumericVr,
  isPrivateCreatorTag,
  isPrivateTag,
  keywordToTag,
  lookupTag,
  normalizeTag,
  normalizeTagPath,
  privateCreatorTagOf,
  tagToKeyword,
  toOrthancTag,
  vrOfTag,
} from '../../src/dicom/dictionary';

describe('normalizeTag', () => {
  it.each([
    ['00100010', '00100010'],
    ['0010,0010', '00100010'],
    ['(0010,0010)', '00100010'],
    ['0010 0010', '00100010'],
    ['7fe0,0010', '7FE00010'],
    ['(7Fe0,0010)', '7FE00010'],
    [' 0020000d ', '0020000D'],
    ['PatientName', '00100010'],
    ['StudyInstanceUID', '0020000D'],
    ['patientname', '00100010'],
    ['00091010', '00091010'],
  ])('%s → %s', (spelling, tag) => {
    expect(normalizeTag(spelling)).toBe(tag);
  });

  it.each(['', 'Foo', 'NotAKeyword', '0010,001', '(0010,0010', '0010-0010', '00100010x', 'GGGG,0010', '0010,0010,0010', 'Patient Name'])(
    'rejects %j',
    (spelling) => {
      expect(normalizeTag(spelling)).toBeUndefined();
    },
  );

  it('maps retired keywords without the dcmjs "RETIRED_" prefix, and with it', () => {
    expect(normalizeTag('OverlayDate')).toBe('00080024');
    expect(normalizeTag('RETIRED_OverlayDate')).toBe('00080024');
  });
});

describe('dictionary lookups', () => {
  it('gives keyword, VR and VM of standard tags', () => {
    expect(lookupTag('00100010')).toEqual({ tag: '00100010', keyword: 'PatientName', vr: 'PN', vm: '1', retired: false });
    expect(lookupTag('00280030')?.vr).toBe('DS');
    expect(lookupTag('00081250')?.vr).toBe('SQ');
    expect(tagToKeyword('0020000E')).toBe('SeriesInstanceUID');
    expect(keywordToTag('SOPInstanceUID')).toBe('00080018');
  });

  it('strips the retired prefix from keywords', () => {
    expect(lookupTag('00080024')).toMatchObject({ keyword: 'OverlayDate', retired: true });
  });

  it('resolves repeating groups (overlays)', () => {
    expect(lookupTag('60020010')).toMatchObject({ keyword: 'OverlayRows', vr: 'US' });
  });

  it('resolves ambiguous dictionary VRs to a concrete one', () => {
    expect(lookupTag('7FE00010')?.vr).toBe('OW'); // OB or OW
    expect(lookupTag('00280106')?.vr).toBe('US'); // US or SS
  });

  it('knows nothing about private or unknown tags', () => {
    expect(lookupTag('00091010')).toBeUndefined();
    expect(tagToKeyword('00090010')).toBeUndefined();
    expect(lookupTag('00100011')).toBeUndefined();
    expect(lookupTag('FFFEE000')).toBeUndefined(); // item pseudo-element
  });
});

describe('vrOfTag', () => {
  it('prefers a VR known from the data', () => {
    expect(vrOfTag('00091010', 'DS')).toBe('DS');
    expect(vrOfTag('00100010', 'LO')).toBe('LO');
  });
  it('falls back to the dictionary, LO for private creators, UN otherwise', () => {
    expect(vrOfTag('00100010')).toBe('PN');
    expect(vrOfTag('00090010')).toBe('LO');
    expect(vrOfTag('00091010')).toBe('UN');
    expect(vrOfTag('00100011')).toBe('UN');
    expect(vrOfTag('00100010', 'XX')).toBe('PN');
  });
});

describe('private tags', () => {
  it('recognises private groups, creators and blocks', () => {
    expect(isPrivateTag('00091010')).toBe(true);
    expect(isPrivateTag('00100010')).toBe(false);
    expect(isPrivateTag('00070010')).toBe(false); // groups 1-7 are not private groups
    expect(isPrivateCreatorTag('00090010')).toBe(true);
    expect(isPrivateCreatorTag('000900FF')).toBe(true);
    expect(isPrivateCreatorTag('00091010')).toBe(false);
    expect(privateCreatorTagOf('00091010')).toBe('00090010');
    expect(privateCreatorTagOf('0029A105')).toBe('002900A1');
    expect(privateCreatorTagOf('00090010')).toBeUndefined();
    expect(privateCreatorTagOf('00100010')).toBeUndefined();
  });
});

describe('VR classes and tag helpers', () => {
  it('classifies VRs', () => {
    for (const vr of ['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']) expect(isBinaryVr(vr)).toBe(true);
    for (const vr of ['PN', 'SQ', 'US', 'LO', 'AT']) expect(isBinaryVr(vr)).toBe(false);
    for (const vr of ['IS', 'DS', 'US', 'SS', 'UL', 'SL', 'FL', 'FD', 'UV', 'SV']) expect(isNumericVr(vr)).toBe(true);
    for (const vr of ['UI', 'PN', 'OB', 'AT', 'DA']) expect(isNumericVr(vr)).toBe(false);
  });

  it('formats and classifies tags', () => {
    expect(formatTag('00100010')).toBe('(0010,0010)');
    expect(toOrthancTag('7FE00010')).toBe('7FE0,0010');
    expect(isGroupLengthTag('00080000')).toBe(true);
    expect(isGroupLengthTag('00080005')).toBe(false);
    expect(isFileMetaTag('00020010')).toBe(true);
    expect(isFileMetaTag('00080016')).toBe(false);
  });

  it('normalises dotted attribute paths', () => {
    expect(normalizeTagPath('ReferencedSeriesSequence.0020000E')).toEqual(['00081115', '0020000E']);
    expect(normalizeTagPath('00081115.Nope')).toBeUndefined();
  });
});
