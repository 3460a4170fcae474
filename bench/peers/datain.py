"""Issue 18: node_exporter → VictoriaMetrics through three collectors, one after another in one
run — Prometheus 2.42 in agent mode, vmagent (persistent queue), and an Understudy pair (two
agents, one `prometheus` check per exporter) with two servers in hot standby forwarding over
remote write — under the same three faults: (i) the collector SIGKILLed and restarted after
30 s, (ii) the collector's host killed for good, (iii) the receiver (VictoriaMetrics) down 60 s.

Hosts (network namespaces of peers.py, 10.211.1.0/24): uspeer-c 10.211.1.10 runs the harness,
the 5 node_exporters (ports 9101–9105) and VictoriaMetrics (8428); the collector's host is
uspeer-a1 10.211.1.11 (Prometheus, vmagent, Understudy's primary member p1); uspeer-a2
10.211.1.12 holds the pair's secondary member p2; uspeer-s1/s2 10.211.1.1/.2 the hot-standby
servers.

How samples are counted (the same for the three tools). Each node_exporter counts the scrapes
it has answered (`promhttp_metric_handler_requests_total{code="200"}`), and its textfile
collector adds one series of our own, `bench_exporter{exporter="eN"} 1`, so every scrape of
exporter N carries exactly one `bench_exporter{exporter="eN"}` sample at the scrape's time.
At the end of a scenario the collectors are stopped (SIGSTOP) for 2 s, the harness reads each
exporter's counter (the scrapes it answered until then, `served`), and the collectors are let
go again to deliver what they hold; after the drain, VictoriaMetrics' `/api/v1/export` gives the
timestamps of every `bench_exporter` sample. Per exporter, for the samples stamped before the
read: lost = served − distinct timestamps (a scrape the exporter answered whose samples never
reached the receiver), duplicated = samples − distinct timestamps (a scrape stored twice;
VictoriaMetrics 1.79 without `-dedup.minScrapeInterval` keeps every copy), gap = the longest
time between two consecutive stored scrapes (1 s when none is missed). A scrape that is never
made (the collector is down) is not "lost", it is the gap; `missed` = scrape intervals in the
scenario minus distinct timestamps counts those too.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

P = None  # the peers module (its namespaces, spawn/kill, UNode), set by main()

EXPORTERS = 5
EXPORTER_PORT0 = 9101
VM_PORT = 8428
INTERVAL = 1.0
FAULTS = [
    ("restart", "collector SIGKILLed, restarted 30 s later"),
    ("host-lost", "collector's host killed for good"),
    ("receiver-down", "VictoriaMetrics down 60 s"),
]
TOOLS = ["prometheus-agent", "vmagent", "understudy", "understudy-one-server"]


def C():
    return P.IP["c"]


def vm_url(path=""):
    return f"http://{C()}:{VM_PORT}{path}"


def http_get(url, timeout=5.0, data=None):
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


# ---------------------------------------------------------------- the fixed parts: exporters, receiver


class Exporters:
    def __init__(self, d):
        self.procs = []
        for i in range(EXPORTERS):
            tdir = os.path.join(d, f"textfile-e{i + 1}")
            os.makedirs(tdir, exist_ok=True)
            with open(os.path.join(tdir, "bench.prom"), "w") as f:
                f.write(f'bench_exporter{{exporter="e{i + 1}"}} 1\n')
            self.procs.append(P.spawn("c", ["prometheus-node-exporter", f"--web.listen-address={C()}:{EXPORTER_PORT0 + i}",
                                            f"--collector.textfile.directory={tdir}"],
                                      os.path.join(d, f"node-exporter-e{i + 1}.log")))
        for i in range(EXPORTERS):
            P.wait_for(lambda: True if P.tcp_open(C(), EXPORTER_PORT0 + i) else None, 30, f"node_exporter e{i + 1}")

    @staticmethod
    def targets():
        return [f"{C()}:{EXPORTER_PORT0 + i}" for i in range(EXPORTERS)]

    def served(self):
        """Scrapes each exporter has answered (read with one scrape of our own, not counted)."""
        out = {}
        for i, t in enumerate(self.targets()):
            text = http_get(f"http://{t}/metrics") or ""
            m = re.search(r'^promhttp_metric_handler_requests_total\{code="200"\} (\S+)$', text, re.M)
            out[f"e{i + 1}"] = int(float(m.group(1))) if m else None
            self.samples_per_scrape = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
        return out

    def stop(self):
        for p in self.procs:
            P.stop(p)


class Receiver:
    """VictoriaMetrics on the harness's host, its storage in the scenario's directory."""

    def __init__(self, d):
        self.d = d
        self.proc = None

    def start(self):
        self.proc = P.spawn("c", ["victoria-metrics", f"-storageDataPath={os.path.join(self.d, 'vm-data')}",
                                  f"-httpListenAddr={C()}:{VM_PORT}", "-retentionPeriod=10y", "-loggerLevel=WARN"],
                            os.path.join(self.d, "victoria-metrics.log"))
        P.wait_for(lambda: True if http_get(vm_url("/health")) is not None else None, 60, "VictoriaMetrics")

    def stop(self):
        """A clean stop (SIGTERM: VictoriaMetrics writes what it buffered), so that what it
        had accepted is not counted as the collector's loss."""
        P.stop(self.proc)
        self.proc = None

    def samples(self):
        """exporter → sorted list of timestamps (ms) of its `bench_exporter` samples, all series."""
        http_get(vm_url("/internal/force_flush"))
        q = urllib.parse.urlencode({"match[]": "bench_exporter"})
        text = http_get(vm_url(f"/api/v1/export?{q}"), timeout=30)
        if text is None:
            return None
        out = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            s = json.loads(line)
            out.setdefault(s["metric"].get("exporter", "?"), []).extend(s["timestamps"])
        return {k: sorted(v) for k, v in out.items()}


def proc_usage(pid):
    """(CPU seconds, RSS bytes) of a process from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
        return cpu, rss
    except (OSError, AttributeError, IndexError, ValueError):
        return None, None


# ---------------------------------------------------------------- the three collectors


class PeerCollector:
    """Prometheus in agent mode or vmagent, on host a1: one process, its state on a1's disk."""

    def __init__(self, kind, d):
        self.kind, self.d = kind, d
        self.state = os.path.join(d, f"{kind}-state")
        os.makedirs(self.state, exist_ok=True)
        conf = os.path.join(d, f"{kind}.yml")
        self.conf_text = render_scrape_config(kind)
        with open(conf, "w") as f:
            f.write(self.conf_text)
        a1 = P.IP["a1"]
        if kind == "prometheus-agent":
            self.cmd = ["prometheus", "--enable-feature=agent", f"--config.file={conf}",
                        f"--storage.agent.path={self.state}", f"--web.listen-address={a1}:9090"]
        else:
            self.cmd = ["vmagent", f"-promscrape.config={conf}", f"-remoteWrite.url={vm_url('/api/v1/write')}",
                        f"-remoteWrite.tmpDataPath={self.state}", f"-httpListenAddr={a1}:8429", "-loggerLevel=WARN"]
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = P.spawn("a1", self.cmd, os.path.join(self.d, f"{self.kind}.log"))

    def kill(self):
        P.kill(self.proc)

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def collector_pid(self):
        return self.proc.pid

    def stop(self):
        P.stop(self.proc)


def render_scrape_config(kind):
    targets = ", ".join(f'"{t}"' for t in Exporters.targets())
    text = f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: [{targets}]
"""
    if kind == "prometheus-agent":
        text += f"""remote_write:
  - url: {vm_url('/api/v1/write')}
"""
    return text


class UnderstudyPair:
    """Servers s1 (primary) and s2 (secondary) in hot standby, each forwarding to VictoriaMetrics
    when acting; agents p1 (host a1, the pair's primary) and p2 (host a2); pair `web` with one
    `prometheus` check per exporter, every 1 s."""

    def __init__(self, d, failover_after, standby=True):
        self.d = d
        fwd = f"forward.remote_write={vm_url('/api/v1/write')}"
        hosts = ("s1", "s2") if standby else ("s1",)
        self.s = [P.UNode(d, h, h, P.US_PORT, "server", sets=[f"server.enroll_token={P.TOKEN}", fwd]) for h in hosts]
        if standby:
            self.s[0].configure([f"failover.peer={self.s[1].url()}", "failover.mode=primary"])
            self.s[1].configure([f"failover.peer={self.s[0].url()}", "failover.mode=secondary"])
            self.s[0].start()
            P.wait_for(lambda: True if self.s[0].failover_state() == "active" else None, 120, "s1 active")
            self.s[1].start()
            P.wait_for(lambda: True if self.s[1].failover_state() == "standby" else None, 120, "s2 standby")
        else:
            self.s[0].start()
        urls = [n.url() for n in self.s]
        self.p = {name: P.UNode(d, name, host, P.US_PORT, "agent", servers=urls, sets=[f"agent.enroll_token={P.TOKEN}"])
                  for name, host in (("p1", "a1"), ("p2", "a2"))}
        for a in self.p.values():
            a.start()
        for a in self.p.values():
            P.wait_for(lambda: True if (a.link() or ("",))[0] == "home" else None, 60, f"{a.name} home")
        self.commands = []
        self.cli("pair", "add", "web", "--primary", "p1", "--secondary", "p2", "--failover-after", failover_after,
                 "--switchback", "manual")
        for i, t in enumerate(Exporters.targets()):
            self.cli("check", "add", f"e{i + 1}", "--kind", "prometheus", "--target", f"http://{t}/metrics",
                     "--every", "1s", "--pair", "web")
        self.conf_text = "\n".join(self.commands)

    def cli(self, *args):
        self.commands.append("understudy " + " ".join(args))
        return P.sh(P.BIN, *args, "--data-dir", self.s[0].dir)

    def active_member(self):
        st = next((x for x in (n.status() for n in self.s if n.proc is not None) if x), {})
        for pr in st.get("pairs", []):
            if pr.get("name") == "web":
                return pr.get("active")
        return None

    def start(self):
        pass  # started in __init__

    def collector_pid(self):
        return self.p["p1"].proc.pid

    def pids(self):
        return [a.proc.pid for a in self.p.values() if a.proc and a.proc.poll() is None]

    def stop(self):
        for n in list(self.p.values()) + self.s:
            if n.proc is not None:
                n.stop()


# ---------------------------------------------------------------- one scenario


def host_lost(host):
    """The host is gone: its link down first (no FIN or RST reaches anyone), then every process
    in its namespace stopped and killed."""
    subprocess.run(["ip", "-n", P.NS[host], "link", "set", "eth0", "down"], capture_output=True)
    pids = P.ns_pids(host)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        P.signal_all(pids, sig)


def scenario(work, tool, fault, o):
    d = tempfile.mkdtemp(prefix=f"datain-{tool}-{fault}-", dir=work)
    # A host killed by the previous scenario comes back for this one.
    for h in ("a1", "a2"):
        subprocess.run(["ip", "-n", P.NS[h], "link", "set", "eth0", "up"], capture_output=True)
    recv = Receiver(d)
    recv.start()
    exp = Exporters(d)
    t_start = time.time()
    if tool.startswith("understudy"):
        col = UnderstudyPair(d, o.failover_after, standby=(tool == "understudy"))
    else:
        col = PeerCollector(tool, d)
        col.start()
    t_collecting = time.time()
    time.sleep(o.settle)
    # CPU and RSS of the collector in its steady state (Understudy: the active member p1).
    pid = col.collector_pid()
    cpu0, _ = proc_usage(pid)
    t0 = time.monotonic()
    time.sleep(o.cpu_window)
    cpu1, rss = proc_usage(pid)
    usage = {"cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0, "window_s": time.monotonic() - t0, "rss_bytes": rss}
    if tool.startswith("understudy"):
        servers = [proc_usage(n.proc.pid) for n in col.s]
        usage["servers_rss_bytes"] = [s[1] for s in servers]
    t_fault = time.time()
    events = []
    if fault == "restart":
        if tool.startswith("understudy"):
            col.p["p1"].kill9()
            time.sleep(o.restart_after)
            col.p["p1"].start(wait=False)
        else:
            col.kill()
            time.sleep(o.restart_after)
            col.start()
        events.append(("restarted", time.time() - t_fault))
        time.sleep(o.after)
    elif fault == "host-lost":
        host_lost("a1")
        if tool.startswith("understudy"):
            col.p["p1"].proc.wait()
            col.p["p1"].proc = None
        else:
            col.proc.wait()
        time.sleep(o.restart_after + o.after)
    else:
        recv.stop()
        time.sleep(o.receiver_down)
        recv.start()
        events.append(("receiver back", time.time() - t_fault))
        time.sleep(o.after)
    active = col.active_member() if tool.startswith("understudy") else None
    # Quiesce: every collector stopped for 2 s, each exporter's count of answered scrapes read.
    pids = col.pids()
    P.signal_all(pids, signal.SIGSTOP)
    t_read = time.time()
    time.sleep(2.0)
    served = exp.served()
    P.signal_all(pids, signal.SIGCONT)
    # Drain: until every answered scrape is in VictoriaMetrics, or nothing new for `quiet` s.
    t_drain = time.monotonic()
    last, last_change = None, time.monotonic()
    while True:
        got = recv.samples() or {}
        have = {e: len({t for t in got.get(e, []) if t <= t_read * 1000}) for e in served}
        if all(served[e] is not None and have[e] >= served[e] for e in served):
            break
        if have != last:
            last, last_change = have, time.monotonic()
        elif time.monotonic() - last_change > o.datain_quiet:
            break
        if time.monotonic() - t_drain > o.datain_drain_max:
            break
        time.sleep(1.0)
    drained = time.monotonic() - t_drain
    got = recv.samples() or {}
    col.stop()
    exp.stop()
    recv.stop()
    per = {}
    for e in sorted(served):
        ts = [t for t in got.get(e, []) if t <= t_read * 1000]
        distinct = sorted(set(ts))
        gaps = [(b - a) / 1000 for a, b in zip(distinct, distinct[1:])]
        # The gap that contains the fault (or, when nothing came after it, until the end).
        after = [t for t in distinct if t > t_fault * 1000]
        before = [t for t in distinct if t <= t_fault * 1000]
        if after and before:
            fault_gap = (after[0] - before[-1]) / 1000
        elif before:
            fault_gap = None  # never resumed
        else:
            fault_gap = float("nan")
        intervals = int((t_read - t_collecting) / INTERVAL)
        per[e] = {"served": served[e], "samples": len(ts), "distinct": len(distinct),
                  "lost": None if served[e] is None else served[e] - len(distinct),
                  "dup": len(ts) - len(distinct), "max_gap_s": max(gaps) if gaps else None,
                  "fault_gap_s": fault_gap, "resumed": bool(after),
                  "missed_intervals": intervals - len(distinct)}
    tot = lambda k: sum(v[k] for v in per.values() if v[k] is not None)
    gaps = [v["fault_gap_s"] for v in per.values()]
    r = {"tool": tool, "fault": fault, "served": tot("served"), "stored": tot("distinct"), "lost": tot("lost"), "dup": tot("dup"),
         "missed_intervals": tot("missed_intervals"), "per_exporter": per,
         "samples_per_scrape": getattr(exp, "samples_per_scrape", None),
         "gap_s": None if any(g is None for g in gaps) else max(gaps),
         "never_resumed": sum(1 for v in per.values() if not v["resumed"]),
         "usage": usage, "events": events, "drained_s": drained, "active_at_end": active,
         "window_s": t_read - t_collecting, "started_utc": time.strftime("%H:%M:%S", time.gmtime(t_start)),
         "conf": col.conf_text}
    gap = "never resumed" if r["gap_s"] is None else f"{r['gap_s']:.2f} s"
    P.log(f"datain {tool} {fault}: {r['served']} scrapes answered, {r['stored']} stored, {r['lost']} lost, {r['dup']} duplicated, "
          f"gap {gap}, missed intervals {r['missed_intervals']}, "
          f"collector CPU {usage['cpu_s']} s / {usage['window_s']:.0f} s, RSS {(usage['rss_bytes'] or 0) / 2**20:.1f} MiB, "
          f"drained in {drained:.0f} s")
    return r


def versions():
    def v(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        return ((r.stdout + r.stderr).strip().splitlines() or [""])[0].strip()
    return {
        "prometheus": v("prometheus", "--version"),
        "node_exporter": v("prometheus-node-exporter", "--version"),
        "debian_packages": v("dpkg-query", "-W", "-f", "${Package} ${Version}; ", "prometheus", "victoria-metrics",
                             "prometheus-node-exporter"),
    }


def run(peers, work, o, results, save, binary):
    global P
    P = peers
    P.topo_up(("s1", "s2", "c", "a1", "a2"))
    di = results["datain"] = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                              "loadavg_start": open("/proc/loadavg").read().split()[:3], "binary": binary,
                              "versions": versions(), "runs": {}}
    for tool in o.datain_tools.split(","):
        for fault, _ in FAULTS:
            if o.datain_faults and fault not in o.datain_faults.split(","):
                continue
            try:
                di["runs"][f"{tool}/{fault}"] = scenario(work, tool, fault, o)
            except RuntimeError as e:
                P.log(f"datain {tool} {fault}: {e}")
                di["runs"][f"{tool}/{fault}"] = {"tool": tool, "fault": fault, "error": str(e)}
            P.kill_ns_procs()
            save()
    di["params"] = {k: getattr(o, k) for k in ("settle", "cpu_window", "restart_after", "after", "receiver_down", "datain_quiet",
                                               "datain_drain_max", "failover_after", "datain_tools")}
    di["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    di["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    save()
