import fc from 'fast-check';
import {
  describeOffer,
  formatMediaType,
  mediaTypeMatch,
  negotiateMediaType,
  parseAccept,
  parseMediaType,
  splitHeaderList,
  type MediaOffer,
  type NegotiationResult,
} from '../../src/dicom/media-types';

const EVRLE = '1.2.840.10008.1.2.1';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const JPEG_LOSSLESS_SV1 = '1.2.840.10008.1.2.4.70';
const J2K_LOSSLESS = '1.2.840.10008.1.2.4.90';

const QIDO: MediaOffer[] = [
  { mediaType: 'application/dicom+json' },
  { mediaType: 'application/json' },
  { mediaType: 'multipart/related', partType: 'application/dicom+xml' },
];

const INSTANCES: MediaOffer[] = [
  { mediaType: 'multipart/related', partType: 'application/dicom', transferSyntaxes: [EVRLE, JPEG_BASELINE, J2K_LOSSLESS] },
];

const FRAMES: MediaOffer[] = [
  { mediaType: 'multipart/related', partType: 'application/octet-stream', transferSyntaxes: [EVRLE] },
  {
    mediaType: 'multipart/related',
    partType: 'image/jpeg',
    transferSyntaxes: [JPEG_BASELINE, '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', JPEG_LOSSLESS_SV1],
    defaultTransferSyntax: JPEG_LOSSLESS_SV1,
  },
  { mediaType: 'multipart/related', partType: 'image/jls', transferSyntaxes: ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81'] },
  { mediaType: 'multipart/related', partType: 'image/jp2', transferSyntaxes: [J2K_LOSSLESS, '1.2.840.10008.1.2.4.91'] },
  { mediaType: 'multipart/related', partType: 'image/jphc', transferSyntaxes: ['1.2.840.10008.1.2.4.201'] },
  { mediaType: 'multipart/related', partType: 'image/dicom-rle', transferSyntaxes: ['1.2.840.10008.1.2.5'] },
  { mediaType: 'application/octet-stream', transferSyntaxes: [EVRLE], anyTransferSyntax: false },
];

const RENDERED: MediaOffer[] = [{ mediaType: 'image/jpeg' }, { mediaType: 'image/png' }, { mediaType: 'image/gif' }];

/** The selection in a compact form, or the kind when nothing was selected. */
function pick(result: NegotiationResult): string {
  if (result.kind !== 'selected') return result.kind;
  return [result.mediaType, result.partType, result.transferSyntax].filter((x) => x !== undefined).join(' | ');
}

describe('parseMediaType and splitHeaderList', () => {
  it('parses type, parameters and quoted strings', () => {
    const parsed = parseMediaType('Multipart/Related; TYPE="application/dicom"; boundary="a\\\\b\\"c"');
    expect(parsed).toEqual({ type: 'multipart/related', params: { type: 'application/dicom', boundary: 'a\\b"c' } });
  });

  it('returns an error for invalid input instead of throwing', () => {
    for (const text of ['', '/json', 'application/', 'a/b c', 'a/b; =x', 'a/b; x="y', 'a/b; x="y" z', 'a/b; x=1; X=2']) {
      expect(parseMediaType(text)).toHaveProperty('error');
    }
  });

  it('splits lists on commas outside quotes and drops empty elements', () => {
    expect(splitHeaderList(' a/b; type="x,y\\",z" ,, c/d ,')).toEqual(['a/b; type="x,y\\",z"', 'c/d']);
  });
});

describe('parseAccept', () => {
  it('parses media ranges with q values and parameters', () => {
    const { ranges, invalid } = parseAccept(
      'multipart/related; type="Application/DICOM"; transfer-syntax=1.2.840.10008.1.2.4.50; q=0.9; boundary=**, ' +
        'Application/DICOM+JSON;q=0.5, */*;q=0',
    );
    expect(invalid).toEqual([]);
    expect(ranges).toEqual([
      {
        type: 'multipart/related',
        params: { type: 'application/dicom', 'transfer-syntax': JPEG_BASELINE, boundary: '**' },
        q: 0.9,
        index: 0,
      },
      { type: 'application/dicom+json', params: {}, q: 0.5, index: 1 },
      { type: '*/*', params: {}, q: 0, index: 2 },
    ]);
  });

  it('collects invalid elements separately (PS3.18 §8.7.7: they are ignored)', () => {
    const { ranges, invalid } = parseAccept('foo, */json, text/html;q=abc, a/b;q=1.5, c/d; x="open, image/png;q=1.000');
    // The unterminated quote swallows the rest of the header.
    expect(invalid).toEqual(['foo', '*/json', 'text/html;q=abc', 'a/b;q=1.5', 'c/d; x="open, image/png;q=1.000']);
    expect(ranges).toEqual([]);
    expect(parseAccept('image/png;q=1.000, image/gif;q=0.25, a/b;q=.5').ranges.map((r) => r.q)).toEqual([1, 0.25, 0.5]);
  });
});

describe('mediaTypeMatch', () => {
  it('scores exact, type/* and */* matches', () => {
    expect(mediaTypeMatch('image/jpeg', 'IMAGE/JPEG')).toBe(2);
    expect(mediaTypeMatch('image/*', 'image/jpeg')).toBe(1);
    expect(mediaTypeMatch('*/*', 'image/jpeg')).toBe(0);
    expect(mediaTypeMatch('image/*', 'imagex/jpeg')).toBe(-1);
    expect(mediaTypeMatch('image/png', 'image/jpeg')).toBe(-1);
  });
});

describe('negotiateMediaType for QIDO-RS', () => {
  it.each([
    ['*/*', 'application/dicom+json'],
    ['application/*', 'application/dicom+json'],
    ['application/json', 'application/json'],
    ['APPLICATION/JSON; charset=utf-8', 'application/json'],
    ['application/json, application/dicom+json', 'application/json'],
    ['application/dicom+json;q=0.5, application/json', 'application/json'],
    ['*/*, application/dicom+json;q=0', 'application/json'],
    ['application/*;q=0, multipart/*', 'multipart/related | application/dicom+xml'],
    ['multipart/related; type="application/dicom+xml"', 'multipart/related | application/dicom+xml'],
    ['multipart/related; type=application/dicom+xml', 'multipart/related | application/dicom+xml'],
    ['text/html, garbage, application/dicom+json;q=0.1', 'application/dicom+json'],
  ])('Accept: %s → %s', (accept, expected) => {
    expect(pick(negotiateMediaType(accept, QIDO))).toBe(expected);
  });

  it('answers 406 with everything offered when nothing matches', () => {
    const result = negotiateMediaType('application/dicom+xml, text/html', QIDO);
    expect(result).toEqual({
      kind: 'not-acceptable',
      message: 'none of the media types in "application/dicom+xml, text/html" can be produced',
      offered: ['application/dicom+json', 'application/json', 'multipart/related; type="application/dicom+xml"'],
    });
    expect(negotiateMediaType('*/*;q=0', QIDO).kind).toBe('not-acceptable');
  });

  it('calls a header with no valid media range malformed', () => {
    expect(negotiateMediaType('garbage', QIDO)).toEqual({ kind: 'malformed', message: 'invalid Accept header: garbage' });
    expect(negotiateMediaType('application/json;q=5', QIDO).kind).toBe('malformed');
    expect(negotiateMediaType('application/json; x="open', QIDO).kind).toBe('malformed');
  });

  it('treats a missing Accept header as */* unless told to follow §8.7.7 strictly', () => {
    expect(pick(negotiateMediaType(undefined, QIDO))).toBe('application/dicom+json');
    expect(pick(negotiateMediaType('  ', QIDO))).toBe('application/dicom+json');
    const strict = negotiateMediaType(undefined, QIDO, { requireAccept: true });
    expect(strict.kind).toBe('not-acceptable');
  });

  it('lets the accept query parameter take precedence over the header', () => {
    const result = negotiateMediaType('application/dicom+json', QIDO, { acceptQuery: 'application/json' });
    expect(result).toMatchObject({ kind: 'selected', mediaType: 'application/json', source: 'query' });
    // Nothing usable in the query parameter: the header decides.
    const fallback = negotiateMediaType('application/dicom+json', QIDO, { acceptQuery: 'text/html' });
    expect(fallback).toMatchObject({ kind: 'selected', mediaType: 'application/dicom+json', source: 'header' });
    expect(negotiateMediaType('*/*', QIDO, { acceptQuery: '%%%' }).kind).toBe('malformed');
  });
});

describe('negotiateMediaType for WADO-RS instances', () => {
  const mp = 'multipart/related; type="application/dicom"';
  it.each([
    ['*/*', `multipart/related | application/dicom | ${EVRLE}`],
    ['multipart/related', `multipart/related | application/dicom | ${EVRLE}`],
    [mp, `multipart/related | application/dicom | ${EVRLE}`],
    ['MULTIPART/Related; TYPE="Application/DICOM"', `multipart/related | application/dicom | ${EVRLE}`],
    ['multipart/related; type="application/*"', `multipart/related | application/dicom | ${EVRLE}`],
    [`${mp}; transfer-syntax=${JPEG_BASELINE}`, `multipart/related | application/dicom | ${JPEG_BASELINE}`],
    [`${mp}; transfer-syntax="${J2K_LOSSLESS}"`, `multipart/related | application/dicom | ${J2K_LOSSLESS}`],
    [`${mp}; transfer-syntax=*`, 'multipart/related | application/dicom | *'],
    [`${mp}; transfer-syntax=${JPEG_BASELINE}; q=0.5, ${mp}; transfer-syntax=${J2K_LOSSLESS}`, `multipart/related | application/dicom | ${J2K_LOSSLESS}`],
    [`${mp}; transfer-syntax=*; q=0.5, ${mp}; transfer-syntax=${JPEG_BASELINE}`, `multipart/related | application/dicom | ${JPEG_BASELINE}`],
    [`${mp}; transfer-syntax=1.2.840.10008.1.2.4.100, ${mp}; q=0.2`, `multipart/related | application/dicom | ${EVRLE}`],
  ])('Accept: %s → %s', (accept, expected) => {
    expect(pick(negotiateMediaType(accept, INSTANCES))).toBe(expected);
  });

  it('answers 406 for an unsupported transfer syntax, listing each one offered', () => {
    const result = negotiateMediaType(`${mp}; transfer-syntax=1.2.840.10008.1.2.4.100`, INSTANCES);
    expect(result.kind).toBe('not-acceptable');
    expect(result.kind === 'not-acceptable' && result.offered).toEqual([
      `${mp}; transfer-syntax=${EVRLE}`,
      `${mp}; transfer-syntax=${JPEG_BASELINE}`,
      `${mp}; transfer-syntax=${J2K_LOSSLESS}`,
      `${mp}; transfer-syntax=*`,
    ]);
  });

  it('answers 406 for a single part application/dicom (only multipart is offered here)', () => {
    expect(negotiateMediaType('application/dicom', INSTANCES).kind).toBe('not-acceptable');
  });

  it('lets a more specific q=0 exclude the default transfer syntax', () => {
    const accept = `${mp}; transfer-syntax=${EVRLE}; q=0, ${mp}`;
    expect(negotiateMediaType(accept, INSTANCES).kind).toBe('not-acceptable');
  });
});

describe('negotiateMediaType for frames and bulk data', () => {
  it.each([
    ['*/*', `multipart/related | application/octet-stream | ${EVRLE}`],
    ['multipart/related; type="application/octet-stream"', `multipart/related | application/octet-stream | ${EVRLE}`],
    ['multipart/related; type="application/octet-stream"; transfer-syntax=*', 'multipart/related | application/octet-stream | *'],
    ['multipart/related; type="image/jpeg"', `multipart/related | image/jpeg | ${JPEG_LOSSLESS_SV1}`],
    [`multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_BASELINE}`, `multipart/related | image/jpeg | ${JPEG_BASELINE}`],
    ['multipart/related; type="image/*"', `multipart/related | image/jpeg | ${JPEG_LOSSLESS_SV1}`],
    ['multipart/related; type="image/jls", multipart/related; type="image/jp2"; q=0.8', 'multipart/related | image/jls | 1.2.840.10008.1.2.4.80'],
    ['multipart/related; type="image/jls"; q=0.5, multipart/related; type="image/jp2"; q=0.8', `multipart/related | image/jp2 | ${J2K_LOSSLESS}`],
    ['multipart/related; type="image/jphc"', 'multipart/related | image/jphc | 1.2.840.10008.1.2.4.201'],
    ['multipart/related; type="image/dicom-rle"', 'multipart/related | image/dicom-rle | 1.2.840.10008.1.2.5'],
    ['application/octet-stream', `application/octet-stream | ${EVRLE}`],
  ])('Accept: %s → %s', (accept, expected) => {
    expect(pick(negotiateMediaType(accept, FRAMES))).toBe(expected);
  });

  it('does not offer "as stored" where the route said so', () => {
    expect(negotiateMediaType('application/octet-stream; transfer-syntax=*', FRAMES).kind).toBe('not-acceptable');
    expect(describeOffer(FRAMES[6])).toEqual([`application/octet-stream; transfer-syntax=${EVRLE}`]);
  });

  it('does not serve a single-part image/jpeg from a multipart-only offer', () => {
    expect(negotiateMediaType('image/jpeg', FRAMES).kind).toBe('not-acceptable');
  });
});

describe('negotiateMediaType for rendered resources', () => {
  it.each([
    ['*/*', 'image/jpeg'],
    ['image/*', 'image/jpeg'],
    ['image/png', 'image/png'],
    ['image/gif;q=0.9, image/png;q=0.8', 'image/gif'],
    ['image/*;q=0.5, image/png', 'image/png'],
    ['image/*, image/jpeg;q=0', 'image/png'],
    ['image/*, image/png', 'image/png'],
  ])('Accept: %s → %s', (accept, expected) => {
    const result = negotiateMediaType(accept, RENDERED);
    expect(pick(result)).toBe(expected);
    expect(result).toHaveProperty('kind', 'selected');
    expect(result).not.toHaveProperty('transferSyntax');
  });

  it('answers 406 with the rendered types', () => {
    expect(negotiateMediaType('text/html', RENDERED)).toMatchObject({
      kind: 'not-acceptable',
      offered: ['image/jpeg', 'image/png', 'image/gif'],
    });
  });
});

describe('formatMediaType', () => {
  it('quotes values that are not tokens and escapes quotes', () => {
    expect(formatMediaType('multipart/related', { type: 'application/dicom', 'transfer-syntax': '*', x: 'a"b\\c' })).toBe(
      'multipart/related; type="application/dicom"; transfer-syntax=*; x="a\\"b\\\\c"',
    );
    expect(parseMediaType(formatMediaType('a/b', { x: 'a"b\\c ,;' }))).toEqual({ type: 'a/b', params: { x: 'a"b\\c ,;' } });
    expect(() => formatMediaType('a/b', { x: 'line\r\nbreak' })).toThrow(TypeError);
  });
});

describe('negotiateMediaType properties', () => {
  const offersArb = fc.constantFrom(QIDO, INSTANCES, FRAMES, RENDERED);
  const pieces = [
    'multipart/related', 'application/dicom', 'image/*', '*/*', 'image/jpeg', ';', ',', ' ', '"', '\\', '=',
    'type=', 'transfer-syntax=', 'q=0', 'q=0.5', 'q=1', '*', EVRLE, JPEG_BASELINE, 'application/dicom+json',
  ];
  const headerArb = fc.oneof(
    fc.array(fc.constantFrom(...pieces), { maxLength: 16 }).map((p) => p.join('')),
    fc.string({ maxLength: 60 }),
  );

  it('never throws, and only ever selects something offered with q > 0', () => {
    fc.assert(
      fc.property(headerArb, offersArb, (header, offers) => {
        const result = negotiateMediaType(header, offers);
        expect(['selected', 'not-acceptable', 'malformed']).toContain(result.kind);
        if (result.kind === 'selected') {
          expect(offers).toContain(result.offer);
          expect(result.q).toBeGreaterThan(0);
          const allowed = result.offer.transferSyntaxes;
          if (allowed === undefined) expect(result.transferSyntax).toBeUndefined();
          else expect([...allowed, '*']).toContain(result.transferSyntax);
        }
      }),
      { seed: 1818, numRuns: 2000 },
    );
  });
});
