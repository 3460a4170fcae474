#!/usr/bin/python3
"""Drives the Understudy window through tauri-driver (W3C WebDriver) the way a user does: starts
the window process (APP with ARGS, e.g. `--window --data-dir D`) in a new session, clicks "Force
failover" on a pair and waits until the window shows the secondary active, then that the Charts
panel (MX-3, uPlot) draws records per second and the pair's timeline, listing the
FORCED_FAILOVER just made; saves a screenshot of
the window; ends the session (which closes the window, and so ends the window process).

  webdriver_check.py PAIR SCREENSHOT.png APP [ARG...]   (tauri-driver listening on $WEBDRIVER_URL,
                                                       default http://127.0.0.1:4444)

With --sites (UI-5) it drives the site switcher and "Connect to a site…" instead: pastes BAD (an
invitation with a wrong fingerprint) and waits for the refusal's reason in the dialog, then GOOD,
and waits until the switcher shows SITE and the console its node name (SITE) and role; clicks
the server role off and Apply, and waits for the operator token's 403 reason; saves a
screenshot; removes the site from the switcher and joins it again (GOOD) for what follows.

  webdriver_check.py --sites GOOD BAD SITE SCREENSHOT.png APP [ARG...]

Keeps ONE keep-alive HTTP connection for the whole session: clients that open a new connection
per request (Connection: close) saw connection resets through tauri-driver. Prints one line per
step; exits non-zero with the reason on the first failure. The window process holds no state of
its own (the node runs in the tray process), so ending the session cannot lose anything.
"""

import base64
import http.client
import json
import os
import sys
import time
from urllib.parse import urlparse

ELEMENT = "element-6066-11e4-a07c-4e86-8a0e1f7b7a0f"  # the W3C element reference key


class Driver:
    def __init__(self, url):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        self.session = None

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = json.loads(resp.read() or b"{}")
                break
            except (ConnectionError, http.client.HTTPException):
                # Reconnect once the keep-alive connection was dropped; requests here are idempotent
                # except the click, which is only retried if it was never answered.
                self.conn.close()
                if attempt == 2:
                    raise
                time.sleep(0.2)
        value = payload.get("value")
        if resp.status >= 400:
            err = value.get("error", "") if isinstance(value, dict) else ""
            msg = value.get("message", "") if isinstance(value, dict) else str(payload)
            raise WebDriverError(resp.status, err, msg)
        return value

    def s(self, path):
        return f"/session/{self.session}{path}"

    def new_session(self, app, args):
        caps = {"capabilities": {"alwaysMatch": {"tauri:options": {"application": app, "args": args}}}}
        value = self.request("POST", "/session", caps)
        self.session = value["sessionId"]
        return self.session

    def find(self, css):
        value = self.request("POST", self.s("/element"), {"using": "css selector", "value": css})
        return value.get(ELEMENT) or next(iter(value.values()))

    def attribute(self, elem, name):
        return self.request("GET", self.s(f"/element/{elem}/attribute/{name}"))

    def enabled(self, elem):
        return self.request("GET", self.s(f"/element/{elem}/enabled"))

    def click(self, elem):
        return self.request("POST", self.s(f"/element/{elem}/click"), {})

    def rect(self, elem):
        return self.request("GET", self.s(f"/element/{elem}/rect"))

    def text(self, elem):
        return self.request("GET", self.s(f"/element/{elem}/text"))

    def send_keys(self, elem, text):
        return self.request("POST", self.s(f"/element/{elem}/value"), {"text": text})

    def clear(self, elem):
        return self.request("POST", self.s(f"/element/{elem}/clear"), {})

    def displayed(self, elem):
        return self.request("GET", self.s(f"/element/{elem}/displayed"))

    def prop(self, elem, name):
        return self.request("GET", self.s(f"/element/{elem}/property/{name}"))

    def delete_session(self):
        return self.request("DELETE", self.s(""))

    def screenshot(self):
        return base64.b64decode(self.request("GET", self.s("/screenshot")))


class WebDriverError(Exception):
    def __init__(self, status, error, message):
        super().__init__(f"{status} {error}: {message}")
        self.error = error


def wait(what, cond, timeout):
    """Polls cond() (which may raise WebDriverError while the page re-renders) until truthy."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            got = cond()
            if got:
                return got
        except WebDriverError as e:
            last = e
        time.sleep(0.2)
    raise SystemExit(f"FAIL: {what} within {timeout}s" + (f" (last error: {last})" if last else ""))


def by(d, testid):
    return d.find(f'[data-testid="{testid}"]')


def sites(argv):
    """UI-5: the site switcher and the Connect dialog (see the module)."""
    if len(argv) < 7:
        raise SystemExit(__doc__)
    good, bad, site, shot, app, args = argv[2], argv[3], argv[4], argv[5], argv[6], argv[7:]
    d = Driver(os.environ.get("WEBDRIVER_URL", "http://127.0.0.1:4444"))
    t0 = time.time()
    wait("a WebDriver session", lambda: d.new_session(app, args), 30)
    print(f"session {d.session} ({time.time() - t0:.1f} s)")
    wait("the site switcher", lambda: d.displayed(by(d, "site-switcher")), 30)

    def paste(line):
        d.click(by(d, "connect-site"))
        wait("the Connect dialog", lambda: d.displayed(by(d, "join-dialog")), 10)
        box = by(d, "join-invitation")
        d.clear(box)
        d.send_keys(box, line)
        d.click(by(d, "join-submit"))

    def options():
        return d.prop(by(d, "site-switcher"), "textContent") or ""

    paste(bad)
    reason = wait("the refusal's reason in the dialog", lambda: d.text(by(d, "join-error")), 30)
    print(f"wrong fingerprint refused: {reason}")
    if site in options():
        raise SystemExit(f"FAIL: the switcher lists {site} after a refused invitation: {options()}")
    d.click(by(d, "join-cancel"))

    paste(good)
    wait(f"the switcher shows site {site}", lambda: d.prop(by(d, "site-switcher"), "value") == site, 30)
    wait("the Connect dialog closed", lambda: not d.displayed(by(d, "join-dialog")), 10)
    wait(f"the console shows node {site}", lambda: d.text(by(d, "header-node")) == site, 30)
    role = wait("the node's roles", lambda: d.text(d.find('[data-view="node"]')), 10)
    print(f"window: site {site} joined and shown (node {d.text(by(d, 'header-node'))}; {' '.join(role.split())[:120]})")

    # An operator token may not change roles: the server's 403 reason is shown as it is.
    wait("the role form follows the node", lambda: d.prop(by(d, "role-server"), "checked") is True, 10)
    d.click(by(d, "role-server"))
    d.click(by(d, "role-apply"))
    refused = wait("the role change's refusal", lambda: d.text(by(d, "action-error")), 20)
    if "needs the admin permission" not in refused:
        raise SystemExit(f"FAIL: not the operator token's refusal: {refused}")
    print(f"window: role change refused: {refused}")
    with open(shot, "wb") as f:
        f.write(d.screenshot())
    print(f"screenshot {shot}")

    d.click(by(d, "remove-site"))
    wait(f"the switcher no longer lists {site}", lambda: site not in options(), 20)
    print(f"window: site {site} removed from the switcher")
    paste(good)
    wait(f"the switcher shows site {site} again", lambda: d.prop(by(d, "site-switcher"), "value") == site, 30)
    print(f"window: site {site} joined again")
    d.delete_session()
    print("session ended")


def main(argv):
    if len(argv) > 1 and argv[1] == "--sites":
        return sites(argv)
    if len(argv) < 4:
        raise SystemExit(__doc__)
    pair, shot, app, args = argv[1], argv[2], argv[3], argv[4:]
    d = Driver(os.environ.get("WEBDRIVER_URL", "http://127.0.0.1:4444"))
    t0 = time.time()
    wait("a WebDriver session", lambda: d.new_session(app, args), 30)
    print(f"session {d.session} ({time.time() - t0:.1f} s)")

    active = f'[data-testid="pair-active-{pair}"]'
    button = f'[data-testid="force-failover-{pair}"]'

    def active_is(want):
        return d.attribute(d.find(active), "data-active") == want

    wait(f"the window shows pair {pair} on its primary", lambda: active_is("primary"), 30)
    print(f"window: pair {pair} active primary")

    def enabled_button():
        b = d.find(button)
        return b if d.enabled(b) else None

    b = wait(f"an enabled Force failover button for {pair}", enabled_button, 20)
    d.click(b)
    print(f"clicked {button}")
    wait(f"the window shows pair {pair} on its secondary", lambda: active_is("secondary"), 15)
    print(f"window: pair {pair} active {d.text(d.find(active))}")

    # MX-3: the same console's Charts panel, in the window.
    def drawn(chart):
        r = d.rect(d.find(f'[data-testid="chart-{chart}"] canvas'))
        return r["width"] > 0 and r["height"] > 0

    for chart in ("records", f"pair-{pair}"):
        wait(f"the window draws chart-{chart} (a canvas of non-zero size)", lambda: drawn(chart), 30)
        print(f"window: chart-{chart} drawn")
    handover = f'[data-testid="handovers-{pair}"] [data-code="FORCED_FAILOVER"]'
    wait(f"the timeline of {pair} lists the FORCED_FAILOVER", lambda: d.find(handover), 30)
    print(f"window: the timeline of {pair} lists FORCED_FAILOVER")

    with open(shot, "wb") as f:
        f.write(d.screenshot())
    print(f"screenshot {shot}")
    d.delete_session()
    print("session ended")


if __name__ == "__main__":
    main(sys.argv)
