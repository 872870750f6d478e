/**
 * bench/http-client.ts: the streamed STOW body announces its exact length (sent as Content-Length) and
 * carries each file unchanged, as the project's own multipart/related parser reads it back.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { streamedStowBody } from '../../../bench/http-client';
import { getMultipartBoundary, parseMultipart } from '../../../src/dicom/multipart-parser';

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

describe('streamedStowBody', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-stow-body-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('streams the files as application/dicom parts with an exact length', async () => {
    // sizes around the 256 KiB read chunk, and an empty file
    const contents = [Buffer.alloc(300_000, 1), Buffer.from('DICM\r\n--not-a-boundary\r\n'), Buffer.alloc(0), Buffer.alloc(262_144, 7)];
    const files = contents.map((content, i) => {
      const file = join(dir, `${i}.dcm`);
      writeFileSync(file, content);
      return file;
    });
    const { body, contentType, length } = streamedStowBody(files);
    expect(contentType).toMatch(/^multipart\/related; type="application\/dicom"; boundary=bench-[0-9a-f]{24}$/);
    const bytes = await collect(body);
    expect(bytes.length).toBe(length);

    const parts: Array<{ type: string | undefined; body: Buffer }> = [];
    for await (const part of parseMultipart(Readable.from([bytes]), getMultipartBoundary(contentType))) {
      parts.push({ type: part.headers['content-type'], body: await collect(part.body) });
    }
    expect(parts.map((p) => p.type)).toEqual(contents.map(() => 'application/dicom'));
    expect(parts.map((p, i) => p.body.equals(contents[i]))).toEqual(contents.map(() => true));
  });
});
