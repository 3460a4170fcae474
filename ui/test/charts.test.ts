// MX-3: the server's series answers mapped to uPlot's data.
import { describe, expect, it } from 'vitest';
import { usableLanguage } from '../src/locale';
import { bands, checkData, laneData, markers, pairLanes, rateData, roleLanes } from '../src/charts';
import type { CheckSeries, EventView, PairSeries, RecordSeries, RoleSeries } from '../src/api.gen';

const event = (id: number, time_ms: number, code: string): EventView => ({
  id,
  time_ms,
  code,
  subject: 'web',
  sentence: `${code} sentence`,
  origin: 'n',
  notify: true,
  severity: 'info',
  title: code,
} as EventView);

describe('mx3 chart data', () => {
  it('a check: x at each bucket middle in seconds, mean/min/max, down periods as bands', () => {
    const s: CheckSeries = {
      name: 'db',
      from_ms: 0,
      to_ms: 40_000,
      step_ms: 10_000,
      points: [
        { time_ms: 0, min: 1, max: 3, mean: 2, runs: 2, failed: 0 },
        { time_ms: 20_000, min: 5, max: 9, mean: 7, runs: 3, failed: 1 },
      ],
      down: [{ from_ms: 15_000, to_ms: 25_500 }],
    };
    expect(checkData(s)).toEqual([[5, 25], [2, 7], [1, 5], [3, 9]]);
    expect(bands(s.down)).toEqual([[15, 25.5]]);
  });

  it('records per second: one x per bucket', () => {
    const s: RecordSeries = {
      from_ms: 0,
      to_ms: 4000,
      step_ms: 2000,
      points: [
        { time_ms: 0, records: 4, per_second: 2 },
        { time_ms: 2000, records: 0, per_second: 0 },
      ],
    };
    expect(rateData(s)).toEqual([[1, 3], [2, 0]]);
  });

  it('a pair timeline: a lane per member, the handover between them, and its marker', () => {
    const p: PairSeries = {
      name: 'web',
      primary: 'a1',
      secondary: 'a2',
      from_ms: 0,
      to_ms: 10_000,
      step_ms: 100,
      held: [
        { member: 'a1', from_ms: 1000, to_ms: 4000, records: 10 },
        { member: 'a2', from_ms: 4000, to_ms: 6000, records: 5 },
        { member: 'a1', from_ms: 8000, to_ms: 9000, records: 3 },
      ],
      handovers: [event(7, 3990, 'FORCED_FAILOVER')],
    };
    const lanes = pairLanes(p);
    expect(lanes.map((l) => l.label)).toEqual(['a1 (primary)', 'a2 (secondary)']);
    const [xs, a1, a2] = laneData(lanes);
    expect(xs).toEqual([1, 4, 4.001, 6, 6.001, 8, 9, 9.001]);
    // a1 holds to 4 s, nothing between its two periods (no line joins them), then 8–9 s.
    expect(a1).toEqual([1, 1, null, null, null, 1, 1, null]);
    expect(a2).toEqual([null, 2, 2, 2, null, null, null, null]);
    expect(markers(p.handovers)).toEqual([[3.99, 'FORCED_FAILOVER']]);
  });

  it('a role strip: a lane per server with its ACTIVE periods', () => {
    const r: RoleSeries = {
      from_ms: 0,
      to_ms: 10_000,
      servers: [
        { server: 's1', spans: [{ role: 'ACTIVE', from_ms: 0, to_ms: 5000 }, { role: 'STANDBY', from_ms: 5000, to_ms: 10_000 }] },
        { server: 's2', spans: [{ role: 'STANDBY', from_ms: 0, to_ms: 5000 }, { role: 'ACTIVE', from_ms: 5000, to_ms: 10_000 }] },
      ],
      events: [event(3, 5000, 'PROMOTED')],
    };
    const lanes = roleLanes(r);
    expect(lanes.map((l) => l.label)).toEqual(['s1 ACTIVE', 's2 ACTIVE']);
    const [xs, s1, s2] = laneData(lanes);
    expect(xs).toEqual([0, 5, 5.001, 10, 10.001]);
    expect(s1).toEqual([1, 1, null, null, null]);
    expect(s2).toEqual([null, 2, 2, 2, null]);
  });
});

describe('mx3 uPlot under a POSIX locale', () => {
  it('a language Intl rejects ("C", WebKitGTK under LANG=C) is not usable; en-US is', () => {
    expect(usableLanguage('C')).toBe(false);
    expect(usableLanguage('en-US')).toBe(true);
  });
});
