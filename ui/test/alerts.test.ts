import { describe, expect, it } from 'vitest';
import { argvText, channelRequest, EMPTY_FIELDS, fieldsOf, parseArgv } from '../src/channels';
import { byTestId, CHANNELS, makeStatus, mountApp, settle } from './fixtures';

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

  it('edits a channel: the form prefilled as listed, secrets left empty are kept, the edit is a PUT', async () => {
    const { t, app } = await mounted();
    t.on('PUT /api/alerts/channels/hook', () => ({ message: 'alert channel hook changed' }));
    byTestId(root, 'channel-edit-hook').click();
    await settle();
    expect(app.editingChannel).toBe('hook');
    const url = byTestId<HTMLInputElement>(root, 'channel-url');
    expect(url.value).toBe('https://hooks.example.org/u');
    expect(byTestId<HTMLInputElement>(root, 'channel-codes').value).toBe('CHECK_DOWN,CHECK_UP');
    expect(byTestId<HTMLInputElement>(root, 'channel-timeout').value).toBe('10s');
    const secret = byTestId<HTMLInputElement>(root, 'channel-secret');
    expect(secret.value).toBe('');
    expect(secret.placeholder).toBe('set: empty keeps it');
    expect(byTestId<HTMLInputElement>(root, 'channel-name').readOnly).toBe(true);
    expect(byTestId<HTMLSelectElement>(root, 'channel-kind').disabled).toBe(true);
    expect(byTestId(root, 'channel-add').textContent).toBe('Save hook');
    expect(byTestId(root, 'channel-clear-secret').closest('label')!.hidden).toBe(false);
    url.value = 'https://hooks.example.org/v2';
    byTestId<HTMLFormElement>(root, 'channel-form').dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    const put = t.calls.find((c) => c.method === 'PUT');
    expect(put?.path).toBe('/api/alerts/channels/hook');
    expect(put?.body).toEqual({
      name: 'hook',
      kind: 'webhook',
      url: 'https://hooks.example.org/v2',
      timeout: '10s',
      codes: ['CHECK_DOWN', 'CHECK_UP'],
    });
    expect(byTestId(root, 'action-message').textContent).toBe('alert channel hook changed');
    // Back to adding.
    expect(app.editingChannel).toBe(null);
    expect(byTestId(root, 'channel-add').textContent).toBe('Add channel');
    expect(byTestId<HTMLInputElement>(root, 'channel-name').readOnly).toBe(false);
    expect(byTestId(root, 'channel-clear-secret').closest('label')!.hidden).toBe(true);
  });

  it('keeps the form on the channel when the node refuses the edit, and Cancel goes back to adding', async () => {
    const { t, app } = await mounted();
    t.on('PUT /api/alerts/channels/mail', () => {
      throw new Error('channel mail: bad SMTP URL ftp://x: expected smtp://HOST[:PORT] or smtps://HOST[:PORT]');
    });
    byTestId(root, 'channel-edit-mail').click();
    await settle();
    expect(byTestId<HTMLInputElement>(root, 'channel-smtp').value).toBe('smtps://ops:set@mail.example.org');
    expect(byTestId<HTMLSelectElement>(root, 'channel-min-severity').value).toBe('critical');
    byTestId<HTMLInputElement>(root, 'channel-smtp').value = 'ftp://x';
    byTestId<HTMLFormElement>(root, 'channel-form').dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    expect(byTestId(root, 'action-error').textContent).toContain('bad SMTP URL');
    expect(app.editingChannel).toBe('mail');
    byTestId(root, 'channel-edit-cancel').click();
    expect(app.editingChannel).toBe(null);
    expect(byTestId<HTMLInputElement>(root, 'channel-smtp').value).toBe('');
  });

  it('allows changing channels only on the acting server', async () => {
    const s = makeStatus();
    s.node.acting = false;
    await mounted(s);
    expect(byTestId<HTMLButtonElement>(root, 'channel-edit-hook').disabled).toBe(true);
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

describe("the channel form's logic (AL-4)", () => {
  it('puts a listed channel back in the fields, secrets empty and the SMTP password as listed', () => {
    expect(fieldsOf(CHANNELS[1])).toEqual({
      ...EMPTY_FIELDS,
      name: 'mail',
      kind: 'email',
      to: 'ops@example.org',
      smtp: 'smtps://ops:set@mail.example.org',
      min_severity: 'critical',
      timeout: '10s',
    });
    expect(fieldsOf(CHANNELS[0]).secret).toBe('');
  });

  it('adds with the fields given, and edits with a PUT whose empty secrets are left out (kept) unless cleared', () => {
    const add = channelRequest({ ...EMPTY_FIELDS, name: ' ops ', kind: 'ntfy', url: 'https://n/t', token: 'tk' }, null);
    expect(add).toEqual({ method: 'POST', path: '/api/alerts/channels', body: { name: 'ops', kind: 'ntfy', url: 'https://n/t', token: 'tk' } });
    const f = { ...fieldsOf(CHANNELS[0]), url: 'https://h/2' };
    const edit = channelRequest(f, 'hook');
    expect(edit.method).toBe('PUT');
    expect(edit.path).toBe('/api/alerts/channels/hook');
    expect(edit.body).not.toHaveProperty('secret');
    expect(edit.body).not.toHaveProperty('clear');
    expect(channelRequest({ ...f, secret: 'n3w' }, 'hook').body.secret).toBe('n3w');
    expect(channelRequest({ ...f, clear_secret: true, clear_token: true }, 'hook').body.clear).toEqual(['secret', 'token']);
    // A name with a slash stays one path segment.
    expect(channelRequest(f, 'a/b').path).toBe('/api/alerts/channels/a%2Fb');
  });

  it('keeps a command whose arguments hold spaces whole through the form', () => {
    const argv = ['sh', '-c', 'cat > /tmp/x.json', ''];
    expect(parseArgv(argvText(argv))).toEqual(argv);
    expect(argvText(['notify-send', '-u', 'critical'])).toBe('notify-send -u critical');
    expect(parseArgv(' notify-send  -u critical ')).toEqual(['notify-send', '-u', 'critical']);
    expect(parseArgv('[not json')).toEqual(['[not', 'json']);
  });
});
