//! MX-1: `GET /metrics` on the node's port, in the Prometheus text format (0.0.4), encoded by
//! `prometheus-client`. A scrape is cheap: gauges come from the engine's typed state (the core's
//! `status` snapshot and each check's AL-2 state, `Input::Metrics`), counters from what the store
//! counted in memory as it committed ([`crate::store::Tally`]); no table is scanned.
//!
//! Authorized by the read-only scrape token (`DATA_DIR/metrics.token`) or the admin token; the
//! scrape token authorizes nothing else (the admin API checks the admin token only).
//!
//! Adding a series: add a family to [`Families`] (its name without the `understudy_` prefix,
//! base units, counters without `_total`: the encoder adds it), register it in
//! [`Families::register`], and fill it in [`encode`] from the snapshot or the tally.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::oneshot;
use understudy_engine::CheckState;

use crate::mailbox::{CheckRun, CoreSender, Input, MetricsSnapshot};
use crate::store::{Store, Tally};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What `/metrics` answers without a valid token.
pub const UNAUTHORIZED: &str = "a valid scrape token is required: Authorization: Bearer <the \
     token in DATA_DIR/metrics.token (or the admin token)>\n";

/// Whether an `Authorization` header value carries the scrape token or the admin token.
pub(crate) fn authorized(metrics_token: &str, admin_token: &str, header: Option<&str>) -> bool {
    header.is_some_and(|v| {
        crate::admin_auth::token_matches(metrics_token, v)
            || crate::admin_auth::token_matches(admin_token, v)
    })
}

/// One scrape: the engine's snapshot from the core, the store's tally and the checks' last runs,
/// encoded.
pub(crate) async fn scrape(
    core: &CoreSender,
    store: &Mutex<Store>,
    check_runs: &Mutex<BTreeMap<String, CheckRun>>,
) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    core.send(Input::Metrics(tx))
        .map_err(|_| "the node is stopping".to_string())?;
    let snapshot = rx.await.map_err(|_| "the node is stopping".to_string())?;
    let tally = store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tally()
        .clone();
    let runs = check_runs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    encode(&snapshot, &tally, &runs).map_err(|e| format!("encoding the metrics: {e}"))
}

type Labels = Vec<(&'static str, String)>;
type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every series of MX-1, made afresh for each scrape (a pair or agent that is gone is gone from
/// the next scrape too).
#[derive(Default)]
struct Families {
    node_role: Family<Labels, Gauge>,
    server_state: Family<Labels, Gauge>,
    server_acting: Gauge,
    server_epoch: Gauge,
    pair_active: Family<Labels, Gauge>,
    pair_epoch: Family<Labels, Gauge>,
    pair_member_connected: Family<Labels, Gauge>,
    agent_connected: Family<Labels, Gauge>,
    agents: Family<Labels, Gauge>,
    link_state: Family<Labels, Gauge>,
    link_cached: Gauge,
    link_held: Gauge,
    records_stored: Counter,
    records_deleted: Counter,
    events: Family<Labels, Counter>,
    check_up: Family<Labels, Gauge>,
    check_last_run_up: Family<Labels, Gauge>,
    check_duration: Family<Labels, GaugeF>,
    check_value: Family<Labels, GaugeF>,
    check_last_run_time: Family<Labels, GaugeF>,
    deliveries: Family<Labels, Counter>,
    delivery_errors: Family<Labels, Counter>,
    deliveries_given_up: Family<Labels, Counter>,
    forward_lag_records: Gauge,
    forward_lag: GaugeF,
    forward_cursor: Gauge,
    forward_active: Gauge,
}

impl Families {
    /// Registers every series; the unlabelled gauges of a role only on a node with that role (a
    /// family without series is left out of the exposition by the encoder anyway).
    fn register(&self, r: &mut Registry, server: bool, agent_link: bool, forward: bool) {
        if forward {
            r.register(
                "forward_lag_records",
                "Records stored after the forwarding cursor, not yet acknowledged by the remote-write receiver (MX-2)",
                self.forward_lag_records.clone(),
            );
            r.register_with_unit(
                "forward_lag",
                "How old (by its time) the oldest record not yet forwarded is; 0 when none",
                Unit::Seconds,
                self.forward_lag.clone(),
            );
            r.register(
                "forward_cursor",
                "The store id of the last record the receiver acknowledged (the durable cursor)",
                self.forward_cursor.clone(),
            );
            r.register(
                "forward_active",
                "1 while this node forwards (it is the acting server)",
                self.forward_active.clone(),
            );
        }
        r.register(
            "node_role",
            "Whether this node has the role (server, agent); both is standalone",
            self.node_role.clone(),
        );
        r.register(
            "server_state",
            "This server's hot-standby state (HS-1): 1 for the state it is in",
            self.server_state.clone(),
        );
        if server {
            r.register(
                "server_acting",
                "1 when this server is the acting server of the site (ACTIVE, or failover.mode = off)",
                self.server_acting.clone(),
            );
            r.register(
                "server_epoch",
                "This server's hot-standby epoch (grows at every promotion)",
                self.server_epoch.clone(),
            );
        }
        r.register(
            "pair_active",
            "1 for the member of the pair that holds its duty (PR-2), 0 for the other",
            self.pair_active.clone(),
        );
        r.register(
            "pair_epoch",
            "The pair's epoch (grows at every handover)",
            self.pair_epoch.clone(),
        );
        r.register(
            "pair_member_connected",
            "1 when the pair's member is connected to this server",
            self.pair_member_connected.clone(),
        );
        r.register(
            "agent_connected",
            "1 when the accepted agent is connected to this server",
            self.agent_connected.clone(),
        );
        r.register(
            "agents",
            "Agents this server knows, by state (connected, disconnected, pending, rejected)",
            self.agents.clone(),
        );
        r.register(
            "link_state",
            "This node's agent link (AG-1..AG-6): 1 for the state it is in",
            self.link_state.clone(),
        );
        if agent_link {
            r.register(
                "link_cached_records",
                "Records in this agent's cache, not yet acknowledged by its home cluster (AG-2)",
                self.link_cached.clone(),
            );
            r.register(
                "link_held_records",
                "Cached records a standby server of another site acknowledged, waiting to go home",
                self.link_held.clone(),
            );
        }
        r.register(
            "records_stored",
            "Records this server stored since the process started (from agents and replicated)",
            self.records_stored.clone(),
        );
        r.register(
            "records_deleted",
            "Records deleted for server.retention since the process started",
            self.records_deleted.clone(),
        );
        r.register(
            "events",
            "Events stored since the process started, by code (UI-1)",
            self.events.clone(),
        );
        r.register(
            "check_up",
            "The check's state on the acting server (AL-2): 1 up, 0 down (absent while unknown)",
            self.check_up.clone(),
        );
        r.register(
            "check_last_run_up",
            "Whether the last run of the check stored here succeeded",
            self.check_last_run_up.clone(),
        );
        r.register_with_unit(
            "check_duration",
            "How long the last run of a tcp or http check stored here took",
            Unit::Seconds,
            self.check_duration.clone(),
        );
        r.register(
            "check_value",
            "The number the last run of a command check stored here printed",
            self.check_value.clone(),
        );
        r.register_with_unit(
            "check_last_run_timestamp",
            "When the last run of the check stored here ran (Unix time)",
            Unit::Seconds,
            self.check_last_run_time.clone(),
        );
        r.register(
            "alert_deliveries",
            "Alert deliveries a channel's receiver accepted (AL-5)",
            self.deliveries.clone(),
        );
        r.register(
            "alert_delivery_errors",
            "Alert delivery attempts that failed, by channel (each is retried until give_up_after)",
            self.delivery_errors.clone(),
        );
        r.register(
            "alert_deliveries_given_up",
            "Alert deliveries given up after alert.give_up_after (DELIVERY_FAILED), by channel",
            self.deliveries_given_up.clone(),
        );
    }
}

fn label(k: &'static str, v: impl Into<String>) -> Labels {
    vec![(k, v.into())]
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// The exposition of one snapshot (a pure function: tested without a node).
pub(crate) fn encode(
    snapshot: &MetricsSnapshot,
    tally: &Tally,
    runs: &BTreeMap<String, CheckRun>,
) -> Result<String, std::fmt::Error> {
    let status = &snapshot.status;
    let node = &status.node;
    let f = Families::default();
    let mut registry = Registry::with_prefix("understudy");
    registry.register(
        "node",
        "This node: its id, name and version",
        Info::new(vec![
            ("id", node.id.clone()),
            ("name", node.name.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ]),
    );
    f.register(
        &mut registry,
        node.roles.server,
        status.link.is_some(),
        status.forward.is_some(),
    );
    if let Some(fw) = &status.forward {
        f.forward_lag_records
            .set(i64::try_from(fw.lag_records).unwrap_or(i64::MAX));
        f.forward_lag.set(fw.lag_seconds);
        f.forward_cursor
            .set(i64::try_from(fw.cursor).unwrap_or(i64::MAX));
        f.forward_active.set(flag(fw.forwarding));
    }

    f.node_role
        .get_or_create(&label("role", "server"))
        .set(flag(node.roles.server));
    f.node_role
        .get_or_create(&label("role", "agent"))
        .set(flag(node.roles.agent));
    if node.roles.server {
        let state = node.failover.state.as_str();
        for s in ["starting", "active", "standby"]
            .into_iter()
            .chain(Some(state).filter(|s| !matches!(*s, "starting" | "active" | "standby")))
        {
            f.server_state
                .get_or_create(&label("state", s))
                .set(flag(s == state));
        }
        f.server_acting.set(flag(node.acting));
        f.server_epoch
            .set(i64::try_from(node.failover.epoch).unwrap_or(i64::MAX));
    }
    for p in &status.pairs {
        for (member, agent, connected) in [
            ("primary", &p.primary, p.primary_connected),
            ("secondary", &p.secondary, p.secondary_connected),
        ] {
            let labels = vec![
                ("pair", p.name.clone()),
                ("member", member.to_string()),
                ("agent", agent.clone()),
            ];
            f.pair_active
                .get_or_create(&labels)
                .set(flag(p.active == member));
            f.pair_member_connected
                .get_or_create(&labels)
                .set(flag(connected));
        }
        f.pair_epoch
            .get_or_create(&label("pair", p.name.clone()))
            .set(i64::try_from(p.epoch).unwrap_or(i64::MAX));
    }
    let mut by_state = BTreeMap::<&str, i64>::new();
    for s in ["connected", "disconnected", "pending", "rejected"] {
        by_state.insert(s, 0);
    }
    for a in &status.agents {
        *by_state.entry(a.state.as_str()).or_default() += 1;
        if matches!(a.state.as_str(), "connected" | "disconnected") {
            f.agent_connected
                .get_or_create(&label("agent", a.name.clone()))
                .set(flag(a.state == "connected"));
        }
    }
    if node.roles.server {
        for (state, n) in by_state {
            f.agents.get_or_create(&label("state", state)).set(n);
        }
    }
    if let Some(link) = &status.link {
        let state = link.state.as_str();
        for s in ["home", "standby", "staged", "blackout"].into_iter().chain(
            Some(state).filter(|s| !matches!(*s, "home" | "standby" | "staged" | "blackout")),
        ) {
            f.link_state
                .get_or_create(&label("state", s))
                .set(flag(s == state));
        }
        f.link_cached
            .set(i64::try_from(link.cached).unwrap_or(i64::MAX));
        f.link_held
            .set(i64::try_from(link.held).unwrap_or(i64::MAX));
    }
    f.records_stored.inc_by(tally.records_stored);
    f.records_deleted.inc_by(tally.records_deleted);
    for (code, n) in &tally.events {
        f.events
            .get_or_create(&label("code", code.clone()))
            .inc_by(*n);
    }
    for (check, state) in &snapshot.check_states {
        let up = match state {
            CheckState::Up => 1,
            CheckState::Down => 0,
            CheckState::Unknown => continue,
        };
        f.check_up
            .get_or_create(&label("check", check.clone()))
            .set(up);
    }
    for c in &status.checks {
        let Some(run) = runs.get(&c.name) else {
            continue;
        };
        let labels = label("check", c.name.clone());
        f.check_last_run_up.get_or_create(&labels).set(flag(run.up));
        f.check_last_run_time
            .get_or_create(&labels)
            .set(run.time_ms as f64 / 1000.0);
        match c.kind.as_str() {
            "command" => f.check_value.get_or_create(&labels).set(run.value),
            _ => f
                .check_duration
                .get_or_create(&labels)
                .set(run.value / 1000.0),
        };
    }
    for (channel, d) in &tally.deliveries {
        let labels = label("channel", channel.clone());
        f.deliveries.get_or_create(&labels).inc_by(d.sent);
        f.delivery_errors.get_or_create(&labels).inc_by(d.errors);
        f.deliveries_given_up
            .get_or_create(&labels)
            .inc_by(d.given_up);
    }
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> MetricsSnapshot {
        let status: understudy_api::Status = serde_json::from_value(serde_json::json!({
            "node": {"id": "n-1", "name": "s1", "listen": "127.0.0.1:1",
                     "roles": {"server": true, "agent": false},
                     "failover": {"mode": "primary", "state": "active", "epoch": 3,
                                  "standby": {"allowed": false, "reason": "no peer"}},
                     "acting": true},
            "pairs": [{"name": "web", "primary": "a1", "secondary": "a2", "active": "secondary",
                       "state": "failed-over", "epoch": 7, "switchback": "manual",
                       "failover_after": "1s", "hold_down": "1s",
                       "primary_connected": false, "secondary_connected": true,
                       "actions": {"force_failover": {"allowed": false, "reason": "x"},
                                   "revert": {"allowed": false, "reason": "y"}}}],
            "agents": [{"name": "a1", "id": "i1", "state": "disconnected", "pending": false},
                       {"name": "a2", "id": "i2", "state": "connected", "pending": false}],
            "checks": [{"name": "ping", "kind": "tcp", "target": "127.0.0.1:1", "pair": "web"}],
            "forward": {"remote_write": "http://127.0.0.1:1/api/v1/write", "cursor": 40,
                        "lag_records": 5, "lag_seconds": 1.5, "forwarding": true}
        }))
        .expect("a status");
        MetricsSnapshot {
            status,
            check_states: vec![("ping".into(), CheckState::Down)],
        }
    }

    #[test]
    fn mx1_the_exposition_names_the_engine_state() {
        let mut tally = Tally {
            records_stored: 12,
            ..Tally::default()
        };
        tally.events.insert("FAILOVER".into(), 2);
        tally.deliveries.insert(
            "hook".into(),
            crate::store::DeliveryTally {
                sent: 4,
                errors: 1,
                given_up: 0,
            },
        );
        let mut runs = BTreeMap::new();
        runs.insert(
            "ping".to_string(),
            CheckRun {
                up: false,
                value: 250.0,
                time_ms: 1_700_000_000_000,
            },
        );
        let text = encode(&snapshot(), &tally, &runs).expect("encoded");
        for line in [
            "understudy_server_state{state=\"active\"} 1",
            "understudy_server_state{state=\"standby\"} 0",
            "understudy_server_acting 1",
            "understudy_server_epoch 3",
            "understudy_pair_active{pair=\"web\",member=\"secondary\",agent=\"a2\"} 1",
            "understudy_pair_active{pair=\"web\",member=\"primary\",agent=\"a1\"} 0",
            "understudy_pair_epoch{pair=\"web\"} 7",
            "understudy_agent_connected{agent=\"a2\"} 1",
            "understudy_agents{state=\"connected\"} 1",
            "understudy_records_stored_total 12",
            "understudy_events_total{code=\"FAILOVER\"} 2",
            "understudy_check_up{check=\"ping\"} 0",
            "understudy_check_duration_seconds{check=\"ping\"} 0.25",
            "understudy_alert_deliveries_total{channel=\"hook\"} 4",
            "understudy_alert_delivery_errors_total{channel=\"hook\"} 1",
            "understudy_forward_lag_records 5",
            "understudy_forward_lag_seconds 1.5",
            "understudy_forward_cursor 40",
            "understudy_forward_active 1",
            "# TYPE understudy_node_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            text.contains("understudy_node_info{id=\"n-1\",name=\"s1\",version="),
            "{text}"
        );
        // A node without the agent role has no link series.
        assert!(!text.contains("understudy_link_"), "{text}");
    }
}
