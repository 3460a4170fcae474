// MX-3, the console's pictures: the server's downsampled series (`/api/series/…`) mapped to
// uPlot's data (pure functions, tested in test/charts.test.ts) and drawn with uPlot: a chart per
// check (mean with its min–max band, down periods shaded), a timeline per pair (which member
// held the duty, handovers marked by their event), a role strip of the hot-standby servers,
// records per second.

import './locale'; // before uPlot: a POSIX locale's language would stop its module
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type {
  CheckSeries,
  EventView,
  PairSeries,
  RecordSeries,
  RoleSeries,
  Span,
} from './api.gen';
import type { Transport } from './api';
import { esc, fmtTime } from './render';

/** uPlot's x values are seconds. */
const sec = (ms: number): number => ms / 1000;

/** A check's points as [x, mean, min, max] (empty buckets are absent: gaps). */
export function checkData(s: CheckSeries): uPlot.AlignedData {
  const xs = s.points.map((p) => sec(p.time_ms + s.step_ms / 2));
  return [
    xs,
    s.points.map((p) => p.mean),
    s.points.map((p) => p.min),
    s.points.map((p) => p.max),
  ];
}

/** Down periods (or any spans) as [from, to] in seconds. */
export function bands(spans: Span[]): [number, number][] {
  return spans.map((s) => [sec(s.from_ms), sec(s.to_ms)]);
}

/** Records per second as [x, per_second]. */
export function rateData(s: RecordSeries): uPlot.AlignedData {
  return [
    s.points.map((p) => sec(p.time_ms + s.step_ms / 2)),
    s.points.map((p) => p.per_second),
  ];
}

/** A lane of a timeline: a label and the periods it is "on". */
export interface Lane {
  label: string;
  spans: { from_ms: number; to_ms: number }[];
}

/**
 * Lanes as uPlot data: one shared x (every span's ends, and a point just after each end so
 * that two periods of one lane are not joined), lane i at height i + 1 while on, else null.
 */
export function laneData(lanes: Lane[]): uPlot.AlignedData {
  const xs = new Set<number>();
  for (const l of lanes) {
    for (const s of l.spans) {
      xs.add(s.from_ms);
      xs.add(s.to_ms);
      xs.add(s.to_ms + 1);
    }
  }
  const sorted = [...xs].sort((a, b) => a - b);
  const ys = lanes.map((l, i) =>
    sorted.map((t) => (l.spans.some((s) => s.from_ms <= t && t <= s.to_ms) ? i + 1 : null)),
  );
  return [sorted.map(sec), ...ys];
}

/** A pair's lanes: primary, then secondary (each with the periods it held the duty). */
export function pairLanes(p: PairSeries): Lane[] {
  return [p.primary, p.secondary].map((m, i) => ({
    label: `${m} (${i === 0 ? 'primary' : 'secondary'})`,
    spans: p.held.filter((h) => h.member === m),
  }));
}

/** The role strip's lanes: each server's ACTIVE periods. */
export function roleLanes(r: RoleSeries): Lane[] {
  return r.servers.map((s) => ({
    label: `${s.server} ACTIVE`,
    spans: s.spans.filter((x) => x.role === 'ACTIVE'),
  }));
}

/** Handover markers: [x seconds, code]. */
export function markers(events: EventView[]): [number, string][] {
  return events.map((e) => [sec(e.time_ms), e.code]);
}

/** The windows a viewer may pick. */
export const WINDOWS: Record<string, number> = {
  '5m': 5 * 60_000,
  '15m': 15 * 60_000,
  '1h': 3_600_000,
  '6h': 6 * 3_600_000,
  '24h': 24 * 3_600_000,
  '7d': 7 * 24 * 3_600_000,
};

const COLORS = ['#1f5fbf', '#1a7f37', '#9a6700', '#c0262d', '#6b21a8'];

/** What one chart draws on top of its series: shaded periods and vertical markers. */
interface Extras {
  shade: [number, number][];
  marks: [number, string][];
  /** The window, in seconds (read by the x scale at every redraw). */
  x?: { min: number; max: number };
}

function extrasPlugin(extras: Extras): uPlot.Plugin {
  return {
    hooks: {
      draw: (u: uPlot) => {
        const { ctx } = u;
        const { left, top, width, height } = u.bbox;
        ctx.save();
        ctx.fillStyle = 'rgba(192, 38, 45, 0.16)';
        for (const [a, b] of extras.shade) {
          const x0 = Math.max(left, u.valToPos(a, 'x', true));
          const x1 = Math.min(left + width, u.valToPos(b, 'x', true));
          if (x1 > x0) ctx.fillRect(x0, top, x1 - x0, height);
        }
        ctx.strokeStyle = '#9a6700';
        ctx.setLineDash([4, 3]);
        ctx.lineWidth = Math.max(1, devicePixelRatio);
        for (const [x] of extras.marks) {
          const px = u.valToPos(x, 'x', true);
          if (px < left || px > left + width) continue;
          ctx.beginPath();
          ctx.moveTo(px, top);
          ctx.lineTo(px, top + height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };
}

interface Drawn {
  plot: uPlot;
  key: string;
  extras: Extras;
}

/** The Charts panel: fetches the series every `everyMs` and keeps one uPlot per picture. */
export class Charts {
  windowMs = WINDOWS['1h'];
  private drawn = new Map<string, Drawn>();
  private last = 0;
  private busy = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly transport: Transport,
    private readonly everyMs = 5000,
  ) {
    // A narrower or wider window: every picture takes the new width at once.
    window.addEventListener('resize', () => {
      for (const [id, d] of this.drawn) {
        const box = this.root.querySelector<HTMLElement>(`[data-chart="${CSS.escape(id)}"]`);
        if (box) d.plot.setSize({ width: this.widthOf(box), height: d.plot.height });
      }
    });
  }

  private widthOf(box: HTMLElement): number {
    return Math.max(260, Math.floor(box.clientWidth || this.root.clientWidth || 600) - 4);
  }

  setWindow(ms: number): void {
    this.windowMs = ms;
    this.last = 0;
  }

  /** Refreshes when due (or `force`): `checks` and `pairs` are the names from the status. */
  async refresh(server: boolean, checks: string[], pairs: string[], force = false): Promise<void> {
    const now = Date.now();
    if (this.busy || (!force && now - this.last < this.everyMs)) return;
    this.busy = true;
    this.last = now;
    try {
      if (!server) {
        this.layout([], [], false);
        return;
      }
      const q = `from=${now - this.windowMs}&to=${now}&points=300`;
      const get = (path: string) => this.transport.call('GET', `${path}?${q}`);
      const [records, roles, ...rest] = await Promise.all([
        get('/api/series/records') as Promise<RecordSeries>,
        get('/api/series/roles') as Promise<RoleSeries>,
        ...pairs.map((p) => get(`/api/series/pair/${encodeURIComponent(p)}`)),
        ...checks.map((c) => get(`/api/series/check/${encodeURIComponent(c)}`)),
      ]);
      const pairSeries = rest.slice(0, pairs.length) as PairSeries[];
      const checkSeries = rest.slice(pairs.length) as CheckSeries[];
      this.layout(pairSeries.map((p) => p.name), checkSeries.map((c) => c.name), roles.servers.length > 0);
      const x = { min: sec(now - this.windowMs), max: sec(now) };
      this.draw('records', 'Records per second', ['records/s'], rateData(records), { shade: [], marks: [] }, x, 120);
      if (roles.servers.length > 0) {
        const lanes = roleLanes(roles);
        this.draw('roles', 'Servers', lanes.map((l) => l.label), laneData(lanes),
          { shade: [], marks: markers(roles.events) }, x, 74 + 24 * lanes.length, lanes.length);
      }
      for (const p of pairSeries) {
        const lanes = pairLanes(p);
        this.draw(`pair-${p.name}`, `Pair ${p.name}`, lanes.map((l) => l.label), laneData(lanes),
          { shade: [], marks: markers(p.handovers) }, x, 122, 2);
        this.setHandovers(p);
      }
      for (const c of checkSeries) {
        this.draw(`check-${c.name}`, `Check ${c.name}`, ['mean', 'min', 'max'], checkData(c),
          { shade: bands(c.down), marks: [] }, x, 140);
        const n = this.root.querySelector(`[data-testid="chart-check-${CSS.escape(c.name)}"]`);
        n?.setAttribute('data-points', String(c.points.length));
        n?.setAttribute('data-down', String(c.down.length));
      }
    } catch {
      /* the next refresh tries again; the panel keeps what it drew */
    } finally {
      this.busy = false;
    }
  }

  /** One box per picture, in a fixed order; boxes of pictures gone are removed. */
  private layout(pairs: string[], checks: string[], roles: boolean): void {
    const want = ['records', ...(roles ? ['roles'] : []), ...pairs.map((p) => `pair-${p}`),
      ...checks.map((c) => `check-${c}`)];
    for (const [id, d] of this.drawn) {
      if (!want.includes(id)) {
        d.plot.destroy();
        this.drawn.delete(id);
      }
    }
    for (const box of [...this.root.querySelectorAll<HTMLElement>('[data-chart]')]) {
      if (!want.includes(box.dataset.chart!)) box.remove();
    }
    for (const id of want) {
      if (this.root.querySelector(`[data-chart="${CSS.escape(id)}"]`)) continue;
      const box = document.createElement('div');
      box.className = 'chart';
      box.dataset.chart = id;
      box.dataset.testid = `chart-${id}`;
      box.innerHTML = `<div class="chart-plot"></div>${id.startsWith('pair-')
        ? `<ul class="handovers small" data-testid="handovers-${esc(id.slice(5))}"></ul>` : ''}`;
      this.root.appendChild(box);
    }
  }

  private draw(id: string, title: string, labels: string[], data: uPlot.AlignedData,
    extras: Extras, x: { min: number; max: number }, height: number, lanes = 0): void {
    const box = this.root.querySelector<HTMLElement>(`[data-chart="${CSS.escape(id)}"]`);
    if (!box) return;
    const holder = box.querySelector<HTMLElement>('.chart-plot')!;
    const width = this.widthOf(box);
    const key = `${title}|${labels.join(',')}`;
    const old = this.drawn.get(id);
    if (old && old.key === key) {
      old.extras.shade = extras.shade;
      old.extras.marks = extras.marks;
      old.extras.x = x;
      if (old.plot.width !== width) old.plot.setSize({ width, height });
      old.plot.setData(data, false);
      old.plot.setScale('x', x);
      return;
    }
    old?.plot.destroy();
    holder.textContent = '';
    extras.x = x;
    const line = lanes > 0;
    const opts: uPlot.Options = {
      title,
      width,
      height,
      plugins: [extrasPlugin(extras)],
      scales: {
        x: { time: true, range: () => [extras.x!.min, extras.x!.max] },
        y: line ? { range: [0.5, lanes + 0.5] } : { range: (_u, lo, hi) => [Math.min(0, lo ?? 0), Math.max(1, (hi ?? 1) * 1.1)] },
      },
      axes: [
        { space: 90 },
        line
          ? { values: (_u, vals) => vals.map((v) => (Number.isInteger(v) && v >= 1 && v <= lanes ? labels[v - 1].split(' ')[0] : '')), splits: () => Array.from({ length: lanes }, (_, i) => i + 1), size: 70 }
          : { size: 50 },
      ],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: line ? COLORS[i % COLORS.length] : i === 0 ? COLORS[0] : 'rgba(31,95,191,0.35)',
          width: line ? 10 : i === 0 ? 2 : 1,
          spanGaps: false,
          points: { show: false },
        })),
      ],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(opts, data, holder);
    this.drawn.set(id, { plot, key, extras });
  }

  private setHandovers(p: PairSeries): void {
    const box = this.root.querySelector(`[data-chart="${CSS.escape(`pair-${p.name}`)}"]`);
    box?.setAttribute('data-members', [...new Set(p.held.map((h) => h.member))].join(' '));
    const ul = this.root.querySelector(`[data-testid="handovers-${CSS.escape(p.name)}"]`);
    if (!ul) return;
    const html = p.handovers.length === 0
      ? '<li class="muted">no handover in this window</li>'
      : p.handovers.map((e) => `<li data-testid="handover-${e.id}" data-code="${esc(e.code)}"><span class="mono">${esc(fmtTime(e.time_ms).slice(11, 19))}</span> <span class="strong">${esc(e.code)}</span> ${esc(e.sentence)}</li>`).join('');
    if (ul.innerHTML !== html) ul.innerHTML = html;
  }
}
