import { beforeEach, describe, expect, it } from 'vitest';
import { App } from '../src/app';
import { filterEvents, mergeEvents } from '../src/rules';
import { byTestId, EVENTS, settle, standardTransport } from './fixtures';

let root: HTMLElement;
beforeEach(() => {
  document.body.innerHTML = '<div id="app"></div>';
  root = document.getElementById('app')!;
});

const ids = () =>
  [...byTestId(root, 'event-list').querySelectorAll<HTMLElement>('li[data-id]')].map((li) => Number(li.dataset.id));

describe('events', () => {
  it('merges by id, newest first, without duplicates', () => {
    const merged = mergeEvents([EVENTS[0]], [EVENTS[2], EVENTS[1], EVENTS[0]]);
    expect(merged.map((e) => e.id)).toEqual([3, 2, 1]);
    expect(filterEvents(merged, 'FAILOVER').map((e) => e.id)).toEqual([2]);
    expect(filterEvents(merged, '')).toHaveLength(3);
  });

  it('shows the timeline newest first with code and sentence', async () => {
    const app = new App({ root, transport: standardTransport() });
    await app.refresh();
    expect(ids()).toEqual([3, 2, 1]);
    const first = byTestId(root, 'event-row-3');
    expect(first.dataset.code).toBe('SWITCHBACK');
    expect(first.textContent).toContain('web-1 switched back home.');
  });

  it('polls only for newer events after the first load', async () => {
    const t = standardTransport();
    const app = new App({ root, transport: t });
    await app.refresh();
    t.on('GET /api/events', () => ({
      events: [{ id: 4, time_ms: 1_700_000_003_000, code: 'PAIR_BLACKOUT', subject: 'db', sentence: 'Pair db is in blackout.' }],
    }));
    await app.refresh();
    const evCalls = t.calls.filter((c) => c.path.startsWith('/api/events')).map((c) => c.path);
    expect(evCalls).toEqual(['/api/events?limit=200', '/api/events?since=3&limit=500']);
    expect(ids()).toEqual([4, 3, 2, 1]);
  });

  it('filters by code from the select', async () => {
    const t = standardTransport();
    const app = new App({ root, transport: t });
    await app.refresh();
    const select = byTestId<HTMLSelectElement>(root, 'event-filter');
    expect([...select.options].map((o) => o.value)).toContain('FAILOVER');
    select.value = 'FAILOVER';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(ids()).toEqual([2]);
    expect(t.calls.some((c) => c.path === '/api/events?code=FAILOVER&limit=200')).toBe(true);
    expect(byTestId(root, 'event-count').textContent).toBe('1 of 3 events shown');

    await app.refresh(); // the filter survives a poll
    expect(byTestId<HTMLSelectElement>(root, 'event-filter').value).toBe('FAILOVER');
    expect(ids()).toEqual([2]);

    select.value = '';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    expect(ids()).toEqual([3, 2, 1]);
  });
});
