import './style.css';
import { chooseTransport, sessionTokenStore, takeTokenFromFragment, tauriInternals } from './api';
import { App } from './app';
import { SiteSwitcher, Sites, TargetedTransport, revokedFor } from './sites';

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

const tokens = sessionTokenStore(safeSessionStorage());
takeTokenFromFragment(window, tokens); // `#token=…` → sessionStorage, and out of the address bar
const internals = tauriInternals(window);
const root = document.getElementById('app')!;
if (internals) {
  // The desktop window (UI-5): this computer's node or a joined site, chosen in the top bar.
  const transport = new TargetedTransport(internals);
  const app = new App({ root, transport, tokens, revoked: revokedFor(transport) });
  const switcher = new SiteSwitcher(app.siteSwitchHost(), new Sites(internals), transport, () => app.switched());
  void switcher.refresh().finally(() => app.start());
} else {
  const app = new App({ root, transport: chooseTransport(window, tokens), tokens });
  app.start();
}
