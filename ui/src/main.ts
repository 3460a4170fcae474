import './style.css';
import { chooseTransport, sessionTokenStore, takeTokenFromFragment } from './api';
import { App } from './app';

function safeSessionStorage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

const tokens = sessionTokenStore(safeSessionStorage());
takeTokenFromFragment(window, tokens); // `#token=…` → sessionStorage, and out of the address bar
const transport = chooseTransport(window, tokens);
const app = new App({ root: document.getElementById('app')!, transport, tokens });
app.start();
