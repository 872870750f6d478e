/**
 * Searches on search threads (src/core/embedded/search-threads.ts) in the real command, the only place the built
 * thread script exists: 16 keep-alive clients searching at once get every answer right while searches run on a
 * search thread (the metrics say where); an instance stored during the load is found at once; a search the index
 * refuses is still a 400 with a JSON body; and a lone search afterwards runs on the main thread.
 */
import { Pool } from 'undici';
import { makeInstance } from '../helpers/dicom-factory';
import { removeDir, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';

const PATIENTS = 24;
const CLIENTS = 16;
const SEARCHES_PER_CLIENT = 40;

let gateway: GatewayProcess;
let pool: Pool;

function patientId(index: number): string {
  return `THREADS-${String(index).padStart(2, '0')}`;
}

async function store(id: string): Promise<void> {
  const { statusCode, body } = await pool.request({
    path: '/instances',
    method: 'POST',
    headers: { 'content-type': 'application/dicom' },
    body: makeInstance({ PatientID: id, PatientName: `Threads^${id}`, Rows: 8, Columns: 8 }),
  });
  await body.text();
  expect(statusCode).toBe(200);
}

/** The PatientIDs of the studies a QIDO search by PatientID answers. */
async function studiesOf(id: string): Promise<string[]> {
  const { statusCode, body } = await pool.request({
    path: `/dicom-web/studies?PatientID=${encodeURIComponent(id)}`,
    method: 'GET',
    headers: { accept: 'application/dicom+json' },
  });
  const studies = (await body.json()) as Array<Record<string, { Value?: string[] }>>;
  expect(statusCode).toBe(200);
  return studies.map((study) => study['00100020']?.Value?.[0] ?? '');
}

async function searchCounts(): Promise<{ main: number; search: number }> {
  const { body } = await pool.request({ path: '/tools/metrics-prometheus', method: 'GET' });
  const text = await body.text();
  const count = (thread: string): number => Number(new RegExp(`^dicomweb_gateway_searches_total\\{thread="${thread}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  return { main: count('main'), search: count('search') };
}

beforeAll(async () => {
  gateway = await startGatewayProcess({});
  pool = new Pool(gateway.url, { connections: CLIENTS });
  for (let i = 0; i < PATIENTS; i++) await store(patientId(i));
}, 120_000);

afterAll(async () => {
  await pool?.close();
  await gateway?.stop();
  if (gateway) removeDir(gateway.dir);
});

test('16 clients searching at once: every answer is the asked patient, and the searches run on a search thread', async () => {
  const before = await searchCounts();
  const wrong: string[] = [];
  let lateFound: string[] | undefined;
  let refused: { status: number; body: unknown } | undefined;
  const client = async (clientIndex: number): Promise<void> => {
    for (let n = 0; n < SEARCHES_PER_CLIENT; n++) {
      const id = patientId((clientIndex * SEARCHES_PER_CLIENT + n) % PATIENTS);
      const found = await studiesOf(id);
      if (found.length !== 1 || found[0] !== id) wrong.push(`${id}: ${found.join(',')}`);
      if (clientIndex === 0 && n === SEARCHES_PER_CLIENT / 2) {
        // while the other clients search: a write, then at once a search for it
        await store('THREADS-LATE');
        lateFound = await studiesOf('THREADS-LATE');
      }
      if (clientIndex === 1 && n === SEARCHES_PER_CLIENT / 2) {
        const { statusCode, body } = await pool.request({
          path: '/tools/find',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ Level: 'Study', Query: { NotADicomKeyword: '*' }, Expand: true }),
        });
        refused = { status: statusCode, body: await body.json() };
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
  const after = await searchCounts();

  expect(wrong).toEqual([]);
  expect(lateFound).toEqual(['THREADS-LATE']);
  expect(refused?.status).toBe(400);
  expect(refused?.body).toMatchObject({ HttpStatus: 400, Message: expect.stringContaining('NotADicomKeyword') });
  // every search of the load is counted once, and most ran on a search thread
  const searches = CLIENTS * SEARCHES_PER_CLIENT + 2;
  expect(after.main - before.main + (after.search - before.search)).toBe(searches);
  expect(after.search - before.search).toBeGreaterThan(searches / 2);
}, 120_000);

test('a lone search runs on the main thread', async () => {
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = await searchCounts();
  expect(await studiesOf(patientId(3))).toEqual([patientId(3)]);
  const after = await searchCounts();
  expect(after).toEqual({ main: before.main + 1, search: before.search });
});
