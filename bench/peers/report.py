#!/usr/bin/python3
"""Turns bench/peers/results.json into the "Peers side by side (issue 6)" section of BENCHMARKS.md
(between `<!-- peers -->` and `<!-- /peers -->`, appended if absent) and, when results.json has a
`datain` run, the "Data in side by side (issue 18)" section (between `<!-- peers-datain -->` and
`<!-- /peers-datain -->`), and prints them.

    bench/peers/report.py [--results FILE] [--benchmarks FILE] [--print-only]
"""

import argparse
import json
import os
import statistics

from peers import fmt, pct  # one percentile and one duration format for the harness and the report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ratio(a, b):
    if not a or not b or a != a or b != b:
        return "—"
    return f"{a / b:.1f}×"


def takeover_rows(pairs):
    out = ["| settings | what moves | runs | p50 | p99 | min | max | ratio p50 (Understudy / keepalived) | ratio p99 |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ka, us in pairs:
        for s, what in ((ka, "the VIP (an address)"), (us, "an agent and its records (to the new ACTIVE server)")):
            xs = s["xs"]
            fail = f" ({s['failed']} failed)" if s["failed"] else ""
            r50 = ratio(pct(us["xs"], 50), pct(ka["xs"], 50)) if s is us else ""
            r99 = ratio(pct(us["xs"], 99), pct(ka["xs"], 99)) if s is us else ""
            out.append(f"| {s['label']} | {what} | {len(xs)}{fail} | {fmt(pct(xs, 50))} | **{fmt(pct(xs, 99))}** | "
                       f"{fmt(min(xs) if xs else None)} | {fmt(max(xs) if xs else None)} | {r50} | {r99} |")
    return "\n".join(out)


TOOLS = [
    ("understudy", "Understudy agent, default settings (heartbeat 1s, switchover_after 10s)"),
    ("understudy-fast", "Understudy agent, fast settings (heartbeat 200ms, switchover_after 600ms)"),
    ("rsyslog", "rsyslog, action queues (`rsyslog-client.conf.in`)"),
    ("rsyslog-ruleset", "rsyslog, ruleset queue (`rsyslog-client-ruleset.conf.in`)"),
    ("syslog-ng", "syslog-ng, `failover()` + reliable disk buffer (`syslog-ng-client.conf.in`)"),
]
SCEN = [("primary-killed", "primary collector SIGKILLed mid-stream, stays down"),
        ("both-down", "both collectors SIGKILLed mid-stream, back after the outage")]


def syslog_rows(sy):
    out = ["| client | scenario | runs | sent (total) | delivered | **lost** | **duplicated** | lost per run | resumed after (per run) | left in the client's disk queue at the end |",
           "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for tool, tlabel in TOOLS:
        for scen, slabel in SCEN:
            runs = sy.get(f"{tool}/{scen}")
            if not runs:
                continue
            sent = sum(r["sent"] for r in runs)
            uniq = sum(r["unique"] for r in runs)
            lost = sum(r["lost"] for r in runs)
            dup = sum(r["dup"] for r in runs)
            per = ", ".join(str(r["lost"]) for r in runs)
            res = ", ".join("never" if r["resume"] is None else fmt(r["resume"]) for r in runs)
            # syslog-ng's disk-buffer file keeps its header and preallocation when empty.
            q = ", ".join(f"{r.get('queued_bytes', 0) / 1e6:.1f} MB" if r.get("queued_bytes", 0) >= 100_000 else "0" for r in runs)
            out.append(f"| {tlabel} | {slabel} | {len(runs)} | {sent:,} | {uniq:,} | **{lost:,}** | **{dup:,}** | {per} | {res} | {q} |")
    return "\n".join(out)


def read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read().rstrip("\n")


def section(res):
    m = res["meta"]
    p = m["params"]
    b = m["binary"]
    v = m["versions"]
    L = []
    L.append("## Peers side by side (issue 6)\n")
    passes = m.get("passes") or [{"command": "bench/peers/run.sh all", "started_utc": m["started_utc"], "finished_utc": m["finished_utc"],
                                  "loadavg_start": m["loadavg_start"], "loadavg_end": m["loadavg_end"], "what": "everything"}]
    taken = "; ".join(f"{x['what']}: {x['started_utc']}–{x['finished_utc'][11:16]} UTC with `{x['command']}` (load average "
                      f"{' '.join(x['loadavg_start'])} at the start, {' '.join(x['loadavg_end'])} at the end)" for x in passes)
    L.append(f"_Taken on the machine above (2 CPUs, **shared with other engineers' builds and tests while it ran**) — {taken}. "
             f"`understudy`: a private copy of the release binary built {b['mtime_utc']} UTC (HEAD when the run started: {b['head'].strip()}"
             f"{', with uncommitted changes in crates/' if b['dirty'] else ''}). Peers from Debian 12's packages: "
             f"{v['keepalived']}, {v['rsyslog'].split(' compiled')[0].strip()}, {v['syslog-ng']} "
             f"(`{v['debian_packages'].strip().rstrip(';')}`; {', '.join(v['syslog_ng_deb'])})._\n")
    L.append("""**Command.** As root on Debian 12, from the repository (installs what is missing, builds
`understudy-cli`, creates and removes the namespaces; about 90 minutes with the defaults):

```sh
bench/peers/run.sh all [--runs 30] [--default-runs 10] [--vrrp-default-runs 20] [--syslog-runs 3] [--quiet 200 --drain-max 400]
bench/peers/run.sh vrrp|takeover|syslog [--tools understudy,understudy-fast,rsyslog,rsyslog-ruleset,syslog-ng]
bench/peers/report.py        # results.json → this section
```

CI does not run it; the packages it needs (keepalived, rsyslog, syslog-ng-core, iputils-ping) are
installed by `run.sh` itself, not listed in `scripts/packages.txt`. rsyslog and syslog-ng-core
conflict as Debian packages (both provide `system-log-daemon`), so rsyslog is installed and
syslog-ng-core's `.deb` is unpacked under `/var/tmp/uspeer-pkgs` and its binary run from there.
Package installation runs under a `policy-rc.d` that refuses to start services. Every daemon runs
in the foreground with the configuration files below and its pid, state and queue files in a
temporary directory; the host's logging (`/etc/rsyslog.conf`, `/dev/log`) is never touched.

**Topology.** One network namespace per host on a private bridge that lives in its own namespace
(`uspeer-br`), nothing in the host's: `uspeer-s1` 10.211.1.1 and `uspeer-s2` 10.211.1.2 (the two
servers or collectors), `uspeer-c` 10.211.1.10 (the client: the probe, the Understudy agent, the
rsyslog/syslog-ng client, and the harness itself). The harness is `bench/peers/peers.py`
(Python standard library only).
""")
    # ---- takeover
    vr = {s["label"].split(" (")[0]: s for s in res["vrrp"]}
    tk = res["takeover"]
    ka_def, ka_fast = res["vrrp"][0], res["vrrp"][1]
    us_def, us_fast = tk[0], tk[1]
    L.append("### Takeover: keepalived (VRRP) and Understudy's hot standby\n")
    L.append(f"""**What each measures.** VRRP moves an IP address: the clock starts when every process of the
MASTER's host (keepalived's parent and VRRP child, and the service behind the VIP, a tiny TCP
listener that answers with its host's name) gets SIGKILL — SIGSTOP first, then SIGKILL, so that
keepalived's child cannot send the priority-0 advert of a graceful shutdown when it sees its parent
die — and stops when a TCP connection from the client to the VIP (tried every 10 ms, 50 ms
timeout) is answered by the BACKUP's listener. The kill comes 3 s (1.5 s with the fastest
setting) after the VIP answered from the MASTER, plus a random 0–`advert_int`, so it lands at a
random phase of the advert timer. The killed keepalived leaves the VIP on its
interface; it is removed before the MASTER is restarted, which then takes the VIP back (preemption,
keepalived's default) before the next run. Understudy moves agents and their records: two servers in
hot standby (s1 primary, s2 secondary) and one agent in the client namespace whose server list is
both; exactly the method of section 3 above (`bench/src/takeover.rs`): the agent has delivered a
record to the ACTIVE and two `sync_interval`s (+ 200 ms) have passed — here plus a random
0–`sync_interval`, for a random phase of the peer polls as for keepalived; the ACTIVE gets SIGKILL; right after, a
record is handed to the agent; the clock stops when the survivor's `records` (polled every 20 ms)
lists it — the new ACTIVE has promoted itself, the agent has moved to it and the record is durable
there. The killed server comes back as STANDBY, so the roles alternate. With one agent, "every agent"
and "first agent" are the same.

VRRP's BACKUP declares the MASTER down after 3 × `advert_int` + skew ((256 − priority) / 256 ×
`advert_int`) counted from the last advert it received, so a kill lands anywhere in an advert
interval: 2.6–3.6 s with `advert_int 1`, 26–36 ms with 0.01. Understudy's STANDBY promotes after
`failover_timeout` without an answer (15 s default, 1 s fast, with `sync_interval` 5 s / 200 ms).
The fastest keepalived accepts: VRRPv3 (`vrrp_version 3`) carries the interval in centiseconds;
`keepalived -t` takes `advert_int 0.01` without a warning and refuses 0.001 ("Advert interval
(0.001) not valid! Must be > 0 - ignoring"), and the measured takeover (p50 {fmt(pct(ka_fast['xs'], 50))})
is what 3 × 10 ms + skew predicts. Understudy's STANDBY does not wait for its timer when the ACTIVE's
process is gone while its host answers (HS-8): the kernel refuses the peer's polls, and 3 refusals
100 ms apart promote it. The BACKUP's log shows {ka_fast['transitions']['backup_entered_master']}
entries into MASTER over {len(ka_fast['xs'])} runs with the fastest setting and
{ka_def['transitions']['backup_entered_master']} over {len(ka_def['xs'])} at the default.
""")
    L.append(takeover_rows([(ka_def, us_def), (ka_fast, us_fast)]))
    L.append("")
    if len(tk) > 2:
        us_term = tk[2]
        xs = us_term["xs"]
        fail = f", {us_term['failed']} failed" if us_term["failed"] else ""
        L.append(f"""A planned stop is a different event from a crash, so it has no keepalived column: **{us_term['label']}**,
the ACTIVE gets SIGTERM instead of SIGKILL and hands its role to the STANDBY before it exits:
p50 {fmt(pct(xs, 50))}, p99 **{fmt(pct(xs, 99))}**, min {fmt(min(xs) if xs else None)}, max
{fmt(max(xs) if xs else None)} over {len(xs)} runs{fail}.
""")
    L.append(f"""The ratio is Understudy's time over keepalived's at each tool's own default and at its fastest
setting. Since HS-8 a SIGKILLed ACTIVE is no longer a matter of timers: its port refuses at once
and the STANDBY promotes after `crash_confirm` (3) refused polls 100 ms apart, whatever
`failover_timeout` says; silence (a frozen process, a cut link) still waits `failover_timeout`.
keepalived's fastest setting is a 100 Hz multicast heartbeat: three adverts late by more than
~30 ms (a stalled process, a busy CPU, a congested link) make a false takeover — none was seen in
these runs (below), but false failovers from short timers are the first complaint of these tools'
users (`../shared/notes/peers.md`). Understudy's 1 s includes the agent's TLS reconnection and a
durable commit on the new ACTIVE.
""")
    # ---- syslog
    quiet_text = "; ".join(f"{x['what']}: quiet {x['quiet']:.0f} s, limit {x['drain_max']:.0f} s" for x in passes if "quiet" in x) \
        or f"quiet {p['quiet']:.0f} s, limit {p['drain_max']:.0f} s"
    L.append("### Records through a failover: rsyslog, syslog-ng and an Understudy agent\n")
    L.append(f"""**Method.** Each run: two collectors, the client's primary (s1) and its failover (s2); a source
in the client namespace hands numbered messages to the client at {p['rate']:,}/s for {p['seconds']:.0f} s
(`seq=0000000`…); at {p['fault_at']:.0f} s, (1) the primary collector gets SIGKILL and stays down, or
(2) both get SIGKILL and are started again {p['down']:.0f} s later (same output files). After the
stream, the harness waits until every message has arrived, or nothing has arrived for a quiet
period, and at most a limit ({quiet_text}); then every collector's output is counted by sequence number:
**lost** = sent − distinct delivered, **duplicated** = deliveries beyond the first, across both
collectors. "Resumed after" is from the kill to the first message at s2 (1), or from the collectors'
return to the first message at either (2). "Sent" is what the source handed over: for rsyslog and
syslog-ng a datagram accepted by the client's unix socket (`imuxsock` / `unix-dgram()`), for
Understudy a `POST /api/send` (10 records per call) that returned, i.e. durable in the agent's cache.

**Collectors.** For rsyslog and syslog-ng, one neutral collector: a Python TCP line receiver
(`peers.py collector`) that appends every complete line it reads, with its arrival time, to a file
with one `write(2)` per read — no queue of its own, so the collector loses nothing that reached it
except what was still in its socket buffer at the kill, and both tools are counted the same way
(an rsyslog or syslog-ng collector would add its own queue between the socket and the file). For
Understudy, the collectors are two `understudy serve` servers, the agent's home (s1) and its standby
(s2), **plain servers (`failover.mode = off`)**: as with rsyslog's and syslog-ng's failover
destinations, the client, not the collectors, chooses where to send, and the collectors share
nothing (a record stored by s1 and resent to s2 counts as a duplicate; the hot-standby pair is
compared with keepalived above). The servers' stores are read after the run (SQLite, the
`records` table).

**What was set.** Everything not in the files below is the tool's default. rsyslog ran in two
layouts: the one issue 6 names (each `omfwd` action with its own disk-assisted queue, the second
with `action.execOnlyWhenPreviousIsSuspended`) and, because in that layout the queued primary
never looks suspended to the failover action (rsyslog/rsyslog#3961), the layout rsyslog users are
pointed to instead: one disk-assisted queue on the ruleset and both actions direct
(rsyslog/rsyslog#4032).
""")
    L.append(syslog_rows(res["syslog"]))
    L.append("")
    return L


def configs():
    L = ["### The exact configurations\n",
         "Committed under `bench/peers/`; `@…@` is filled in by `peers.py`: `@S1@` 10.211.1.1, `@S2@` "
         "10.211.1.2, `@PORT@` 5140, `@VIP@` 10.211.1.100, `@WORK@` the run's temporary directory, "
         "`@NAME@`/`@STATE@`/`@PRIO@` uspeer_s1/MASTER/150 and uspeer_s2/BACKUP/100, `@ADVERT@` 1 or 0.01.\n"]
    for f, lang in (("keepalived.conf.in", "text"), ("rsyslog-client.conf.in", "text"),
                    ("rsyslog-client-ruleset.conf.in", "text"), ("syslog-ng-client.conf.in", "text")):
        L.append(f"[`bench/peers/{f}`](bench/peers/{f}):\n\n```{lang}\n{read(f)}\n```\n")
    L.append("""Command lines (each with `ip netns exec uspeer-…`):

```sh
keepalived --dont-fork --log-console --log-detail --vrrp -f keepalived-s1.conf -p s1-N.pid -r s1-N.vrrp.pid
rsyslogd -n -f rsyslog.conf -i rsyslogd.pid
syslog-ng -F -e --no-caps -f syslog-ng.conf --module-path=/var/tmp/uspeer-pkgs/root/usr/lib/syslog-ng/3.38 \\
    -R syslog-ng.persist -p syslog-ng.pid -c syslog-ng.ctl      # LD_LIBRARY_PATH=…/usr/lib/syslog-ng
understudy init --data-dir D --name s1 --listen 10.211.1.1:7400 --role server --set server.enroll_token=T
understudy init --data-dir D --name agent --listen 10.211.1.10:7400 --role agent \\
    --server https://10.211.1.1:7400#FP1 --server https://10.211.1.2:7400#FP2 --set agent.enroll_token=T \\
    [--set agent.heartbeat=200ms --set agent.switchover_after=600ms]
understudy serve --data-dir D
```

The messages: `<13>peers: seq=0000123` datagrams to the client's unix socket (rsyslog and
syslog-ng forward them in their default TCP format, one per line); records `{"name": "peer",
"value": 123}` to the agent's `POST /api/send`. The hot-standby servers of the takeover comparison
add `failover.mode = primary|secondary` and `failover.peer` (the other's URL with its fingerprint),
and with fast settings `failover.sync_interval = 200ms`, `failover.failover_timeout = 1s`; their
agent has `agent.switchback_interval = 1s` (and with fast settings heartbeat 200ms,
switchover_after 600ms), as in section 3.
""")
    return L


DATAIN_TOOLS = [
    ("prometheus-agent", "Prometheus 2.42, agent mode (`--enable-feature=agent`, WAL, remote_write)"),
    ("vmagent", "vmagent 1.79 (`-remoteWrite.tmpDataPath` persistent queue)"),
    ("understudy", "Understudy pair (p1/p2, `--failover-after {fa}`) + hot-standby servers, `forward.remote_write`"),
    ("understudy-one-server", "Understudy pair (p1/p2, `--failover-after {fa}`) + one server (no standby), `forward.remote_write`"),
]
DATAIN_FAULTS = [
    ("restart", "(i) collector SIGKILLed, restarted after {ra:.0f} s"),
    ("host-lost", "(ii) collector's host killed for good"),
    ("receiver-down", "(iii) VictoriaMetrics down {rd:.0f} s"),
]


def datain_section(di):
    """The "Data in side by side" part (issue 18) from results.json's `datain`."""
    p = di["params"]
    b = di["binary"]
    v = di["versions"]
    L = ["## Data in side by side: Prometheus agent, vmagent, Understudy (issue 18, CK-4)\n"]
    L.append(f"_Taken {di['started_utc']}–{di['finished_utc'][11:16]} UTC with `bench/peers/run.sh datain` (load average "
             f"{' '.join(di['loadavg_start'])} at the start, {' '.join(di['loadavg_end'])} at the end, 2 CPUs shared with other "
             f"engineers' builds and tests). `understudy`: a private copy of the **release** binary built {b['mtime_utc']} UTC "
             f"(HEAD when the run started: {b['head'].strip()}{', with uncommitted changes in crates/' if b['dirty'] else ''}). "
             f"Peers from Debian 12's packages: `{v['debian_packages'].strip().rstrip(';')}` ({v['prometheus']}; "
             f"{v['node_exporter']})._\n")
    L.append(f"""**Command.** As root on Debian 12, from the repository (installs what is missing, builds
`understudy-cli` in release, creates and removes the namespaces; about 25 minutes):

```sh
bench/peers/run.sh datain [--datain-tools prometheus-agent,vmagent,understudy] [--datain-faults restart,host-lost,receiver-down]
    [--settle 10 --cpu-window 20 --restart-after 30 --receiver-down 60 --after 30 --failover-after 10s]
bench/peers/report.py --part datain     # results.json → this section
```

**Topology.** The namespaces of the section above plus two collector hosts: `uspeer-c`
10.211.1.10 runs the harness, 5 `prometheus-node-exporter`s (ports 9101–9105, default
collectors, about 1 000 samples each) and VictoriaMetrics (`victoria-metrics`, port 8428, a fresh
store per scenario); the collector runs on `uspeer-a1` 10.211.1.11 — Prometheus in agent mode,
or vmagent, or Understudy's primary member `p1`; `uspeer-a2` 10.211.1.12 holds the pair's
secondary member `p2`; `uspeer-s1`/`-s2` the two Understudy servers in hot standby (s1 primary,
both with `forward.remote_write` = VictoriaMetrics; the acting one forwards). Every tool scrapes
the 5 exporters every 1 s (Understudy: one `prometheus` check per exporter, `--every 1s --pair
web`). The tools run one after another, each scenario from scratch (fresh exporters, store and
state directories).

**Each scenario.** {p['settle']:.0f} s of collecting; the collector's CPU time (utime + stime from
`/proc/PID/stat`) over the next {p['cpu_window']:.0f} s and its RSS (`VmRSS`) at the end of them
(Understudy: the active member p1; the servers are not the collector and are not counted); then
the fault: (i) the collector process SIGKILLed and started again {p['restart_after']:.0f} s later
(Understudy: p1; the pair moves to p2 after `failover_after` and stays there, `--switchback
manual`); (ii) the collector's host gone for good — its link set down, then every process in it
SIGSTOPped and SIGKILLed, its disk never read again (Understudy: host a1 with p1; **Prometheus and
vmagent have no partner that could take their scrapes over, so they stay down: their gap is
"until someone restarts them"**); (iii) VictoriaMetrics stopped (SIGTERM, so that what it had
accepted is on its disk) and started again {p['receiver_down']:.0f} s later. Then {p['after']:.0f} s more of
collecting ((ii): {p['restart_after'] + p['after']:.0f} s).

**Counting.** Each node_exporter counts the scrapes it answered
(`promhttp_metric_handler_requests_total{{code="200"}}`), and its textfile collector adds a series
of the bench's own, `bench_exporter{{exporter="eN"}} 1`, so every scrape of exporter N carries one
`bench_exporter{{exporter="eN"}}` sample stamped with the scrape's time. At the end the collectors are
SIGSTOPped for 2 s, each exporter's count is read (**answered**: the scrapes it served), and the
collectors are let go to deliver what they hold until every answered scrape is in VictoriaMetrics
or nothing new arrived for {p['datain_quiet']:.0f} s (at most {p['datain_drain_max']:.0f} s). Then
VictoriaMetrics' `/api/v1/export` gives every `bench_exporter` sample (all series, whatever other
labels a tool adds) stamped before the count was read. Per exporter, summed over the 5:
**lost** = answered − distinct timestamps stored — a scrape the exporter served whose samples never
reached the receiver; **duplicated** = samples stored − distinct timestamps — one scrape stored twice
(VictoriaMetrics 1.79 without `-dedup.minScrapeInterval` keeps every copy; checked by importing one
sample twice); **gap** = the longest time without a stored scrape across the fault, the largest
over the 5 exporters (1 s when nothing is missing). A scrape never made (the collector was down)
is not lost, it is the gap; **missed** = scrape intervals from the collector's start to the count
minus distinct stored scrapes (startup included: Prometheus' discovery hands its targets over
about 5 s after it starts; 0 where a tool made one scrape more than whole intervals) counts both.
""")
    fa, ra, rd = p["failover_after"], p["restart_after"], p["receiver_down"]
    L.append("| collector | fault | scrapes answered | stored | **lost** | **duplicated** | gap across the fault | missed intervals |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for tool, tlabel in DATAIN_TOOLS:
        for fault, flabel in DATAIN_FAULTS:
            r = di["runs"].get(f"{tool}/{fault}")
            if not r:
                continue
            row = f"| {tlabel.format(fa=fa)} | {flabel.format(ra=ra, rd=rd)} |"
            if "error" in r:
                L.append(row + f" failed: {r['error']} | | | | | |")
                continue
            if r["gap_s"] is None:
                gap = ("**until restarted** (no partner)" if fault == "host-lost" and not tool.startswith("understudy")
                       else "not resumed within the run")
            else:
                gap = f"{r['gap_s']:.2f} s"
            L.append(row + f" {r['served']:,} | {r['stored']:,} | **{r['lost']:,}** | **{r['dup']:,}** | {gap} | {max(0, r['missed_intervals']):,} |")
    L.append("")
    sps = sorted({r["samples_per_scrape"] for r in di["runs"].values() if r.get("samples_per_scrape")})
    sps = f", {sps[0]}–{sps[-1]} samples per scrape" if sps else ""
    L.append(f"**The collector at 1 s scrapes of 5 node_exporters{sps}** (steady state, the {p['cpu_window']:.0f} s before each fault; "
             "one figure per scenario, in the order of the table above):\n")
    L.append("| collector | CPU seconds over the window | % of one core | RSS |")
    L.append("|---|---|---|---|")
    for tool, tlabel in DATAIN_TOOLS:
        us = [di["runs"][f"{tool}/{f}"]["usage"] for f, _ in DATAIN_FAULTS if "usage" in di["runs"].get(f"{tool}/{f}", {})]
        us = [u for u in us if u["cpu_s"] is not None]
        if not us:
            continue
        cpu = ", ".join(f"{u['cpu_s']:.2f}" for u in us)
        pc = ", ".join(f"{100 * u['cpu_s'] / u['window_s']:.1f} %" for u in us)
        rss = ", ".join(f"{u['rss_bytes'] / 2**20:.1f} MiB" for u in us)
        L.append(f"| {tlabel.format(fa=fa)} | {cpu} | {pc} | {rss} |")
    L.append("")
    cfg = {}
    for r in di["runs"].values():
        if r.get("conf"):
            cfg.setdefault(r["tool"], r["conf"])
    L.append("**What was set.** Everything else is each tool's default.\n")
    if "prometheus-agent" in cfg:
        L.append("Prometheus (`prometheus --enable-feature=agent --config.file=prometheus-agent.yml "
                 "--storage.agent.path=DIR --web.listen-address=10.211.1.11:9090`):\n\n```yaml\n" + cfg["prometheus-agent"].rstrip() + "\n```\n")
    if "vmagent" in cfg:
        L.append("vmagent (`vmagent -promscrape.config=vmagent.yml -remoteWrite.url=http://10.211.1.10:8428/api/v1/write "
                 "-remoteWrite.tmpDataPath=DIR -httpListenAddr=10.211.1.11:8429`):\n\n```yaml\n" + cfg["vmagent"].rstrip() + "\n```\n")
    if "understudy" in cfg:
        L.append("Understudy: servers `init --role server --set server.enroll_token=T --set "
                 "forward.remote_write=http://10.211.1.10:8428/api/v1/write` plus `failover.mode` primary/secondary and "
                 "`failover.peer`; agents p1 (10.211.1.11) and p2 (10.211.1.12) `init --role agent --server S1 --server S2 "
                 "--set agent.enroll_token=T`, every other setting at its default; then, on s1:\n\n```sh\n" + cfg["understudy"].rstrip() + "\n```\n")
    return L


def splice(text, start, end, body, after=None):
    """TEXT with BODY between the markers START and END: in place of what was there, else right
    after the marker AFTER, else at the end."""
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        a = text.index(start)
        b = text.index(end) + len(end)
        return text[:a] + block + text[b:]
    if after and after in text:
        a = text.index(after) + len(after)
        return text[:a] + "\n\n" + block + text[a:]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--benchmarks", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--notes", default=os.path.join(HERE, "notes.md"), help="hand-written findings, inserted after the tables")
    ap.add_argument("--datain-notes", default=os.path.join(HERE, "datain-notes.md"), help="hand-written findings of the datain run")
    ap.add_argument("--print-only", action="store_true")
    ap.add_argument("--part", choices=["all", "peers", "datain"], default="all",
                    help="rewrite only this part of BENCHMARKS.md (peers: issue 6's section, datain: issue 18's)")
    o = ap.parse_args()
    with open(o.results) as f:
        res = json.load(f)
    L = section(res)
    if os.path.exists(o.notes):
        with open(o.notes) as f:
            L.append(f.read().rstrip("\n") + "\n")
    L += configs()
    body = "\n".join(L).rstrip("\n") + "\n"
    print(body)
    dbody = None
    if "datain" in res and "finished_utc" in res["datain"]:
        D = datain_section(res["datain"])
        if os.path.exists(o.datain_notes):
            with open(o.datain_notes) as f:
                D.append(f.read().rstrip("\n") + "\n")
        dbody = "\n".join(D).rstrip("\n") + "\n"
        print(dbody)
    if o.print_only:
        return
    with open(o.benchmarks) as f:
        text = f.read()
    if o.part in ("all", "peers"):
        text = splice(text, "<!-- peers -->", "<!-- /peers -->", body)
    if dbody is not None and o.part in ("all", "datain"):
        text = splice(text, "<!-- peers-datain -->", "<!-- /peers-datain -->", dbody, after="<!-- /peers -->")
    with open(o.benchmarks, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
