import { Readable, Writable } from 'node:stream';
import {
  PART_END,
  closingDelimiter,
  createBoundary,
  encodeMultipart,
  multipartContentType,
  partHeader,
  writeChunks,
  writeMultipart,
  type MultipartBodyPart,
} from '../../src/dicom/multipart-writer';
import { getMultipartBoundary, parseContentType, parseMultipart } from '../../src/dicom/multipart-parser';

async function concat(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of chunks) out.push(chunk);
  return Buffer.concat(out);
}

describe('multipart writer', () => {
  it('creates distinct boundaries made of token characters', () => {
    const a = createBoundary();
    const b = createBoundary();
    expect(a).not.toBe(b);
    expect(a).toMatch(/^DICOMwebBoundary[0-9a-f]{32}$/);
    expect(a.length).toBeLessThanOrEqual(70); // RFC 2046 limit
  });

  it('formats the Content-Type of the whole body, quoting the part type', () => {
    expect(multipartContentType('abc', 'application/dicom')).toBe(
      'multipart/related; type="application/dicom"; boundary=abc',
    );
    expect(multipartContentType('a:b', 'image/jpeg', { 'transfer-syntax': '1.2.840.10008.1.2.4.50' })).toBe(
      'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50; boundary="a:b"',
    );
    const parsed = parseContentType(multipartContentType('x y', 'application/dicom+xml'));
    expect({ ...parsed.params }).toEqual({ type: 'application/dicom+xml', boundary: 'x y' });
  });

  it('writes part headers byte for byte', () => {
    expect(partHeader('b', { contentType: 'application/dicom' }).toString('latin1')).toBe(
      '--b\r\nContent-Type: application/dicom\r\n\r\n',
    );
    expect(
      partHeader('b', {
        contentType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1',
        contentLocation: 'http://h/dicom-web/studies/1/series/2/instances/3/frames/1',
        contentLength: 12,
        extra: { 'X-Extra': 'yes' },
      }).toString('latin1'),
    ).toBe(
      '--b\r\n' +
        'Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n' +
        'Content-Location: http://h/dicom-web/studies/1/series/2/instances/3/frames/1\r\n' +
        'Content-Length: 12\r\n' +
        'X-Extra: yes\r\n\r\n',
    );
    expect(PART_END.toString('latin1')).toBe('\r\n');
    expect(closingDelimiter('b').toString('latin1')).toBe('--b--\r\n');
  });

  it('refuses header values that would inject lines, and bad lengths', () => {
    expect(() => partHeader('b', { contentType: 'a/b\r\n--b' })).toThrow(TypeError);
    expect(() => partHeader('b', { contentType: 'a/b', contentLocation: 'x\ny' })).toThrow(TypeError);
    expect(() => partHeader('b', { contentType: 'a/b', contentLength: -1 })).toThrow(TypeError);
    expect(() => partHeader('b', { contentType: 'a/b', contentLength: 1.5 })).toThrow(TypeError);
    expect(() => partHeader('b', { contentType: 'a/b', extra: { 'Bad Name': 'x' } })).toThrow(TypeError);
  });

  it('encodes a whole body that the parser reads back exactly', async () => {
    const boundary = createBoundary();
    const binary = Buffer.from([0, 1, 2, 0x0d, 0x0a, 0x2d, 0x2d, 255]);
    async function* streamed(): AsyncGenerator<Uint8Array | string> {
      yield 'chunk one,';
      yield new Uint8Array([0x0d, 0x0a]);
      yield 'chunk two';
    }
    const bytes = await concat(
      encodeMultipart(boundary, [
        { headers: { contentType: 'application/dicom', contentLocation: '/a' }, body: binary },
        { headers: { contentType: 'application/dicom' }, body: new Uint8Array(0) },
        { headers: { contentType: 'text/plain' }, body: streamed() },
      ]),
    );
    // The exact framing, checked on the bytes.
    expect(bytes.subarray(0, 2 + boundary.length + 2).toString('latin1')).toBe(`--${boundary}\r\n`);
    expect(bytes.subarray(bytes.length - boundary.length - 8).toString('latin1')).toBe(`\r\n--${boundary}--\r\n`);

    const contentType = multipartContentType(boundary, 'application/dicom');
    const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
    for await (const part of parseMultipart(Readable.from([bytes]), getMultipartBoundary(contentType))) {
      const chunks: Buffer[] = [];
      for await (const chunk of part.body) chunks.push(chunk as Buffer);
      parts.push({ headers: { ...part.headers }, body: Buffer.concat(chunks) });
    }
    expect(parts).toEqual([
      { headers: { 'content-type': 'application/dicom', 'content-location': '/a' }, body: binary },
      { headers: { 'content-type': 'application/dicom' }, body: Buffer.alloc(0) },
      { headers: { 'content-type': 'text/plain' }, body: Buffer.from('chunk one,\r\nchunk two') },
    ]);
  });

  it('encodes an empty list of parts as just the closing delimiter', async () => {
    expect((await concat(encodeMultipart('b', []))).toString('latin1')).toBe('--b--\r\n');
  });

  it('does not touch the next part before the previous one was consumed', async () => {
    const log: string[] = [];
    function* parts(): Generator<{ headers: { contentType: string }; body: Buffer }> {
      log.push('part 1 made');
      yield { headers: { contentType: 'a/b' }, body: Buffer.from('1') };
      log.push('part 2 made');
      yield { headers: { contentType: 'a/b' }, body: Buffer.from('2') };
    }
    const it = encodeMultipart('b', parts());
    await it.next(); // header of part 1
    expect(log).toEqual(['part 1 made']);
    await it.next(); // body of part 1
    await it.next(); // end of part 1
    expect(log).toEqual(['part 1 made']);
    await it.next(); // header of part 2
    expect(log).toEqual(['part 1 made', 'part 2 made']);
  });
});

/** A slow output with a tiny buffer, so that every write has to wait for room. */
function slowSink(options: { failAfter?: number } = {}): { out: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  let size = 0;
  const out = new Writable({
    highWaterMark: 4,
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      size += chunk.length;
      if (options.failAfter !== undefined && size > options.failAfter) {
        out.destroy();
        return;
      }
      setImmediate(done);
    },
  });
  return { out, bytes: () => Buffer.concat(chunks) };
}

describe('writeMultipart', () => {
  function sampleParts(written: Uint8Array[]): MultipartBodyPart[] {
    const onWritten = (chunk: Uint8Array): void => {
      written.push(chunk);
    };
    async function* streamed(): AsyncGenerator<Uint8Array | string> {
      yield 'text, ';
      yield Buffer.from('then bytes');
    }
    return [
      { headers: { contentType: 'application/octet-stream', contentLength: 5 }, body: Buffer.from('12345'), written: onWritten },
      { headers: { contentType: 'application/octet-stream' }, body: Buffer.alloc(0) },
      { headers: { contentType: 'text/plain', contentLocation: '/x' }, body: streamed(), written: onWritten },
    ];
  }

  it('writes the bytes encodeMultipart gives, waiting for room, and says which chunks were written', async () => {
    const expected = await concat(encodeMultipart('b', sampleParts([])));
    const written: Uint8Array[] = [];
    const { out, bytes } = slowSink();
    await writeMultipart(out, 'b', sampleParts(written));
    expect(bytes().equals(expected)).toBe(true);
    expect(out.writableFinished).toBe(true);
    expect(written.map((chunk) => Buffer.from(chunk).toString('latin1'))).toEqual(['12345', 'then bytes']);
  });

  it('rejects when the output closes first, and closes the parts it was given', async () => {
    let closed = false;
    let made = 0;
    async function* parts(): AsyncGenerator<MultipartBodyPart> {
      try {
        for (;;) {
          made++;
          yield { headers: { contentType: 'a/b' }, body: Buffer.alloc(1 << 20, made) };
        }
      } finally {
        closed = true;
      }
    }
    const { out } = slowSink({ failAfter: 2.5 * (1 << 20) });
    await expect(writeMultipart(out, 'b', parts())).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(closed).toBe(true);
    // parts made while the output could still take them: a few MiB queued at most
    expect(made).toBeLessThan(10);
  });

  it('writes plain chunks with backpressure and ends the output when asked', async () => {
    const { out, bytes } = slowSink();
    await writeChunks(out, ['ab', Buffer.from('cd'), new Uint8Array([0x65])], { end: true });
    expect(bytes().toString('latin1')).toBe('abcde');
    expect(out.writableFinished).toBe(true);
  });
});
