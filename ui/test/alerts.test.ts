import { describe, expect, it } from 'vitest';
import { byTestId, makeStatus, mountApp, settle } from './fixtures';

let root: HTMLElement;

async function mounted(status = makeStatus()) {
  const m = await mountApp(status);
  root = m.root;
  return m;
}

describe('the Alerts page (AL-1, AL-4, AL-5)', () => {
  it('lists the channels with their secrets only as "set"', async () => {
    await mounted();
    expect(byTestId(root, 'channel-row-hook').textContent).toContain('https://hooks.example.org/u');
    expect(byTestId(root, 'channel-secret-hook').textContent).toBe('secret set');
    expect(byTestId(root, 'channel-row-mail').textContent).toContain('smtps://ops:set@mail.example.org');
    expect(byTestId(root, 'channel-row-mail').textContent).toContain('≥ critical');
  });

  it('shows each alert with its delivery per channel, failing and failed ones marked', async () => {
    await mounted();
    const sent = byTestId(root, 'delivery-al-1-hook');
    expect(sent.className).toContain('tone-ok');
    const failed = byTestId(root, 'delivery-al-1-mail');
    expect(failed.textContent).toBe('mail failed');
    expect(failed.className).toContain('tone-bad');
    expect(failed.title).toContain('SMTP: 554 no');
    const failing = byTestId(root, 'delivery-al-2-hook');
    expect(failing.textContent).toBe('hook failing');
    expect(failing.className).toContain('tone-warn');
    expect(byTestId(root, 'alert-row-al-1').className).toContain('tone-bad');
    expect(byTestId(root, 'alerts-failing').textContent).toBe('1 failing');
    // Newest first.
    const rows = [...root.querySelectorAll('[data-testid^="alert-row-"]')].map((r) => r.getAttribute('data-testid'));
    expect(rows).toEqual(['alert-row-al-2', 'alert-row-al-1']);
  });

  it('adds a channel with the fields given, tests and removes one', async () => {
    const { t } = await mounted();
    t.on('POST /api/alerts/channels', () => ({ message: 'alert channel ops added' }));
    t.on('POST /api/alerts/channels/hook/test', () => ({ message: 'test message sent to alert channel hook' }));
    t.on('DELETE /api/alerts/channels/hook', () => ({ message: 'alert channel hook removed' }));
    byTestId<HTMLInputElement>(root, 'channel-name').value = 'ops';
    byTestId<HTMLSelectElement>(root, 'channel-kind').value = 'ntfy';
    byTestId<HTMLInputElement>(root, 'channel-url').value = 'https://ntfy.example.org/ops';
    byTestId<HTMLInputElement>(root, 'channel-token').value = 'tk_1';
    byTestId<HTMLInputElement>(root, 'channel-codes').value = 'CHECK_DOWN, CHECK_UP';
    byTestId<HTMLFormElement>(root, 'channel-form').dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    const add = t.calls.find((c) => c.method === 'POST' && c.path === '/api/alerts/channels');
    expect(add?.body).toEqual({
      name: 'ops',
      kind: 'ntfy',
      url: 'https://ntfy.example.org/ops',
      token: 'tk_1',
      codes: ['CHECK_DOWN', 'CHECK_UP'],
    });
    byTestId(root, 'channel-test-hook').click();
    await settle();
    expect(byTestId(root, 'action-message').textContent).toBe('test message sent to alert channel hook');
    byTestId(root, 'channel-remove-hook').click();
    await settle();
    expect(t.calls.some((c) => c.method === 'DELETE' && c.path === '/api/alerts/channels/hook')).toBe(true);
  });

  it('allows changing channels only on the acting server', async () => {
    const s = makeStatus();
    s.node.acting = false;
    await mounted(s);
    expect(byTestId<HTMLButtonElement>(root, 'channel-remove-hook').disabled).toBe(true);
    expect(byTestId<HTMLButtonElement>(root, 'channel-test-hook').disabled).toBe(false);
  });

  it('is hidden without the server role', async () => {
    const s = makeStatus();
    s.node.roles.server = false;
    await mounted(s);
    expect(byTestId(root, 'alerts-panel').hidden).toBe(true);
  });
});
