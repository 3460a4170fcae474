import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ApiError,
  chooseTransport,
  HttpTransport,
  sessionTokenStore,
  takeTokenFromFragment,
  TauriTransport,
  TOKEN_KEY,
  toApiError,
} from '../src/api';
import { App } from '../src/app';
import { byTestId, FakeTransport, makeStatus, settle, standardTransport } from './fixtures';

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

beforeEach(() => {
  sessionStorage.clear();
  history.replaceState(null, '', '/');
  delete (window as any).__TAURI_INTERNALS__;
});
afterEach(() => {
  delete (window as any).__TAURI_INTERNALS__;
});

describe('transport selection', () => {
  it('uses HTTP in a browser', () => {
    const t = chooseTransport(window, sessionTokenStore(sessionStorage));
    expect(t.kind).toBe('http');
    expect(t).toBeInstanceOf(HttpTransport);
  });

  it('uses the Tauri global in the desktop app', async () => {
    const invoke = vi.fn().mockResolvedValue({ ok: true, message: 'done' });
    (window as any).__TAURI_INTERNALS__ = { invoke };
    const t = chooseTransport(window, sessionTokenStore(sessionStorage));
    expect(t.kind).toBe('tauri');
    expect(await t.call('POST', '/api/pairs/web/revert')).toEqual({ ok: true, message: 'done' });
    expect(invoke).toHaveBeenCalledWith('admin', { method: 'POST', path: '/api/pairs/web/revert', body: null });
    await t.call('POST', '/api/role', { agent: false });
    expect(invoke).toHaveBeenLastCalledWith('admin', { method: 'POST', path: '/api/role', body: { agent: false } });
  });

  it('maps a Tauri rejection {status, error} to an ApiError', async () => {
    const t = new TauriTransport({ invoke: () => Promise.reject({ status: 409, error: 'primary db-1 is not connected' }) });
    await expect(t.call('POST', '/api/pairs/db/revert')).rejects.toMatchObject({
      name: 'ApiError',
      status: 409,
      message: 'primary db-1 is not connected',
    });
    expect(toApiError('{"status":404,"error":"unknown pair"}')).toMatchObject({ status: 404, message: 'unknown pair' });
    expect(toApiError('boom')).toMatchObject({ status: 500, message: 'boom' });
  });
});

describe('HTTP transport', () => {
  it('sends the bearer token and JSON body to the same origin', async () => {
    const store = sessionTokenStore(sessionStorage);
    store.set('s3cret');
    const fetchFn = vi.fn().mockResolvedValue(jsonResponse(200, { ok: true, message: 'm' }));
    const t = new HttpTransport(store, fetchFn);
    expect(await t.call('POST', '/api/role', { server: false })).toEqual({ ok: true, message: 'm' });
    const [url, init] = fetchFn.mock.calls[0];
    expect(url).toBe('/api/role');
    expect(init.method).toBe('POST');
    expect(init.headers.Authorization).toBe('Bearer s3cret');
    expect(init.headers['Content-Type']).toBe('application/json');
    expect(init.body).toBe('{"server":false}');
  });

  it('turns {"error": reason} into an ApiError with the status', async () => {
    const store = sessionTokenStore(sessionStorage);
    store.set('x');
    const t = new HttpTransport(store, async () => jsonResponse(409, { error: 'the secondary is already active' }));
    const err = await t.call('POST', '/api/pairs/db/force-failover').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(409);
    expect(err.message).toBe('the secondary is already active');
  });

  it('reports 401 without calling the server when there is no token', async () => {
    const fetchFn = vi.fn();
    const t = new HttpTransport(sessionTokenStore(sessionStorage), fetchFn);
    await expect(t.call('GET', '/api/status')).rejects.toMatchObject({ status: 401 });
    expect(fetchFn).not.toHaveBeenCalled();
  });

  it('reports an unreachable node as status 0', async () => {
    const store = sessionTokenStore(sessionStorage);
    store.set('x');
    const t = new HttpTransport(store, async () => {
      throw new TypeError('Failed to fetch');
    });
    await expect(t.call('GET', '/api/status')).rejects.toMatchObject({ status: 0 });
  });
});

describe('token from the URL fragment', () => {
  it('stores #token=… in sessionStorage and removes it from the address bar', () => {
    history.replaceState(null, '', '/console?x=1#token=abc%2Fdef');
    const store = sessionTokenStore(sessionStorage);
    expect(takeTokenFromFragment(window, store)).toBe('abc/def');
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe('abc/def');
    expect(location.hash).toBe('');
    expect(location.href).not.toContain('abc');
    expect(location.pathname + location.search).toBe('/console?x=1');
  });

  it('keeps other fragment parameters', () => {
    history.replaceState(null, '', '/#view=pairs&token=t1');
    expect(takeTokenFromFragment(window, sessionTokenStore(sessionStorage))).toBe('t1');
    expect(location.hash).toBe('#view=pairs');
  });

  it('does nothing without a token', () => {
    history.replaceState(null, '', '/#view=pairs');
    expect(takeTokenFromFragment(window, sessionTokenStore(sessionStorage))).toBeNull();
    expect(location.hash).toBe('#view=pairs');
    expect(sessionStorage.getItem(TOKEN_KEY)).toBeNull();
  });

  it('the HTTP transport then uses that token', async () => {
    history.replaceState(null, '', '/#token=from-link');
    const store = sessionTokenStore(sessionStorage);
    takeTokenFromFragment(window, store);
    const fetchFn = vi.fn().mockResolvedValue(jsonResponse(200, makeStatus()));
    await new HttpTransport(store, fetchFn).call('GET', '/api/status');
    expect(fetchFn.mock.calls[0][1].headers.Authorization).toBe('Bearer from-link');
  });
});

describe('401 → login form', () => {
  let root: HTMLElement;
  beforeEach(() => {
    document.body.innerHTML = '<div id="app"></div>';
    root = document.getElementById('app')!;
  });

  it('shows the login form when no token is known, and signs in with the entered token', async () => {
    const store = sessionTokenStore(sessionStorage);
    const fetchFn = vi.fn(async (_url: string, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>).Authorization;
      if (auth !== 'Bearer good') return jsonResponse(401, { error: 'bad token' });
      const path = _url.split('?')[0];
      if (path === '/api/status') return jsonResponse(200, makeStatus());
      if (path === '/api/events') return jsonResponse(200, { events: [] });
      if (path === '/api/records') return jsonResponse(200, { records: [] });
      if (path === '/api/cert') return jsonResponse(200, { fingerprint: 'AA:BB:CC', sans: [], not_after: '2027' });
      return jsonResponse(404, { error: 'unknown' });
    });
    const app = new App({ root, transport: new HttpTransport(store, fetchFn), tokens: store });
    await app.refresh();
    expect(byTestId(root, 'login').hidden).toBe(false);
    expect(byTestId(root, 'console').hidden).toBe(true);
    expect(fetchFn).not.toHaveBeenCalled();

    // a wrong token: the form comes back saying so
    byTestId<HTMLInputElement>(root, 'login-token').value = 'wrong';
    byTestId(root, 'login-submit').click();
    await settle();
    expect(byTestId(root, 'login').hidden).toBe(false);
    expect(byTestId(root, 'login-error').textContent).toMatch(/refused/);

    byTestId<HTMLInputElement>(root, 'login-token').value = 'good';
    byTestId(root, 'login-submit').click();
    await settle();
    expect(byTestId(root, 'login').hidden).toBe(true);
    expect(byTestId(root, 'console').hidden).toBe(false);
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe('good');
    expect(byTestId(root, 'node-name').textContent).toBe('srv-a');
    app.stop();
  });

  it('an action answered 401 shows the login form', async () => {
    const t = standardTransport().on('POST /api/pairs/web/force-failover', () => {
      throw new ApiError(401, 'bad token');
    });
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId(root, 'force-failover-web').click();
    await settle();
    expect(byTestId(root, 'login').hidden).toBe(false);
  });

  it('the desktop transport never shows sign-out', () => {
    const app = new App({ root, transport: new FakeTransport('tauri') });
    expect(byTestId(root, 'logout').hidden).toBe(true);
    expect(byTestId(root, 'transport-kind').textContent).toBe('desktop');
    expect(app.loginShown).toBe(false);
  });
});
