/**
 * The native proxy (src/core/remote/native-proxy.ts) against a made-up core that drops a kept-alive connection
 * when it is reused, as a core closing idle connections does when the close crosses the next request: an idempotent
 * request without a body is sent again on a new connection; one with a body is not (its body was read already,
 * and a POST may have been acted on).
 */
import express from 'express';
import net from 'node:net';
import request from 'supertest';
import { nativeProxy, type NativeProxy } from '../../src/core/remote/native-proxy';

interface FakeCore {
  port: number;
  connections: number;
  close(): Promise<void>;
}

/** Answers the first request of each connection with 200 "ok" (kept alive), and drops the connection at the second. */
function startFakeCore(): Promise<FakeCore> {
  const sockets = new Set<net.Socket>();
  const core = {
    port: 0,
    connections: 0,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = net.createServer((socket) => {
    core.connections++;
    sockets.add(socket);
    let received = '';
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (!received.includes('\r\n\r\n')) return;
      if (answered) {
        socket.destroy();
        return;
      }
      answered = true;
      received = '';
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      core.port = (server.address() as net.AddressInfo).port;
      resolve(core);
    }),
  );
}

describe('native proxy: a kept-alive connection the core drops when it is reused', () => {
  let core: FakeCore;
  let proxy: NativeProxy;
  let app: express.Express;

  beforeEach(async () => {
    core = await startFakeCore();
    const origin = `http://127.0.0.1:${core.port}`;
    proxy = nativeProxy({ target: { origin, basePath: '', display: origin }, timeoutSeconds: 10, ownedPrefixes: [] });
    app = express();
    app.use(proxy);
  });
  afterEach(async () => {
    proxy.close();
    await core.close();
  });

  it('sends a GET again on a new connection', async () => {
    expect((await request(app).get('/system')).text).toBe('ok');
    const second = await request(app).get('/patients');
    expect(second.status).toBe(200);
    expect(second.text).toBe('ok');
    expect(core.connections).toBe(2);
  });

  it('sends a DELETE again on a new connection', async () => {
    expect((await request(app).get('/system')).status).toBe(200);
    const removed = await request(app).delete('/instances/1234');
    expect(removed.status).toBe(200);
    expect(core.connections).toBe(2);
  });

  it('answers 503 to a PUT with a body rather than sending it without its body', async () => {
    expect((await request(app).get('/system')).status).toBe(200);
    const put = await request(app).put('/instances/1234/metadata/1024').send('value');
    expect(put.status).toBe(503);
    expect(core.connections).toBe(1);
  });

  it('answers 503 to a POST rather than sending it twice', async () => {
    expect((await request(app).get('/system')).status).toBe(200);
    const post = await request(app).post('/tools/find').send('{"Level":"Study","Query":{}}');
    expect(post.status).toBe(503);
    expect(post.body).toMatchObject({ HttpStatus: 503 });
    expect(core.connections).toBe(1);
  });
});
