/**
 * Property-based fuzzing (fast-check, fixed seed: a failure replays exactly) of the DICOM parsers with
 * mutated Part 10 files: truncations, flipped bytes, huge length fields, deep sequence nesting. Each
 * parser either answers or throws its own typed error (DicomScanError / NeedMoreData / DicomParseError),
 * never a RangeError or TypeError, and never loops (bounded runs under jest's timeout). The HTTP part
 * posts such bodies to POST /instances and STOW-RS: a 2xx/4xx JSON answer, never a 500.
 */
import fc from 'fast-check';
import request from 'supertest';
import { readDataset } from '../../src/dicom/dataset-reader';
import { parseIdentifiers, scanIdentifiers } from '../../src/dicom/dicom-identifiers';
import { DicomParseError } from '../../src/dicom/dicom-file';
import { bufferSource, scanDicom } from '../../src/dicom/element-scanner';
import { DicomScanError, ElementWalker, MAX_DEPTH, NeedMoreData, readFileMeta } from '../../src/dicom/element-walker';
import { walkElements } from '../../src/dicom/raw-elements';
import { encodingOf } from '../../src/dicom/transfer-syntax';
import { makeInstance, TransferSyntax, type TransferSyntaxUid } from '../helpers/dicom-factory';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';

const SEED = 20240611;
const NUM_RUNS = 300;

const SYNTAXES: readonly TransferSyntaxUid[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
];
const BASES: readonly Buffer[] = SYNTAXES.map((transferSyntax) =>
  makeInstance({ seed: 'fuzz', PatientID: 'FUZZ', PatientName: 'Fuzz^Me', transferSyntax }),
);

// ---------------------------------------------------------------------------------------------
// Mutations

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; edits: Array<[number, number]> }
  | { kind: 'length'; at: number; value: number };

/** Positions are fractions of the file's length, so one arbitrary serves every base file. */
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('flip' as const),
    edits: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant('length' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    value: fc.constantFrom(0xffffffff, 0xfffffffe, 0x7fffffff, 0x80000000, 0xfffffff0, 0x10000, 0xffff, 1, 3),
  }),
);

function mutate(base: Buffer, mutation: Mutation): Buffer {
  const bytes = Buffer.from(base);
  const pos = (f: number): number => Math.min(bytes.length - 1, Math.floor(f * bytes.length));
  switch (mutation.kind) {
    case 'truncate':
      return bytes.subarray(0, pos(mutation.at));
    case 'flip':
      for (const [at, value] of mutation.edits) bytes[pos(at)] = value;
      return bytes;
    case 'length': {
      // a 4-byte length anywhere, and the 2-byte length of a short explicit VR header
      const at = Math.min(bytes.length - 4, pos(mutation.at));
      bytes.writeUInt32LE(mutation.value, at);
      return bytes;
    }
  }
}

const mutatedArb = fc.tuple(fc.integer({ min: 0, max: BASES.length - 1 }), mutationArb).map(([base, m]) => mutate(BASES[base], m));

/** The meta group of an explicit little endian base, then `depth` nested undefined-length sequences and items. */
function deeplyNested(depth: number): Buffer {
  const base = BASES[0];
  const { datasetOffset } = readFileMeta(new ElementWalker(base, true));
  const open = Buffer.from([0x08, 0x00, 0x15, 0x11, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
  return Buffer.concat([base.subarray(0, datasetOffset), ...Array.from({ length: depth }, () => open)]);
}

// ---------------------------------------------------------------------------------------------
// Parsers under test

function isTyped(error: unknown): boolean {
  return error instanceof DicomScanError || error instanceof NeedMoreData || error instanceof DicomParseError;
}

/** Runs `parse` and fails the property with the error's name when it throws an untyped exception. */
function answersOrTypedError(parse: () => unknown): void {
  try {
    parse();
  } catch (error) {
    if (!isTyped(error)) throw new Error(`untyped exception: ${String((error as Error)?.stack ?? error)}`);
  }
}

function walkRaw(bytes: Buffer): unknown {
  const walker = new ElementWalker(bytes, true);
  const { transferSyntax, datasetOffset } = readFileMeta(walker);
  return walkElements(bytes, encodingOf(transferSyntax), datasetOffset);
}

const PARSERS: ReadonlyArray<[string, (bytes: Buffer) => unknown]> = [
  ['readDataset (complete)', (b) => readDataset(b, { complete: true, stopAtPixelData: false })],
  ['readDataset (prefix)', (b) => readDataset(b, { complete: false, stopAtPixelData: true })],
  ['scanIdentifiers', (b) => scanIdentifiers(b)],
  ['scanIdentifiers (complete)', (b) => scanIdentifiers(b, true)],
  ['parseIdentifiers', (b) => parseIdentifiers(b)],
  ['walkElements', walkRaw],
];

describe('DICOM parsers under random mutations (fixed seed)', () => {
  it('the base files parse cleanly', () => {
    for (const base of BASES) for (const [, parse] of PARSERS) expect(() => parse(base)).not.toThrow();
  });

  it.each(PARSERS)('%s returns or throws its typed error', (_name, parse) => {
    fc.assert(
      fc.property(mutatedArb, (bytes) => answersOrTypedError(() => parse(bytes))),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  });

  it('scanDicom (the layout scan) returns or throws its typed error', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedArb, async (bytes) => {
        try {
          await scanDicom(bufferSource(bytes));
        } catch (error) {
          if (!isTyped(error)) throw new Error(`untyped exception: ${String((error as Error)?.stack ?? error)}`);
        }
      }),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  });

  it.each([
    ['readDataset', (b: Buffer) => readDataset(b, { complete: true, stopAtPixelData: false })],
    ['walkElements', walkRaw],
  ])('%s stops deep nesting at MAX_DEPTH with DicomScanError', (_name, parse) => {
    expect(() => parse(deeplyNested(MAX_DEPTH * 4))).toThrow(DicomScanError);
    expect(() => parse(deeplyNested(MAX_DEPTH * 4))).toThrow(/depth|nest/i);
  });

  it('parseIdentifiers turns deep nesting into DicomParseError', () => {
    expect(() => parseIdentifiers(deeplyNested(MAX_DEPTH * 4))).toThrow(DicomParseError);
  });
});

// ---------------------------------------------------------------------------------------------
// The same bodies over HTTP

describe('mutated uploads over HTTP on the embedded core (fixed seed)', () => {
  let gateway: TestGateway;
  const bodies = fc.sample(mutatedArb, { seed: SEED, numRuns: 40 });
  bodies.push(deeplyNested(MAX_DEPTH * 4));

  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
  });
  afterAll(async () => {
    await gateway?.close();
  });

  const expectClean = (res: request.Response, what: string): void => {
    expect({ what, status: res.status, ok: [200, 202, 400, 409, 413, 415].includes(res.status) }).toEqual({ what, status: res.status, ok: true });
    expect(res.type).toMatch(/json/);
  };

  it('POST /instances answers 200/400/409 JSON, never 500', async () => {
    for (const [n, body] of bodies.entries()) {
      const res = await request(gateway.app).post('/instances').type('application/dicom').send(body);
      expectClean(res, `POST /instances body #${n}`);
    }
  });

  it('STOW-RS answers 200/202/400/409 JSON, never 500', async () => {
    for (const [n, body] of bodies.entries()) {
      const multipart = Buffer.concat([
        Buffer.from('--fuzz\r\nContent-Type: application/dicom\r\n\r\n'),
        body,
        Buffer.from('\r\n--fuzz--\r\n'),
      ]);
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Accept', 'application/dicom+json')
        .type('multipart/related; type="application/dicom"; boundary=fuzz')
        .send(multipart);
      expectClean(res, `STOW body #${n}`);
    }
  });

  it('still answers afterwards', async () => {
    expect((await request(gateway.app).get('/system')).status).toBe(200);
    expect((await request(gateway.app).post('/instances').type('application/dicom').send(BASES[0])).status).toBe(200);
  });
});
