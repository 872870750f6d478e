/**
 * A tiny loopback reverse proxy for the OHIF timings: the viewer (/ohif/...) comes from one upstream,
 * everything else (/dicom-web, /wado) from another. OHIF then talks to one origin whatever server it
 * reads, so no CORS is needed (Orthanc 1.10 has none), and every target pays the same extra hop.
 */
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReverseProxy {
  url: string;
  close(): Promise<void>;
}

export async function startReverseProxy(viewerUpstream: string, dataUpstream: string, viewerPrefix = '/ohif'): Promise<ReverseProxy> {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    const upstream = new URL(path === viewerPrefix || path.startsWith(`${viewerPrefix}/`) ? viewerUpstream : dataUpstream);
    const headers = { ...req.headers, host: upstream.host };
    const outgoing = request({ agent, host: upstream.hostname, port: upstream.port, method: req.method, path, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    outgoing.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(outgoing);
  };
  const server = createServer(forward);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
