#!/usr/bin/python3
"""Issue 6, part 3: Understudy side by side with keepalived, rsyslog and syslog-ng.

One network namespace per host on a private bridge (10.211.1.0/24): two servers/collectors
(uspeer-s1 10.211.1.1, uspeer-s2 10.211.1.2) and a client (uspeer-c 10.211.1.10); the bridge
lives in its own namespace (uspeer-br), so nothing touches the host's interfaces. Every daemon
runs in the foreground with this script's configuration, pid and work files under a temporary
directory. Run through bench/peers/run.sh (installs the peers, builds understudy, needs root).

Standard library only (Debian's python3).
"""

import argparse
import atexit
import ctypes
import hashlib
import shutil
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NS = {"s1": "uspeer-s1", "s2": "uspeer-s2", "c": "uspeer-c", "a1": "uspeer-a1", "a2": "uspeer-a2"}
BR_NS = "uspeer-br"
IP = {"s1": "10.211.1.1", "s2": "10.211.1.2", "c": "10.211.1.10", "a1": "10.211.1.11", "a2": "10.211.1.12"}
VIP = "10.211.1.100"
PROBE_PORT = 8080
SYSLOG_PORT = 5140
US_PORT = 7400
TOKEN = "peers-enroll-token-0123456789"
SYSLOG_NG_ROOT = os.environ.get("USPEER_SYSLOG_NG_ROOT", "/var/tmp/uspeer-pkgs/root")

PROCS = []  # every Popen we started, killed at exit


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def in_ns(host, *cmd):
    return ["ip", "netns", "exec", NS[host], *cmd]


def spawn(host, cmd, logfile, env=None):
    f = open(logfile, "ab")
    p = subprocess.Popen(in_ns(host, *cmd), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    f.close()
    PROCS.append(p)
    return p


def kill(p, sig=signal.SIGKILL):
    if p is None or p.poll() is not None:
        return
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def stop(p):
    kill(p, signal.SIGTERM)


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def ns_pids(host):
    """The processes in HOST's namespace but the harness itself."""
    return [int(p) for p in sh("ip", "netns", "pids", NS[host]).split() if p != str(os.getpid())]


# ---------------------------------------------------------------- topology


def kill_ns_procs():
    """Every process this script started, and anything else running in our namespaces."""
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    PROCS.clear()
    for ns in list(NS.values()) + [BR_NS]:
        # Anything still running in our namespaces was started by this script.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            if pid == str(os.getpid()):
                continue  # the harness itself lives in the client's namespace
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def topo_down():
    kill_ns_procs()
    for ns in list(NS.values()) + [BR_NS]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def topo_up(hosts=("s1", "s2", "c")):
    """The bridge and HOSTS (keys of NS); the harness moves into the client's namespace."""
    topo_down()
    sh("ip", "netns", "add", BR_NS)
    sh("ip", "-n", BR_NS, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", BR_NS, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
    sh("ip", "-n", BR_NS, "link", "set", "br0", "up")
    for h in hosts:
        ns = NS[h]
        sh("ip", "netns", "add", ns)
        # Made inside the bridge's namespace and moved: nothing appears in the host's namespace.
        sh("ip", "-n", BR_NS, "link", "add", f"v-{h}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", BR_NS, "link", "set", f"v-{h}", "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{IP[h]}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    # The harness itself (probes, admin API calls, message source) lives in the client's namespace.
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{NS['c']}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise RuntimeError(f"setns: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    for h in (h for h in hosts if h != "c"):
        wait_for(lambda: subprocess.run(["ping", "-c1", "-W1", IP[h]], capture_output=True).returncode == 0 or None, 10, f"ping {h}")


def wait_for(f, timeout, what, every=0.05):
    end = time.monotonic() + timeout
    while True:
        v = f()
        if v is not None:
            return v
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


def render(template, out, **kv):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for k, v in kv.items():
        text = text.replace(f"@{k}@", str(v))
    with open(out, "w") as f:
        f.write(text)
    return text


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(1, -(-len(s) * p // 100))
    return s[int(k) - 1]


def fmt(x):
    if x is None or x != x:
        return "—"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


# ---------------------------------------------------------------- small servers (run in a namespace)


def serve_probe(host, port):
    """A tiny TCP listener that answers every connection with the host's name (the VIP's service)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(host.encode() + b"\n")
        except OSError:
            pass
        c.close()


def serve_collector(ip, port, out):
    """The neutral syslog collector: accepts TCP connections, appends every complete line it
    reads to OUT as `ARRIVAL_TIME LINE` (write(2) per read, no buffering in the process)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(128)
    s.setblocking(False)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    conns = {}
    while True:
        r, _, _ = select.select([s] + list(conns), [], [], 1.0)
        for x in r:
            if x is s:
                try:
                    c, _ = s.accept()
                    c.setblocking(False)
                    conns[c] = b""
                except OSError:
                    pass
                continue
            try:
                data = x.recv(65536)
            except OSError:
                data = b""
            if not data:
                conns.pop(x, None)
                x.close()
                continue
            buf = conns[x] + data
            *lines, rest = buf.split(b"\n")
            conns[x] = rest
            if lines:
                t = f"{time.time():.4f} ".encode()
                os.write(fd, b"".join(t + l + b"\n" for l in lines))


# ---------------------------------------------------------------- understudy nodes


class AdminClient:
    def __init__(self, listen, token):
        self.host, port = listen.rsplit(":", 1)
        self.port = int(port)
        self.token = token
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.conn = None

    def call(self, method, path, body=None, timeout=3.0):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
                data = json.dumps(body).encode() if body is not None else None
                headers = {"Authorization": f"Bearer {self.token}"}
                if data is not None:
                    headers["Content-Type"] = "application/json"
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                if 200 <= r.status < 300:
                    return json.loads(raw) if raw else {}
                return None
            except (OSError, http.client.HTTPException, ValueError):
                try:
                    self.conn.close()
                except Exception:
                    pass
                self.conn = None
                if attempt == 1:
                    return None
        return None


class UNode:
    def __init__(self, work, name, host, port, role, servers=(), sets=()):
        self.name, self.host = name, host
        self.dir = os.path.join(work, name)
        self.listen = f"{IP[host]}:{port}"
        args = [BIN, "init", "--data-dir", self.dir, "--name", name, "--listen", self.listen, "--role", role]
        for s in servers:
            args += ["--server", s]
        for s in sets:
            args += ["--set", s]
        out = sh(*args)
        self.fingerprint = re.search(r"fingerprint:\s+([0-9a-f]{64})", out).group(1)
        with open(os.path.join(self.dir, "admin.token")) as f:
            self.admin = AdminClient(self.listen, f.read().strip())
        self.proc = None

    def url(self):
        return f"https://{self.listen}#{self.fingerprint}"

    def configure(self, sets):
        """Appends keys to config.toml through `init`'s own syntax is not possible once made, so
        edit the TOML: every key used here is `section.key = "value"`."""
        path = os.path.join(self.dir, "config.toml")
        with open(path) as f:
            text = f.read()
        for s in sets:
            k, v = s.split("=", 1)
            sec, key = k.split(".", 1)
            line = f'{key} = "{v}"'
            hdr = f"[{sec}]"
            pat = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
            start = text.find(hdr)
            if start < 0:
                text += f"\n{hdr}\n{line}\n"
                continue
            end = text.find("\n[", start + 1)
            end = len(text) if end < 0 else end
            body = text[start:end]
            body = pat.sub(line, body, count=1) if pat.search(body) else body.rstrip("\n") + f"\n{line}\n"
            text = text[:start] + body + text[end:]
        with open(path, "w") as f:
            f.write(text)

    def start(self, wait=True):
        self.proc = spawn(self.host, [BIN, "serve", "--data-dir", self.dir], os.path.join(self.dir, "serve.log"))
        if wait:
            wait_for(lambda: self.status(), 60, f"{self.name}'s admin API")

    def kill9(self):
        t = time.monotonic()
        kill(self.proc)
        self.proc = None
        return t

    def stop(self):
        stop(self.proc)
        self.proc = None

    def term(self):
        """SIGTERM without waiting (HS-8: a planned stop hands over first); reap() waits."""
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        return t

    def reap(self):
        stop(self.proc)
        self.proc = None

    def status(self):
        return self.admin.call("GET", "/api/status")

    def failover_state(self):
        s = self.status()
        return s and s["node"]["failover"]["state"]

    def link(self):
        s = self.status()
        return s and (s["link"]["state"], s["link"].get("server") or "", s["link"].get("cached"))

    def send(self, records, timeout=3.0):
        return self.admin.call("POST", "/api/send", {"records": records}, timeout=timeout)

    def records(self, agent, limit):
        v = self.admin.call("GET", f"/api/records?agent={agent}&limit={limit}")
        return None if v is None else v.get("records", [])

    def stored_values(self, name):
        """Values of this server's stored records called NAME (read from its store; node stopped)."""
        db = sqlite3.connect(f"file:{os.path.join(self.dir, 'store.db')}?mode=ro", uri=True)
        try:
            return [r[0] for r in db.execute("SELECT value FROM records WHERE name = ?", (name,))]
        finally:
            db.close()


def seen(server, agent, name):
    recs = server.records(agent, 20)
    return recs is not None and any(r.get("name") == name for r in recs)


def deliver(agent, server, name, timeout=120):
    if agent.send([{"name": name, "value": 1.0}]) is None:
        return False
    try:
        wait_for(lambda: True if seen(server, agent.name, name) else None, timeout, f"{name} on {server.name}")
        return True
    except RuntimeError:
        return False


# ---------------------------------------------------------------- takeover: keepalived vs understudy


def probe_once(timeout=0.2):
    """Connects to the VIP's service; the answering host's name, or None."""
    try:
        with socket.create_connection((VIP, PROBE_PORT), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).decode().strip() or None
    except OSError:
        return None


def vrrp_series(work, label, advert, runs):
    """keepalived MASTER (s1, prio 150) / BACKUP (s2, prio 100). Each run: SIGKILL of every
    keepalived process of the MASTER and of its service; the clock stops when a connection to the
    VIP is answered by the BACKUP's service (probed every 10 ms from the client)."""
    d = tempfile.mkdtemp(prefix=f"vrrp-{advert}-", dir=work)
    conf = {}
    for h, state, prio in (("s1", "MASTER", 150), ("s2", "BACKUP", 100)):
        conf[h] = os.path.join(d, f"keepalived-{h}.conf")
        render("keepalived.conf.in", conf[h], NAME=f"uspeer_{h}", STATE=state, PRIO=prio, ADVERT=advert, VIP=VIP)

    starts = Counter()

    def start_keepalived(h):
        # Fresh pid files each start: a SIGKILLed keepalived leaves its own behind.
        starts[h] += 1
        n = starts[h]
        return spawn(
            h,
            ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp", "-f", conf[h],
             "-p", os.path.join(d, f"{h}-{n}.pid"), "-r", os.path.join(d, f"{h}-{n}.vrrp.pid")],
            os.path.join(d, f"keepalived-{h}.log"),
        )

    def start_listener(h):
        return spawn(h, [sys.executable, __file__, "probe-listener", h, str(PROBE_PORT)], os.path.join(d, f"listener-{h}.log"))

    ka = {h: start_keepalived(h) for h in ("s1", "s2")}
    ls = {h: start_listener(h) for h in ("s1", "s2")}
    xs, failed = [], 0
    # Both started together: let the BACKUP see the MASTER's adverts for a while before run 0.
    time.sleep(10 * float(advert) + 2)
    for run in range(runs):
        try:
            wait_for(lambda: True if probe_once() == "s1" else None, 60, "the VIP on s1")
        except RuntimeError as e:
            log(f"vrrp {label}: run {run}: {e}")
            failed += 1
            break
        # Settled (the BACKUP has seen adverts for a while), then a random phase of the advert
        # timer: a crash does not wait for the next advert.
        time.sleep((3 if advert == "1" else 1.5) + random.uniform(0, float(advert)))
        # The MASTER's keepalived is a parent and its VRRP child, and the child asks for SIGTERM
        # when its parent dies (PR_SET_PDEATHSIG), which would let it send a priority-0 advert
        # (a graceful handover). So every process of the host is stopped first, then killed.
        pids = ns_pids("s1")
        t0 = time.monotonic()
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            signal_all(pids, sig)
        t1 = None
        end = t0 + 60
        while time.monotonic() < end:
            if probe_once(0.05) == "s2":
                t1 = time.monotonic()
                break
            time.sleep(0.01)
        for h in ("s1",):
            ka[h].wait()
            ls[h].wait()
        if t1 is None:
            log(f"vrrp {label}: run {run}: the BACKUP never answered on the VIP")
            failed += 1
        else:
            xs.append(t1 - t0)
            log(f"vrrp {label}: run {run}: {fmt(t1 - t0)}")
        # keepalived killed by SIGKILL leaves the VIP on its interface; the host "comes back clean".
        subprocess.run(["ip", "-n", NS["s1"], "addr", "del", f"{VIP}/24", "dev", "eth0"], capture_output=True)
        ls["s1"] = start_listener("s1")
        ka["s1"] = start_keepalived("s1")  # preempts (keepalived's default) and takes the VIP back
    for p in list(ka.values()) + list(ls.values()):
        stop(p)
    with open(os.path.join(d, "keepalived-s2.log"), errors="replace") as f:
        klog = f.read()
    accepted = [l.strip() for l in klog.splitlines() if re.search(r"advert|interval", l, re.I)][:6]
    transitions = {"backup_entered_master": klog.count("Entering MASTER STATE"), "backup_entered_backup": klog.count("Entering BACKUP STATE")}
    with open(conf["s2"]) as f:
        ctext = f.read()
    with open(conf["s1"]) as f:
        mtext = f.read()
    return {"label": label, "xs": xs, "failed": failed, "log": accepted, "transitions": transitions, "conf_master": mtext, "conf_backup": ctext}


def understudy_takeover_series(work, label, fast, runs, planned=False):
    """As bench/src/takeover.rs, in the namespaces: hot standby s1 (primary) / s2 (secondary),
    one agent in the client namespace. Each run: the agent has delivered to the ACTIVE and two
    sync_intervals have passed; SIGKILL of the ACTIVE (SIGTERM with `planned`: HS-8 handover);
    right after, one record is handed to the agent; the clock stops when the survivor's records
    (polled every 20 ms) list it."""
    d = tempfile.mkdtemp(prefix=f"takeover-{'fast' if fast else 'default'}-", dir=work)
    server_sets = ["failover.sync_interval=200ms", "failover.failover_timeout=1s"] if fast else []
    agent_sets = ["agent.heartbeat=200ms", "agent.switchover_after=600ms", "agent.switchback_interval=1s"] if fast else ["agent.switchback_interval=1s"]
    sync = 0.2 if fast else 5.0
    s = [UNode(d, "s1", "s1", US_PORT, "server", sets=[f"server.enroll_token={TOKEN}", *server_sets]),
         UNode(d, "s2", "s2", US_PORT, "server", sets=[f"server.enroll_token={TOKEN}", *server_sets])]
    s[0].configure([f"failover.peer={s[1].url()}", "failover.mode=primary"])
    s[1].configure([f"failover.peer={s[0].url()}", "failover.mode=secondary"])
    s[0].start()
    wait_for(lambda: True if s[0].failover_state() == "active" else None, 120, "s1 active")
    s[1].start()
    wait_for(lambda: True if s[1].failover_state() == "standby" else None, 120, "s2 standby")
    agent = UNode(d, "a1", "c", US_PORT, "agent", servers=[s[0].url(), s[1].url()], sets=[f"agent.enroll_token={TOKEN}", *agent_sets])
    agent.start()
    xs, failed, active = [], 0, 0
    for run in range(runs):
        other = 1 - active
        if not deliver(agent, s[active], f"warm-{run}"):
            log(f"takeover {label}: run {run}: warm-up record never reached {s[active].name}")
            failed += 1
            break
        # As takeover.rs (two sync_intervals), plus a random phase of the peer polls.
        time.sleep(sync * 2 + 0.2 + random.uniform(0, sync))
        probe = f"probe-{run}"
        t0 = s[active].term() if planned else s[active].kill9()
        agent.send([{"name": probe, "value": float(run)}])
        t1 = None
        end = t0 + 120
        while time.monotonic() < end:
            if seen(s[other], agent.name, probe):
                t1 = time.monotonic()
                break
            time.sleep(0.02)
        if t1 is None:
            log(f"takeover {label}: run {run}: the record never reached {s[other].name}")
            failed += 1
        else:
            xs.append(t1 - t0)
            log(f"takeover {label}: run {run}: {fmt(t1 - t0)}")
        if planned:
            s[active].reap()
        s[active].start()
        try:
            wait_for(lambda: True if s[active].failover_state() == "standby" else None, 120, "the former ACTIVE as STANDBY")
        except RuntimeError as e:
            log(f"takeover {label}: {e}")
            failed += 1
            break
        active = other
    for n in [agent] + s:
        n.stop()
    return {"label": label, "xs": xs, "failed": failed}


# ---------------------------------------------------------------- syslog failover: rsyslog, syslog-ng vs understudy agent


class Stream:
    """Numbered messages at RATE per second from a thread; `sender(seq)` returns True when the
    message was handed over (counted as sent)."""

    def __init__(self, rate, seconds, sender, batch=1):
        self.rate, self.seconds, self.sender, self.batch = rate, seconds, sender, batch
        self.sent = 0
        self.refused = 0
        self.t_start = self.t_end = None
        self.th = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.th.start()

    def run(self):
        self.t_start = time.monotonic()
        n = int(self.rate * self.seconds)
        seq = 0
        while seq < n:
            due = self.t_start + seq / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            k = min(self.batch, n - seq)
            if self.sender(list(range(seq, seq + k))):
                self.sent = seq + k
            else:
                self.refused += k
            seq += k
        self.t_end = time.monotonic()

    def join(self):
        self.th.join()


def count(seqs, sent):
    c = Counter(x for x in seqs if 0 <= x < sent)
    return {"sent": sent, "unique": len(c), "lost": sent - len(c), "dup": sum(v - 1 for v in c.values() if v > 1)}


class SyslogClient:
    """An rsyslog or syslog-ng client in the client namespace forwarding to the two neutral
    collectors; the messages come in through its unix datagram socket."""

    def __init__(self, kind, d, variant):
        self.kind, self.d = kind, d
        os.makedirs(os.path.join(d, "spool"), exist_ok=True)
        os.makedirs(os.path.join(d, "buffer"), exist_ok=True)
        self.sock_path = os.path.join(d, "in.sock")
        conf = os.path.join(d, f"{kind}.conf")
        kv = dict(WORK=d, S1=IP["s1"], S2=IP["s2"], PORT=SYSLOG_PORT)
        if kind == "rsyslog":
            self.conf_text = render(variant, conf, **kv)
            self.cmd = ["rsyslogd", "-n", "-f", conf, "-i", os.path.join(d, "rsyslogd.pid")]
            self.env = None
        else:
            self.conf_text = render(variant, conf, **kv)
            self.cmd = [
                os.path.join(SYSLOG_NG_ROOT, "usr/sbin/syslog-ng"), "-F", "-e", "--no-caps", "-f", conf,
                f"--module-path={SYSLOG_NG_ROOT}/usr/lib/syslog-ng/3.38",
                "-R", os.path.join(d, "syslog-ng.persist"), "-p", os.path.join(d, "syslog-ng.pid"),
                "-c", os.path.join(d, "syslog-ng.ctl"),
            ]
            self.env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(SYSLOG_NG_ROOT, "usr/lib/syslog-ng"))
        self.proc = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def start(self):
        self.proc = spawn("c", self.cmd, os.path.join(self.d, f"{self.kind}.log"), env=self.env)
        wait_for(lambda: True if os.path.exists(self.sock_path) else None, 30, f"{self.kind}'s socket")
        time.sleep(0.5)

    def send(self, seqs):
        try:
            for q in seqs:
                self.sock.sendto(f"<13>peers: seq={q:07d}".encode(), self.sock_path)
            return True
        except OSError:
            return False

    def stop(self):
        stop(self.proc)


def collector_seqs(paths, after=None):
    seqs, first_after = [], None
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            for line in f:
                m = re.search(rb"seq=(\d+)", line)
                if not m:
                    continue
                seqs.append(int(m.group(1)))
                if after is not None:
                    t = float(line.split(b" ", 1)[0])
                    if t > after and (first_after is None or t < first_after):
                        first_after = t
    return seqs, first_after


def syslog_run(work, kind, variant, scenario, run, o):
    """One run of a syslog client: the stream, the fault, the drain, the count."""
    d = tempfile.mkdtemp(prefix=f"{kind}-{scenario}-{run}-", dir=work)
    outs = {h: os.path.join(d, f"collector-{h}.out") for h in ("s1", "s2")}

    def start_collector(h):
        return spawn(h, [sys.executable, __file__, "collector", IP[h], str(SYSLOG_PORT), outs[h]], os.path.join(d, f"collector-{h}.log"))

    col = {h: start_collector(h) for h in ("s1", "s2")}
    for h in ("s1", "s2"):
        wait_for(lambda: True if tcp_open(IP[h], SYSLOG_PORT) else None, 10, f"collector {h}")
    client = SyslogClient(kind, d, variant)
    client.start()
    stream = Stream(o.rate, o.seconds, client.send)
    t_fault_wall = t_back_wall = None
    stream.start()
    time.sleep(o.fault_at)
    t_fault_wall = time.time()
    kill(col["s1"])
    if scenario == "both-down":
        kill(col["s2"])
        time.sleep(o.down)
        t_back_wall = time.time()
        col = {h: start_collector(h) for h in ("s1", "s2")}
    stream.join()
    sent = stream.sent
    # Drain: until every message is in, or nothing new arrived for `quiet` seconds.
    last_n, last_change, t_end = -1, time.monotonic(), time.monotonic() + o.drain_max
    while time.monotonic() < t_end:
        seqs, _ = collector_seqs(outs.values())
        c = count(seqs, sent)
        if c["unique"] == sent:
            break
        if len(seqs) != last_n:
            last_n, last_change = len(seqs), time.monotonic()
        elif time.monotonic() - last_change > o.quiet:
            break
        time.sleep(1)
    drained_after = time.monotonic() - stream.t_end
    client.stop()
    time.sleep(0.5)
    for p in col.values():
        stop(p)
    seqs, _ = collector_seqs(outs.values())
    c = count(seqs, sent)
    # Delivery resumed: the first line at the backup after the kill, or at either after the return.
    _, first = collector_seqs([outs["s2"]] if scenario == "primary-killed" else outs.values(), after=t_back_wall or t_fault_wall)
    c["queued_bytes"] = dir_bytes(os.path.join(d, "spool")) + dir_bytes(os.path.join(d, "buffer"))
    c["resume"] = None if first is None else first - (t_back_wall or t_fault_wall)
    c["waited"] = drained_after
    c["conf"] = client.conf_text
    log(f"{kind} [{os.path.basename(variant)}] {scenario} run {run}: {c['sent']} sent, {c['unique']} delivered, "
        f"{c['lost']} lost, {c['dup']} duplicated, resumed after {fmt(c['resume']) if c['resume'] is not None else 'never'}, "
        f"waited {drained_after:.0f} s after the stream")
    return c


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) if os.path.isdir(path) else 0


def tcp_open(ip, port):
    try:
        socket.create_connection((ip, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def understudy_syslog_run(work, scenario, run, o, fast=False):
    """The same stream into an Understudy agent (default settings) whose servers are s1 (home) and
    s2 (standby), two plain servers (failover.mode off): the agent, not the servers, fails over,
    as rsyslog and syslog-ng do."""
    d = tempfile.mkdtemp(prefix=f"understudy-{scenario}-{run}-", dir=work)
    s = {h: UNode(d, h, h, US_PORT, "server", sets=[f"server.enroll_token={TOKEN}"]) for h in ("s1", "s2")}
    for n in s.values():
        n.start()
    fast_sets = ["agent.heartbeat=200ms", "agent.switchover_after=600ms"] if fast else []
    agent = UNode(d, "agent", "c", US_PORT, "agent", servers=[s["s1"].url(), s["s2"].url()], sets=[f"agent.enroll_token={TOKEN}", *fast_sets])
    agent.start()
    wait_for(lambda: True if (agent.link() or ("",))[0] == "home" else None, 60, "agent home")
    sender = AdminClient(agent.listen, agent.admin.token)

    def send(seqs):
        return sender.call("POST", "/api/send", {"records": [{"name": "peer", "value": float(q)} for q in seqs]}) is not None

    # 10 records per call every 10 ms (one call per record would measure Python's HTTPS client).
    stream = Stream(o.rate, o.seconds, send, batch=10)
    stream.start()
    time.sleep(o.fault_at)
    t_fault = s["s1"].kill9()
    t_back = None
    if scenario == "both-down":
        s["s2"].kill9()
        time.sleep(o.down)
        t_back = time.monotonic()
        for n in s.values():
            n.start(wait=False)
    # When does delivery resume: the first new record on a live server after the fault / the return.
    watch = s["s2"] if scenario == "primary-killed" else None
    base = {h: None for h in s}
    first = None
    while first is None and time.monotonic() < (t_back or t_fault) + 150:
        for h, n in s.items():
            if scenario == "primary-killed" and h == "s1":
                continue
            if n.proc is None:
                continue
            recs = n.records("agent", 1)
            if recs is None:
                continue
            newest = recs[0]["seq"] if recs else 0
            if base[h] is None:
                base[h] = newest
                if scenario == "both-down" and newest:
                    # After a restart the newest record is old: wait for a newer one.
                    pass
            elif newest > base[h]:
                first = time.monotonic()
                break
        if first is None:
            time.sleep(0.05)
    stream.join()
    sent = stream.sent
    t_stream_end = time.monotonic()
    # Drain: until the agent's cache is empty.
    try:
        wait_for(lambda: True if (agent.link() or (None, None, 1))[2] == 0 else None, o.drain_max, "the agent's cache empty", every=0.5)
    except RuntimeError as e:
        log(f"understudy {scenario} run {run}: {e}")
    drained_after = time.monotonic() - t_stream_end
    agent.stop()
    for n in s.values():
        n.stop()
    seqs = [int(v) for n in s.values() for v in n.stored_values("peer")]
    c = count(seqs, sent)
    c["refused"] = stream.refused
    c["resume"] = None if first is None else first - (t_back or t_fault)
    c["waited"] = drained_after
    c["queued_bytes"] = 0
    with open(os.path.join(agent.dir, "config.toml")) as f:
        c["conf"] = f.read()
    log(f"understudy{' fast' if fast else ''} {scenario} run {run}: {c['sent']} sent, {c['unique']} delivered, {c['lost']} lost, "
        f"{c['dup']} duplicated, resumed after {fmt(c['resume']) if c['resume'] is not None else 'never'}, "
        f"{stream.refused} refused by the agent, drained {drained_after:.0f} s after the stream")
    return c


# ---------------------------------------------------------------- main

BIN = os.path.join(ROOT, "target/release/understudy")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all", choices=["all", "vrrp", "takeover", "syslog", "datain", "probe-listener", "collector", "cleanup"])
    ap.add_argument("rest", nargs="*")
    ap.add_argument("--runs", type=int, default=30, help="runs of each fast takeover series")
    ap.add_argument("--default-runs", type=int, default=10, help="runs of each default-settings takeover series")
    ap.add_argument("--syslog-runs", type=int, default=3, help="runs of each syslog scenario per tool")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--fault-at", type=float, default=10.0)
    ap.add_argument("--down", type=float, default=20.0)
    ap.add_argument("--quiet", type=float, default=200.0,
                    help="stop waiting when nothing arrived for this long (syslog-ng reaches its failover server only at its second reconnection, 2 × time-reopen = 120 s after the failure)")
    ap.add_argument("--vrrp-default-runs", type=int, default=20)
    ap.add_argument("--drain-max", type=float, default=400.0)
    ap.add_argument("--fast-advert", default="0.01")
    ap.add_argument("--tools", default="understudy,understudy-fast,rsyslog,rsyslog-ruleset,syslog-ng")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--bin", default="", help="the understudy binary (default: target/release/understudy)")
    # datain (issue 18): node_exporter → VictoriaMetrics through Prometheus agent, vmagent, Understudy.
    ap.add_argument("--datain-tools", default="prometheus-agent,vmagent,understudy,understudy-one-server",
                    help="understudy: the pair with two servers in hot standby; understudy-one-server: the pair with one server")
    ap.add_argument("--datain-faults", default="", help="restart,host-lost,receiver-down (default: all three)")
    ap.add_argument("--settle", type=float, default=10.0, help="datain: seconds of collecting before the CPU window")
    ap.add_argument("--cpu-window", type=float, default=20.0, help="datain: the collector's CPU and RSS over this window, then the fault")
    ap.add_argument("--restart-after", type=float, default=30.0, help="datain: a SIGKILLed collector is started again after this")
    ap.add_argument("--receiver-down", type=float, default=60.0, help="datain: VictoriaMetrics is down this long")
    ap.add_argument("--after", type=float, default=30.0, help="datain: collecting after the recovery, before the count")
    ap.add_argument("--failover-after", default="10s", help="datain: the Understudy pair's failover_after")
    ap.add_argument("--datain-quiet", type=float, default=30.0, help="datain: stop the drain when nothing new arrived this long")
    ap.add_argument("--datain-drain-max", type=float, default=180.0)
    o = ap.parse_args()
    if o.what == "probe-listener":
        serve_probe(o.rest[0], int(o.rest[1]))
        return
    if o.what == "collector":
        serve_collector(o.rest[0], int(o.rest[1]), o.rest[2])
        return
    if o.what == "cleanup":
        topo_down()
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    atexit.register(topo_down)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    work = tempfile.mkdtemp(prefix="uspeer-")
    log(f"work directory {work}")
    # A private copy: others may rebuild target/release/understudy while this runs.
    global BIN
    src = o.bin or BIN
    BIN = os.path.join(work, "understudy")
    shutil.copy2(src, BIN)
    binary = {"path": src, "mtime_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(os.path.getmtime(src))),
              "sha256": hashlib.sha256(open(BIN, "rb").read()).hexdigest(),
              "head": sh("git", "-C", ROOT, "log", "-1", "--format=%h %ci"),
              "dirty": sh("git", "-C", ROOT, "status", "--short", "--", "crates").strip()}
    results = {}
    if os.path.exists(o.out):
        with open(o.out) as f:
            results = json.load(f)

    def save():
        with open(o.out, "w") as f:
            json.dump(results, f, indent=1)

    if o.what == "datain":
        # Its own part of results.json, with its own metadata: the other sections' stay as taken.
        import datain
        datain.run(sys.modules[__name__], work, o, results, save, binary)
        log(f"results in {o.out}")
        return
    results.setdefault("meta", {})
    results["meta"]["started_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    results["meta"]["binary"] = binary
    results["meta"]["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    def version(*cmd, env=None):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        return ((r.stdout + r.stderr).strip().splitlines() or [""])[0].strip()

    sng_env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(SYSLOG_NG_ROOT, "usr/lib/syslog-ng"))
    results["meta"]["versions"] = {
        "keepalived": version("keepalived", "--version"),
        "rsyslog": version("rsyslogd", "-v"),
        "syslog-ng": version(os.path.join(SYSLOG_NG_ROOT, "usr/sbin/syslog-ng"), "--version", env=sng_env),
        "debian_packages": version("dpkg-query", "-W", "-f", "${Package} ${Version}; ", "keepalived", "rsyslog"),
        "syslog_ng_deb": sorted(f for f in os.listdir(os.path.dirname(SYSLOG_NG_ROOT)) if f.endswith(".deb")),
    }
    topo_up()

    if o.what in ("all", "vrrp"):
        results["vrrp"] = [
            vrrp_series(work, "keepalived default (advert_int 1)", "1", o.vrrp_default_runs),
            vrrp_series(work, f"keepalived fastest (advert_int {o.fast_advert})", o.fast_advert, o.runs),
        ]
        save()
    if o.what in ("all", "takeover"):
        results["takeover"] = [
            understudy_takeover_series(work, "Understudy default (failover_timeout 15s, sync 5s, heartbeat 1s)", False, o.default_runs),
            understudy_takeover_series(work, "Understudy fast (failover_timeout 1s, sync 200ms, heartbeat 200ms, switchover_after 600ms)", True, o.runs),
            understudy_takeover_series(work, "Understudy default, SIGTERM (HS-8 planned handover)", False, o.default_runs, planned=True),
        ]
        save()
    if o.what in ("all", "syslog"):
        sy = results.setdefault("syslog", {})
        for tool in o.tools.split(","):
            for scenario in ("primary-killed", "both-down"):
                key = f"{tool}/{scenario}"
                sy[key] = []
                for run in range(o.syslog_runs):
                    if tool == "understudy":
                        r = understudy_syslog_run(work, scenario, run, o)
                    elif tool == "understudy-fast":
                        r = understudy_syslog_run(work, scenario, run, o, fast=True)
                    elif tool == "rsyslog":
                        r = syslog_run(work, "rsyslog", "rsyslog-client.conf.in", scenario, run, o)
                    elif tool == "rsyslog-ruleset":
                        r = syslog_run(work, "rsyslog", "rsyslog-client-ruleset.conf.in", scenario, run, o)
                    else:
                        r = syslog_run(work, "syslog-ng", "syslog-ng-client.conf.in", scenario, run, o)
                    sy[key].append(r)
                    save()
    results["meta"]["params"] = {k: v for k, v in vars(o).items() if k not in ("rest",)}
    results["meta"]["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    results["meta"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    save()
    log(f"results in {o.out}")


if __name__ == "__main__":
    main()
