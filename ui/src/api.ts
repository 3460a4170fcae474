// Transport to the node's admin API.
//
// Two implementations, chosen once at start-up (chooseTransport):
//  * HttpTransport  – the browser, served by the daemon: fetch() to the same
//    origin with `Authorization: Bearer <token>`.
//  * TauriTransport – the desktop app: window.__TAURI_INTERNALS__.invoke('admin',
//    {method, path, body}); the window process forwards it to the tray's node over the
//    HTTPS admin API (status 0 when the node cannot be reached).
//
// Both resolve with the response JSON and reject with an ApiError carrying the
// HTTP-like status and the server's plain reason (`{"error": "reason"}`).

export interface Transport {
  readonly kind: 'http' | 'tauri';
  call(method: string, path: string, body?: unknown): Promise<any>;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** status 0 = the node could not be reached at all. */
export const UNREACHABLE = 0;

// ---------------------------------------------------------------- token ----

export const TOKEN_KEY = 'understudy.token';

export interface TokenStore {
  get(): string | null;
  set(token: string): void;
  clear(): void;
}

export function sessionTokenStore(storage: Storage | null | undefined): TokenStore {
  let memory: string | null = null; // fallback when sessionStorage is unavailable
  return {
    get() {
      try {
        return storage?.getItem(TOKEN_KEY) ?? memory;
      } catch {
        return memory;
      }
    },
    set(token: string) {
      memory = token;
      try {
        storage?.setItem(TOKEN_KEY, token);
      } catch {
        /* keep it in memory only */
      }
    },
    clear() {
      memory = null;
      try {
        storage?.removeItem(TOKEN_KEY);
      } catch {
        /* ignore */
      }
    },
  };
}

/**
 * Reads `#token=…` from the address, stores it and removes it from the address
 * bar (history.replaceState, so it is not left in history either). Other
 * fragment parameters are kept. Returns the token, or null when there is none.
 */
export function takeTokenFromFragment(win: Window, store: TokenStore): string | null {
  const hash = win.location.hash.replace(/^#/, '');
  if (!hash) return null;
  const parts = hash.split('&');
  const found = parts.find((p) => p.startsWith('token='));
  if (found === undefined) return null;
  let token: string;
  try {
    token = decodeURIComponent(found.slice('token='.length));
  } catch {
    token = found.slice('token='.length);
  }
  const rest = parts.filter((p) => !p.startsWith('token=')).join('&');
  const url = win.location.pathname + win.location.search + (rest ? '#' + rest : '');
  try {
    win.history.replaceState(win.history.state, '', url);
  } catch {
    win.location.hash = rest;
  }
  if (!token) return null;
  store.set(token);
  return token;
}

// ----------------------------------------------------------------- http ----

type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;

export class HttpTransport implements Transport {
  readonly kind = 'http' as const;
  private readonly tokens: TokenStore;
  private readonly fetchFn: FetchFn;
  private readonly base: string;

  constructor(tokens: TokenStore, fetchFn: FetchFn, base = '') {
    this.tokens = tokens;
    this.fetchFn = fetchFn;
    this.base = base;
  }

  async call(method: string, path: string, body?: unknown): Promise<any> {
    const token = this.tokens.get();
    if (!token) throw new ApiError(401, 'an admin token is required');
    const headers: Record<string, string> = {
      Accept: 'application/json',
      Authorization: `Bearer ${token}`,
    };
    const init: RequestInit = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await this.fetchFn(this.base + path, init);
    } catch (e) {
      throw new ApiError(UNREACHABLE, `cannot reach the node: ${errorText(e)}`);
    }
    const text = await res.text().catch(() => '');
    let data: any = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      const reason =
        data && typeof data.error === 'string'
          ? data.error
          : text.trim() || res.statusText || `HTTP ${res.status}`;
      throw new ApiError(res.status, reason);
    }
    return data;
  }
}

// ---------------------------------------------------------------- tauri ----

export interface TauriInternals {
  invoke(cmd: string, args?: Record<string, unknown>): Promise<any>;
}

export class TauriTransport implements Transport {
  readonly kind = 'tauri' as const;
  private readonly internals: TauriInternals;

  constructor(internals: TauriInternals) {
    this.internals = internals;
  }

  async call(method: string, path: string, body?: unknown): Promise<any> {
    try {
      return await this.internals.invoke('admin', { method, path, body: body ?? null });
    } catch (e) {
      throw toApiError(e);
    }
  }
}

/** A Tauri rejection carries `{status, error}`; be lenient about other shapes. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (typeof e === 'string') {
    try {
      return toApiError(JSON.parse(e));
    } catch {
      return new ApiError(500, e);
    }
  }
  if (e && typeof e === 'object') {
    const o = e as { status?: unknown; error?: unknown; message?: unknown };
    const status = typeof o.status === 'number' ? o.status : 500;
    const reason =
      typeof o.error === 'string' ? o.error : typeof o.message === 'string' ? o.message : JSON.stringify(e);
    return new ApiError(status, reason);
  }
  return new ApiError(500, String(e));
}

// --------------------------------------------------------------- choice ----

export function tauriInternals(win: Window): TauriInternals | null {
  const t = (win as unknown as { __TAURI_INTERNALS__?: TauriInternals }).__TAURI_INTERNALS__;
  return t && typeof t.invoke === 'function' ? t : null;
}

/** Desktop (Tauri webview) when the Tauri global exists, otherwise the browser. */
export function chooseTransport(win: Window, tokens: TokenStore): Transport {
  const internals = tauriInternals(win);
  if (internals) return new TauriTransport(internals);
  return new HttpTransport(tokens, (input, init) => win.fetch(input, init));
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}
