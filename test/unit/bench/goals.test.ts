import { goalMet, goalText, missedGoals, verdictText } from '../../../bench/goals';
import type { Row } from '../../../bench/report';

const row = (id: string, unit: Row['unit'], plugin: number[], embedded: number[], remote: number[]): Row => ({
  id,
  label: id,
  unit,
  cells: { plugin: { runs: plugin }, embedded: { runs: embedded }, remote: { runs: remote } },
});

describe('bench goals', () => {
  it('holds a time to a ratio at most the goal, over Orthanc to 1.3x', () => {
    const qido = row('qido-all', 'ms', [100, 110, 90], [9, 10, 11], [131, 131, 131]);
    expect(goalText(qido)).toBe('embedded ≤0.10× the plugin; over Orthanc ≤1.30× the plugin');
    expect(goalMet(qido, 'embedded')).toBe(true);
    expect(goalMet(qido, 'remote')).toBe(false);
    expect(verdictText(qido)).toBe('embedded ✓, over Orthanc ✗');
    expect(goalMet(row('qido-all', 'ms', [100], [10.5], [100]), 'embedded')).toBe(false);
  });

  it('holds a throughput to a ratio at least the goal', () => {
    const retrieve = row('retrieve-series', 'MB/s', [200], [610], [150]);
    expect(goalText(retrieve)).toBe('embedded ≥3.00× the plugin; over Orthanc ≥0.77× the plugin');
    expect(goalMet(retrieve, 'embedded')).toBe(true);
    expect(goalMet(retrieve, 'remote')).toBe(false);
    expect(goalMet(row('retrieve-series', 'MB/s', [200], [590], [160]), 'embedded')).toBe(false);
    expect(goalMet(row('retrieve-series', 'MB/s', [200], [590], [160]), 'remote')).toBe(true);
  });

  it('bounds peak RSS and the concurrent QIDO rate by value', () => {
    const rss = row('big-retrieve-rss', 'MiB', [600], [299], [301]);
    expect(goalText(rss)).toBe('embedded < 300 MiB; over Orthanc < 300 MiB');
    expect(verdictText(rss)).toBe('embedded ✓, over Orthanc ✗');
    const load = row('concurrent-qido', 'req/s', [60], [1500], [50]);
    expect(goalText(load)).toBe('embedded ≥ 1500 req/s; over Orthanc ≥0.77× the plugin');
    expect(goalMet(load, 'embedded')).toBe(true);
    expect(goalMet(load, 'remote')).toBe(true);
    expect(goalMet(row('concurrent-qido', 'req/s', [60], [1499], [45]), 'embedded')).toBe(false);
    expect(goalMet(row('concurrent-qido', 'req/s', [60], [1499], [45]), 'remote')).toBe(false);
  });

  it('asks no ratio of a row measured on the gateways only', () => {
    const one: Row = { id: 'big-stow-one-rss', label: 'one request', unit: 'MiB', gatewaysOnly: true, cells: { embedded: { runs: [250] }, remote: { runs: [320] } } };
    expect(goalText(one)).toBe('embedded < 300 MiB; over Orthanc < 300 MiB');
    expect(verdictText(one)).toBe('embedded ✓, over Orthanc ✗');
    const speed: Row = { id: 'big-stow-one', label: 'one request', unit: 'MB/s', gatewaysOnly: true, cells: { embedded: { runs: [50] }, remote: { runs: [40] } } };
    expect(goalText(speed)).toBe('');
    expect(verdictText(speed)).toBe('');
  });

  it('leaves rows without a goal or without a value undecided, and lists what was missed', () => {
    const unmeasured: Row = { id: 'rendered', label: 'Rendered', unit: 'ms', cells: { plugin: { runs: [10] }, embedded: { runs: [], na: 'status 500' } } };
    expect(goalMet(unmeasured, 'embedded')).toBeUndefined();
    const rss: Row = { id: 'peak-rss', label: 'Peak RSS', unit: 'MiB', cells: { plugin: { runs: [600] }, embedded: { runs: [400] } } };
    expect(verdictText(rss)).toBe('');
    const slow = row('rendered', 'ms', [10], [12], [12]);
    expect(missedGoals([rss, slow])).toEqual(['rendered: embedded (goal ≤1.00× the plugin)']);
  });
});
