// uPlot formats numbers with `new Intl.NumberFormat(navigator.language)` when its module is
// evaluated. Under a POSIX locale (LANG=C, as a service or a headless session has) WebKitGTK's
// navigator.language is "C", which Intl rejects with a RangeError — and the whole console would
// not start. Imported before uPlot (charts.ts), this module makes such a language "en-US".
export function usableLanguage(lang: string | undefined): boolean {
  try {
    new Intl.NumberFormat(lang);
    return true;
  } catch {
    return false;
  }
}

if (typeof navigator !== 'undefined' && !usableLanguage(navigator.language)) {
  Object.defineProperty(navigator, 'language', { value: 'en-US', configurable: true });
}
