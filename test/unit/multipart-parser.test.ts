import { PassThrough, Readable } from 'node:stream';
import fc from 'fast-check';
import {
  MultipartError,
  getMultipartBoundary,
  parseContentType,
  parseMultipart,
  type MultipartOptions,
} from '../../src/dicom/multipart-parser';

interface Collected {
  headers: Record<string, string>;
  body: Buffer;
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Parses everything, reading each body fully. */
async function collect(source: Readable, boundary: string, options?: MultipartOptions): Promise<Collected[]> {
  const out: Collected[] = [];
  for await (const part of parseMultipart(source, boundary, options)) {
    out.push({ headers: { ...part.headers }, body: await readAll(part.body) });
  }
  return out;
}

/** Same, but remembers what was delivered before an error. */
async function collectUntilError(
  source: Readable,
  boundary: string,
  options?: MultipartOptions,
): Promise<{ parts: Collected[]; error: unknown }> {
  const parts: Collected[] = [];
  try {
    for await (const part of parseMultipart(source, boundary, options)) {
      const body = await readAll(part.body);
      parts.push({ headers: { ...part.headers }, body });
    }
  } catch (error) {
    return { parts, error };
  }
  return { parts, error: undefined };
}

function chunksOf(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < data.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(data.subarray(last, p));
    last = p;
  }
  out.push(data.subarray(last));
  return out;
}

/** A byte-mode Readable (like an HTTP request) fed with the given chunks. */
function byteStream(chunks: Buffer[]): Readable {
  const stream = new PassThrough();
  let i = 0;
  const feed = (): void => {
    while (i < chunks.length) {
      if (!stream.write(chunks[i++])) {
        stream.once('drain', feed);
        return;
      }
    }
    stream.end();
  };
  feed();
  return stream;
}

const B = 'XyZ-boundary_42';
const SAMPLE = Buffer.from(
  [
    'preamble to ignore\r\n',
    `--${B}\r\n`,
    'Content-Type: application/dicom\r\n',
    'Content-Location: /studies/1\r\n',
    '\r\n',
    'first body\r\n--not-the-boundary\r\n--XyZ-boundar',
    `\r\n--${B}\r\n`,
    'content-type: application/octet-stream\r\n',
    '\r\n',
    '',
    `\r\n--${B}--\r\n`,
    'epilogue to ignore',
  ].join(''),
  'latin1',
);
const SAMPLE_PARTS: Collected[] = [
  {
    headers: { 'content-type': 'application/dicom', 'content-location': '/studies/1' },
    body: Buffer.from('first body\r\n--not-the-boundary\r\n--XyZ-boundar', 'latin1'),
  },
  { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(0) },
];

describe('parseContentType', () => {
  it('lower-cases the type and parameter names but keeps values', () => {
    const ct = parseContentType('Multipart/Related; Type="application/dicom"; BOUNDARY=AbC');
    expect(ct.type).toBe('multipart/related');
    expect({ ...ct.params }).toEqual({ type: 'application/dicom', boundary: 'AbC' });
  });

  it('accepts unquoted, quoted and escaped values with loose whitespace', () => {
    const ct = parseContentType('  multipart/related ;type=application/dicom ;  boundary = "a \\"q\\" b;c,d" ; x=1 ;');
    expect({ ...ct.params }).toEqual({ type: 'application/dicom', boundary: 'a "q" b;c,d', x: '1' });
  });

  it.each([
    ['', 'empty'],
    ['multipart', 'no subtype'],
    ['multipart/related; boundary="abc', 'unterminated quote'],
    ['multipart/related; boundary', 'parameter without value'],
    ['multipart/related; boundary=', 'empty value'],
    ['multipart/related; boundary=a; boundary=b', 'duplicate parameter'],
    ['multipart/related junk', 'garbage after type'],
  ])('rejects %j (%s) with a MultipartError', (header) => {
    expect(() => parseContentType(header)).toThrow(MultipartError);
  });
});

describe('getMultipartBoundary', () => {
  it('returns the boundary of a multipart Content-Type', () => {
    expect(getMultipartBoundary('multipart/related; type="application/dicom"; boundary="b:1 2"')).toBe('b:1 2');
    expect(getMultipartBoundary('MULTIPART/RELATED;boundary=abc')).toBe('abc');
  });

  it.each([
    [undefined, /Missing Content-Type/],
    ['application/dicom', /Expected a multipart/],
    ['multipart/related; type="application/dicom"', /no boundary/],
    ['multipart/related; boundary="a\u0001b"', /Invalid multipart boundary/],
    ['multipart/related; boundary="ends with space "', /Invalid multipart boundary/],
    [`multipart/related; boundary=${'x'.repeat(201)}`, /Invalid multipart boundary/],
  ])('rejects %j', (header, message) => {
    expect(() => getMultipartBoundary(header)).toThrow(MultipartError);
    expect(() => getMultipartBoundary(header)).toThrow(message);
  });
});

describe('parseMultipart', () => {
  it('parses parts with their headers and exact bytes, ignoring preamble and epilogue', async () => {
    expect(await collect(byteStream([SAMPLE]), B)).toEqual(SAMPLE_PARTS);
  });

  it('gives the same parts for every two-chunk split of the body', async () => {
    for (let cut = 1; cut < SAMPLE.length; cut++) {
      const parts = await collect(byteStream(splitAt(SAMPLE, [cut])), B);
      expect(parts).toEqual(SAMPLE_PARTS);
    }
  });

  it('gives the same parts with 1-byte chunks (byte stream and async iterable)', async () => {
    expect(await collect(byteStream(chunksOf(SAMPLE, 1)), B)).toEqual(SAMPLE_PARTS);
    expect(await collect(Readable.from(chunksOf(SAMPLE, 1)), B)).toEqual(SAMPLE_PARTS);
  });

  it('accepts a plain async iterable of Uint8Array and strings', async () => {
    async function* gen(): AsyncGenerator<Uint8Array | string> {
      yield `--${B}\r\nContent-Type: text/plain\r\n\r\nhé`;
      yield new Uint8Array([0, 255]);
      yield `\r\n--${B}--`;
    }
    const out: Collected[] = [];
    for await (const part of parseMultipart(gen(), B)) {
      out.push({ headers: { ...part.headers }, body: await readAll(part.body) });
    }
    expect(out).toEqual([
      { headers: { 'content-type': 'text/plain' }, body: Buffer.concat([Buffer.from('hé'), Buffer.from([0, 255])]) },
    ]);
  });

  it('accepts bare LF line endings', async () => {
    const body = Buffer.from(`--${B}\nContent-Type: a/b\n\nline1\nline2\n--${B}\n\nx\n--${B}--\n`);
    expect(await collect(byteStream([body]), B)).toEqual([
      { headers: { 'content-type': 'a/b' }, body: Buffer.from('line1\nline2') },
      { headers: {}, body: Buffer.from('x') },
    ]);
  });

  it('accepts transport padding after boundaries', async () => {
    const body = Buffer.from(`--${B} \t \r\nContent-Type: a/b\r\n\r\nabc\r\n--${B}\t\r\n\r\ndef\r\n--${B}--  \r\n`);
    expect(await collect(byteStream(chunksOf(body, 3)), B)).toEqual([
      { headers: { 'content-type': 'a/b' }, body: Buffer.from('abc') },
      { headers: {}, body: Buffer.from('def') },
    ]);
  });

  it('keeps a CR that ends a body (only the CRLF before the boundary is removed)', async () => {
    const body = Buffer.from(`--${B}\r\n\r\nabc\r\r\n--${B}\r\n\r\n\r\n\r\n--${B}--`);
    const parts = await collect(byteStream(chunksOf(body, 1)), B);
    expect(parts.map((p) => p.body.toString('latin1'))).toEqual(['abc\r', '\r\n']);
  });

  it('handles zero parts, zero-length parts and parts without headers', async () => {
    expect(await collect(byteStream([Buffer.from(`--${B}--\r\n`)]), B)).toEqual([]);
    const body = Buffer.from(`--${B}\r\n\r\n\r\n--${B}\r\n\r\n\r\n--${B}--`);
    expect(await collect(byteStream([body]), B)).toEqual([
      { headers: {}, body: Buffer.alloc(0) },
      { headers: {}, body: Buffer.alloc(0) },
    ]);
  });

  it('unfolds folded headers, joins repeated ones and keeps odd names as plain entries', async () => {
    const body = Buffer.from(
      `--${B}\r\nX-Long: one\r\n  two\r\nX-Rep: a\r\nx-rep: b\r\n__proto__: p\r\n\r\nz\r\n--${B}--`,
    );
    const [part] = await collect(byteStream([body]), B);
    expect(part.headers).toEqual(Object.fromEntries([['x-long', 'one two'], ['x-rep', 'a, b'], ['__proto__', 'p']]));
    expect(Object.getPrototypeOf(part.headers)).toBe(Object.prototype); // the spread copy; the header did not set it
    expect(Object.keys(part.headers)).toEqual(['x-long', 'x-rep', '__proto__']);
  });

  it('reports a missing final boundary after delivering the complete parts', async () => {
    const body = Buffer.from(`--${B}\r\n\r\none\r\n--${B}\r\nContent-Type: a/b\r\n\r\ntwo, trunc`);
    const { parts, error } = await collectUntilError(byteStream([body]), B);
    expect(parts).toEqual([{ headers: {}, body: Buffer.from('one') }]);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/part 2.*closing boundary "--XyZ-boundary_42--" is missing/);
  });

  it('errors the body stream of a part that is cut off, not only the iterator', async () => {
    const body = Buffer.from(`--${B}\r\n\r\n${'a'.repeat(100)}`);
    const iterator = parseMultipart(byteStream([body]), B);
    const first = await iterator.next();
    expect(first.done).toBe(false);
    const part = first.value as { body: Readable };
    await expect(readAll(part.body)).rejects.toThrow(MultipartError);
    await expect(iterator.next()).rejects.toThrow(MultipartError);
  });

  it.each([
    ['right after an opening boundary', `--${B}`, /the body/],
    ['after a boundary line', `--${B}\r\n`, /part 1/],
    ['inside the headers', `--${B}\r\nContent-Type: a/`, /part 1/],
    ['after a part, at the boundary', `--${B}\r\n\r\nabc\r\n--${B}`, /part 1/],
    ['in the middle of "--"', `--${B}\r\n\r\nabc\r\n--${B}-`, /part 1/],
  ])('reports truncation %s', async (_what, text, where) => {
    const { error } = await collectUntilError(byteStream([Buffer.from(text)]), B);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(where);
  });

  it('rejects a body without any boundary', async () => {
    const { parts, error } = await collectUntilError(byteStream([Buffer.from('just some bytes\r\n--other\r\n')]), B);
    expect(parts).toEqual([]);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/no multipart boundary/);
  });

  it('rejects characters after a boundary (the boundary may not occur inside a part)', async () => {
    const body = Buffer.from(`--${B}\r\n\r\nabc\r\n--${B}XYZ\r\n--${B}--`);
    const { error } = await collectUntilError(byteStream([body]), B);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/unexpected characters after boundary/);
  });

  it('rejects a malformed header line', async () => {
    const body = Buffer.from(`--${B}\r\nno colon here\r\n\r\nabc\r\n--${B}--`);
    const { error } = await collectUntilError(byteStream([body]), B);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/Malformed header line in multipart part 1/);
  });

  it('bounds the size of a header block', async () => {
    const big = `X-Big: ${'h'.repeat(17 * 1024)}\r\n`;
    const body = Buffer.from(`--${B}\r\n\r\nok\r\n--${B}\r\n${big}\r\nabc\r\n--${B}--`);
    const { parts, error } = await collectUntilError(byteStream(chunksOf(body, 1000)), B);
    expect(parts).toEqual([{ headers: {}, body: Buffer.from('ok') }]);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/headers of multipart part 2 exceed 16384 bytes/);

    // An endless header line without any LF is stopped too, and the limit is configurable.
    const endless = Buffer.from(`--${B}\r\nX: ${'y'.repeat(300)}`);
    const r2 = await collectUntilError(byteStream(chunksOf(endless, 7)), B, { maxHeaderSize: 256 });
    expect((r2.error as Error).message).toMatch(/exceed 256 bytes/);

    // Exactly at the limit is fine: "X: y\r\n" (6) + "\r\n" (2) = 8 bytes.
    const exact = Buffer.from(`--${B}\r\nX: y\r\n\r\nb\r\n--${B}--`);
    expect(await collect(byteStream([exact]), B, { maxHeaderSize: 8 })).toEqual([
      { headers: { x: 'y' }, body: Buffer.from('b') },
    ]);
    const over = await collectUntilError(byteStream([exact]), B, { maxHeaderSize: 7 });
    expect(over.error).toBeInstanceOf(MultipartError);
  });

  it('enforces maxParts', async () => {
    const body = Buffer.from(`--${B}\r\n\r\n1\r\n--${B}\r\n\r\n2\r\n--${B}\r\n\r\n3\r\n--${B}--`);
    expect(await collect(byteStream([body]), B, { maxParts: 3 })).toHaveLength(3);
    const { parts, error } = await collectUntilError(byteStream([body]), B, { maxParts: 2 });
    expect(parts.map((p) => p.body.toString())).toEqual(['1', '2']);
    expect(error).toBeInstanceOf(MultipartError);
    expect((error as Error).message).toMatch(/Too many parts.*limit is 2/);
  });

  it('skips the bodies the consumer does not read', async () => {
    const bodies: string[] = [];
    const skipped: Readable[] = [];
    for await (const part of parseMultipart(byteStream(chunksOf(SAMPLE, 5)), B)) {
      if (part.index === 0) skipped.push(part.body);
      else bodies.push((await readAll(part.body)).toString());
    }
    expect(bodies).toEqual(['']);
    expect(skipped[0].destroyed).toBe(true);
  });

  it('discards the rest of a half-read body when the consumer moves on', async () => {
    const big = Buffer.alloc(1 << 20, 0x61);
    const body = Buffer.concat([
      Buffer.from(`--${B}\r\n\r\n`),
      big,
      Buffer.from(`\r\n--${B}\r\nContent-Type: second\r\n\r\nhello\r\n--${B}--`),
    ]);
    const seen: Array<{ index: number; type: string | undefined; body?: string }> = [];
    for await (const part of parseMultipart(byteStream(chunksOf(body, 4096)), B)) {
      if (part.index === 0) {
        for await (const chunk of part.body) {
          expect((chunk as Buffer).length).toBeGreaterThan(0);
          break; // read one chunk only; breaking destroys the body
        }
        seen.push({ index: part.index, type: part.headers['content-type'] });
      } else {
        seen.push({ index: part.index, type: part.headers['content-type'], body: (await readAll(part.body)).toString() });
      }
    }
    expect(seen).toEqual([
      { index: 0, type: undefined },
      { index: 1, type: 'second', body: 'hello' },
    ]);
  });

  it('does not destroy a Readable source when the consumer stops early', async () => {
    const source = byteStream([SAMPLE]);
    for await (const part of parseMultipart(source, B)) {
      expect(part.index).toBe(0);
      break;
    }
    expect(source.destroyed).toBe(false);
  });

  it('passes on an error of the source stream', async () => {
    const source = new PassThrough();
    source.write(`--${B}\r\n\r\nabc`);
    setImmediate(() => source.destroy(new Error('socket hang up')));
    const { error } = await collectUntilError(source, B);
    expect((error as Error).message).toBe('socket hang up');
  });

  it('reads no further than the consumer (backpressure) and streams a large part in bounded memory', async () => {
    const chunkSize = 64 * 1024;
    const partSize = 256 * 1024 * 1024;
    let pulled = 0;
    const filler = Buffer.alloc(chunkSize, 0x2d); // dashes: the worst case for a boundary search
    async function* source(): AsyncGenerator<Buffer> {
      const head = Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n\r\n`);
      pulled += head.length;
      yield head;
      for (let sent = 0; sent < partSize; sent += chunkSize) {
        pulled += chunkSize;
        yield filler;
      }
      const tail = Buffer.from(`\r\n--${B}--\r\n`);
      pulled += tail.length;
      yield tail;
    }

    const iterator = parseMultipart(source(), B);
    const first = await iterator.next();
    const body = (first.value as { body: Readable }).body;
    // Nothing of the body has been read: the parser must not have run ahead.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(pulled).toBeLessThan(4 * chunkSize);

    let received = 0;
    let maxLag = 0;
    for await (const chunk of body) {
      for (const byte of [(chunk as Buffer)[0], (chunk as Buffer)[(chunk as Buffer).length - 1]]) {
        expect(byte).toBe(0x2d);
      }
      received += (chunk as Buffer).length;
      maxLag = Math.max(maxLag, pulled - received);
    }
    expect(received).toBe(partSize);
    // In flight at any time: the Readable's buffer (16 KiB high-water mark) plus a few input chunks.
    expect(maxLag).toBeLessThan(8 * chunkSize);
    expect((await iterator.next()).done).toBe(true);
  });

  it('skips a large unread part, pulling it through in chunks', async () => {
    const chunkSize = 64 * 1024;
    let pulled = 0;
    let maxChunksAtOnce = 0;
    let consumedChunks = 0;
    async function* source(): AsyncGenerator<Buffer> {
      yield Buffer.from(`--${B}\r\n\r\n`);
      for (let i = 0; i < 1024; i++) {
        pulled += chunkSize;
        yield Buffer.alloc(chunkSize, 0x41);
        consumedChunks++;
        maxChunksAtOnce = Math.max(maxChunksAtOnce, pulled / chunkSize - consumedChunks);
      }
      yield Buffer.from(`\r\n--${B}\r\n\r\nlast\r\n--${B}--`);
    }
    const bodies: string[] = [];
    for await (const part of parseMultipart(source(), B)) {
      if (part.index === 1) bodies.push((await readAll(part.body)).toString());
    }
    expect(pulled).toBe(1024 * chunkSize);
    expect(maxChunksAtOnce).toBeLessThanOrEqual(1);
    expect(bodies).toEqual(['last']);
  });
});

describe('parseMultipart properties', () => {
  const boundaryArb = fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,30}$/);

  /** Byte fragments that stress the boundary search. */
  function contentArb(boundary: string): fc.Arbitrary<Buffer> {
    const fragments = [
      '\r\n',
      '\r',
      '\n',
      '-',
      '--',
      `--${boundary}`.slice(0, Math.max(1, boundary.length)),
      `\r\n--${boundary.slice(0, -1)}`,
      `\n-${boundary}`,
      `\r\n-${boundary}--`,
    ].map((s) => fc.constant(Buffer.from(s, 'latin1')));
    const piece = fc.oneof(
      { weight: 3, arbitrary: fc.oneof(...fragments) },
      { weight: 2, arbitrary: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)) },
    );
    return fc
      .array(piece, { maxLength: 12 })
      .map((pieces) => Buffer.concat(pieces))
      // A real writer picks a boundary absent from the content; with bare-LF leniency "\n--b" counts.
      .filter((buf) => !buf.includes(Buffer.from(`\n--${boundary}`, 'latin1')));
  }

  const headerArb = fc.dictionary(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((n) => n !== '__proto__'),
    fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/),
    { maxKeys: 3 },
  );

  interface Message {
    boundary: string;
    parts: Collected[];
    lf: boolean;
    padding: string;
    preamble: string;
    epilogue: string;
  }

  const messageArb: fc.Arbitrary<Message> = boundaryArb.chain((boundary) =>
    fc.record({
      boundary: fc.constant(boundary),
      parts: fc.array(fc.record({ headers: headerArb, body: contentArb(boundary) }), { maxLength: 5 }),
      lf: fc.boolean(),
      padding: fc.constantFrom('', ' ', '\t ', '  '),
      preamble: fc.constantFrom('', 'preamble\r\n', '--\r\n', `-${boundary}\r\n`),
      epilogue: fc.constantFrom('', '\r\n', 'epilogue --x\r\n'),
    }),
  );

  /** An independent serializer (not the writer module), optionally with bare LF line ends. */
  function serialize(m: Message): Buffer {
    const nl = m.lf ? '\n' : '\r\n';
    const out: Buffer[] = [Buffer.from(m.preamble, 'latin1')];
    for (const part of m.parts) {
      let head = `--${m.boundary}${m.padding}${nl}`;
      for (const [k, v] of Object.entries(part.headers)) head += `${k}: ${v}${nl}`;
      out.push(Buffer.from(`${head}${nl}`, 'latin1'), part.body, Buffer.from(nl, 'latin1'));
    }
    out.push(Buffer.from(`--${m.boundary}--${m.padding}${nl}${m.epilogue}`, 'latin1'));
    return Buffer.concat(out);
  }

  it('round-trips random parts through random chunkings', async () => {
    await fc.assert(
      fc.asyncProperty(
        messageArb.filter((m) => !(m.lf && m.parts.some((p) => p.body.length > 0 && p.body[p.body.length - 1] === 0x0d))),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.boolean(),
        async (message, cuts, asIterable) => {
          const data = serialize(message);
          const chunks = splitAt(data, cuts.map((c) => c % (data.length + 1)));
          const source = asIterable ? Readable.from(chunks) : byteStream(chunks);
          const parts = await collect(source, message.boundary);
          expect(parts.length).toBe(message.parts.length);
          parts.forEach((part, i) => {
            expect(part.headers).toEqual(message.parts[i].headers);
            expect(part.body.equals(message.parts[i].body)).toBe(true);
          });
        },
      ),
      { seed: 20240611, numRuns: 400 },
    );
  });

  it('delivers the right parts when the consumer skips some bodies', async () => {
    await fc.assert(
      fc.asyncProperty(messageArb, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), fc.nat(), async (message, read, seedCut) => {
        fc.pre(!message.lf);
        const data = serialize(message);
        const chunks = chunksOf(data, 1 + (seedCut % 17));
        let i = 0;
        for await (const part of parseMultipart(byteStream(chunks), message.boundary)) {
          expect(part.index).toBe(i);
          expect({ ...part.headers }).toEqual(message.parts[i].headers);
          if (read[i]) expect((await readAll(part.body)).equals(message.parts[i].body)).toBe(true);
          i++;
        }
        expect(i).toBe(message.parts.length);
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it('never throws anything but MultipartError on garbage, and always finishes', async () => {
    const boundary = 'gb';
    const fragments = ['--gb', '--gb--', '\r\n', '\n', '-', ':', ' ', 'a: b', '\r\n--gb\r\n', '--gb  x'].map((s) =>
      fc.constant(Buffer.from(s)),
    );
    const garbage = fc
      .array(fc.oneof(fc.oneof(...fragments), fc.uint8Array({ maxLength: 20 }).map((u) => Buffer.from(u))), { maxLength: 30 })
      .map((pieces) => Buffer.concat(pieces));
    await fc.assert(
      fc.asyncProperty(garbage, fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), async (data, cuts, readBodies) => {
        const chunks = splitAt(data, cuts.map((c) => c % (data.length + 1)));
        try {
          for await (const part of parseMultipart(byteStream(chunks), boundary, { maxHeaderSize: 64, maxParts: 6 })) {
            if (readBodies) await readAll(part.body);
          }
        } catch (error) {
          expect(error).toBeInstanceOf(MultipartError);
        }
      }),
      { seed: 4242, numRuns: 1000, interruptAfterTimeLimit: 50_000 },
    );
  });
});
