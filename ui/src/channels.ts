// The Alerts page's channel form (AL-4): what its fields hold, a stored channel put back in
// them for an edit, and the request the form makes. The node decides: it validates every
// setting, keeps the secrets an edit leaves empty and says why it refuses (ChannelEdit).

import type { Channel, ChannelEdit, KeptSetting } from './types';

/** The form's fields, as its inputs hold them. */
export interface ChannelFields {
  name: string;
  kind: string;
  url: string;
  to: string;
  from: string;
  smtp: string;
  secret: string;
  token: string;
  argv: string;
  codes: string;
  min_severity: string;
  timeout: string;
  /** Edit only: remove the stored webhook secret / ntfy token instead of keeping it. */
  clear_secret: boolean;
  clear_token: boolean;
}

export const EMPTY_FIELDS: ChannelFields = {
  name: '',
  kind: 'webhook',
  url: '',
  to: '',
  from: '',
  smtp: '',
  secret: '',
  token: '',
  argv: '',
  codes: '',
  min_severity: '',
  timeout: '',
  clear_secret: false,
  clear_token: false,
};

/** argv as one text field: words, or a JSON array when an argument holds a space or is empty. */
export function argvText(argv: string[]): string {
  return argv.some((a) => a === '' || /\s/.test(a)) ? JSON.stringify(argv) : argv.join(' ');
}

/** The inverse of {@link argvText}: a JSON array of strings, else words. */
export function parseArgv(text: string): string[] {
  const t = text.trim();
  if (t.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(t);
      if (Array.isArray(v) && v.every((a) => typeof a === 'string')) return v as string[];
    } catch {
      /* not JSON: words */
    }
  }
  return t.split(/\s+/).filter(Boolean);
}

/**
 * A stored channel (as listed) in the form, for an edit: the secrets empty — the list shows
 * them only as "set", and an edit that leaves them empty keeps them — and the SMTP URL as
 * listed, its password "set", which the node reads as "keep the stored one".
 */
export function fieldsOf(c: Channel): ChannelFields {
  return {
    ...EMPTY_FIELDS,
    name: c.name,
    kind: c.kind,
    url: c.url ?? '',
    to: (c.to ?? []).join(', '),
    from: c.from ?? '',
    smtp: c.smtp ?? '',
    argv: argvText(c.argv ?? []),
    codes: (c.codes ?? []).join(','),
    min_severity: c.min_severity ?? '',
    timeout: c.timeout ?? '',
  };
}

/** What the form sends: `alert channel add` (POST), or the edit of channel `editing` (PUT). */
export function channelRequest(
  f: ChannelFields,
  editing: string | null,
): { method: 'POST' | 'PUT'; path: string; body: ChannelEdit } {
  const list = (text: string) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  const name = editing ?? f.name.trim();
  const body: ChannelEdit = { name, kind: f.kind.trim() };
  const text: Array<'url' | 'from' | 'smtp' | 'secret' | 'token' | 'timeout'> = ['url', 'from', 'smtp', 'secret', 'token', 'timeout'];
  for (const k of text) {
    const v = f[k].trim();
    if (v) body[k] = v;
  }
  if (f.min_severity) body.min_severity = f.min_severity as ChannelEdit['min_severity'];
  if (list(f.to).length) body.to = list(f.to);
  if (parseArgv(f.argv).length) body.argv = parseArgv(f.argv);
  if (list(f.codes).length) body.codes = list(f.codes);
  if (editing === null) {
    return { method: 'POST', path: '/api/alerts/channels', body };
  }
  const clear: KeptSetting[] = [];
  if (f.clear_secret) clear.push('secret');
  if (f.clear_token) clear.push('token');
  if (clear.length) body.clear = clear;
  return { method: 'PUT', path: `/api/alerts/channels/${encodeURIComponent(editing)}`, body };
}
