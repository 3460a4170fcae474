//! The tray's model, rendered from the typed `GET /api/status` (UI-3): the overall state, every
//! menu label, which actions are enabled, and the admin request each menu click becomes.
//! Pure data in, data out — no GTK, no Tauri — so every rule here is unit-tested.
//! Architecture invariant: this decides nothing about failover. Whether Force failover / Revert
//! is enabled, and why not, is the engine's own guard as `status` reports it (`actions`).

use understudy_api::{AgentView, LinkView, NodeView, PairStatus, Request, RoleSpec, Status};

/// The at-a-glance state shown by the tray icon (UI-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overall {
    Normal,
    Degraded,
    Blackout,
    Stopped,
}

impl Overall {
    /// How bad, for the icon that shows several sites at once.
    fn rank(self) -> u8 {
        match self {
            Overall::Normal => 0,
            Overall::Stopped => 1,
            Overall::Degraded => 2,
            Overall::Blackout => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Normal => "normal",
            Overall::Degraded => "degraded",
            Overall::Blackout => "blackout",
            Overall::Stopped => "stopped",
        }
    }
}

/// Whether an action may be taken now, and the sentence that says why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub allowed: bool,
    pub reason: String,
}

impl Allowed {
    fn no(reason: impl Into<String>) -> Self {
        Allowed {
            allowed: false,
            reason: reason.into(),
        }
    }

    /// The engine's answer for an action (a pair's, or this server's standby), as is.
    fn from_action(a: &understudy_api::Action) -> Self {
        Allowed {
            allowed: a.allowed,
            reason: a.reason.clone().unwrap_or_default(),
        }
    }

    /// A menu item's text: its name, and when disabled the engine's sentence after it (a
    /// dbusmenu item has no tooltip, so the reason is where the operator looks).
    pub fn item_text(&self, name: &str) -> String {
        if self.allowed || self.reason.is_empty() {
            name.to_string()
        } else {
            format!("{name} — {}", self.reason)
        }
    }
}

/// One pair's lines in the menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairLine {
    pub name: String,
    /// "web: active secondary (web-2)", with the state appended when it is not normal.
    pub label: String,
    pub force_failover: Allowed,
    pub revert: Allowed,
}

/// Everything the tray menu shows. Built from a status (`from_status`) or, when the node is not
/// running, from a reason (`stopped`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuModel {
    pub overall: Overall,
    /// "srv-a: Server + Agent · PRIMARY · ACTIVE · epoch 3"
    pub header: String,
    /// "Link: home https://… · 0 cached"
    pub link: String,
    pub pairs: Vec<PairLine>,
    /// "Agents: 3 connected, 1 disconnected, 1 pending"
    pub agents: String,
    /// Names of agents waiting to be accepted (AG-9), one "Accept <name>" item each.
    pub pending: Vec<String>,
    pub server_role: bool,
    pub agent_role: bool,
    /// off | primary | secondary
    pub failover_mode: String,
    /// "Set this server to standby" (HS-5): the engine's dry run of `ha standby`
    /// (`node.failover.standby`), as is.
    pub standby: Allowed,
    /// "3 alert deliveries failing" while the outbox has deliveries whose last attempt failed
    /// (`status.alerts.failing`, AL-5), else `None` (no item).
    pub alerts_failing: Option<String>,
    /// False when the node is not running: every action item is then disabled.
    pub running: bool,
    /// UI-5: the remote sites followed, each its own section after the embedded node's.
    pub sites: Vec<SiteSection>,
}

/// What decides the menu's structure: when this changes the menu is rebuilt, otherwise its items
/// are updated in place.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    pub pairs: Vec<String>,
    pub pending: Vec<String>,
    pub alerts_failing: bool,
    /// Per remote site: its name, its pairs and its pending agents.
    pub sites: Vec<(String, Vec<String>, Vec<String>)>,
}

impl MenuModel {
    /// The model while the node is not running (starting, failed to start, or stopping).
    pub fn stopped(reason: &str) -> MenuModel {
        MenuModel {
            overall: Overall::Stopped,
            header: format!("Node stopped: {reason}"),
            link: "Link: —".into(),
            pairs: Vec::new(),
            agents: "Agents: —".into(),
            pending: Vec::new(),
            server_role: false,
            agent_role: false,
            failover_mode: "off".into(),
            standby: Allowed::no("the node is not running"),
            alerts_failing: None,
            running: false,
            sites: Vec::new(),
        }
    }

    /// The node section while "Run a node on this computer" is off (UI-5).
    pub fn no_node() -> MenuModel {
        MenuModel {
            header: "No node on this computer".into(),
            ..MenuModel::stopped(crate::host::NO_NODE)
        }
    }

    pub fn from_status(status: &Status) -> MenuModel {
        let node = &status.node;
        let failover_mode = node.failover.mode.to_lowercase();
        let pairs: Vec<PairLine> = status.pairs.iter().map(pair_line).collect();
        let pending: Vec<String> = status
            .agents
            .iter()
            .filter(|a| is_pending(a))
            .map(|a| a.name.clone())
            .collect();

        MenuModel {
            overall: overall_state(status),
            header: header(node),
            link: link_line(status.link.as_ref()),
            pairs,
            agents: agents_summary(&status.agents),
            pending,
            server_role: node.roles.server,
            agent_role: node.roles.agent,
            failover_mode,
            standby: Allowed::from_action(&node.failover.standby),
            alerts_failing: alerts_failing(status.alerts.failing),
            running: true,
            sites: Vec::new(),
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            pairs: self.pairs.iter().map(|p| p.name.clone()).collect(),
            pending: self.pending.clone(),
            alerts_failing: self.alerts_failing.is_some(),
            sites: self
                .sites
                .iter()
                .map(|s| {
                    (
                        s.site.clone(),
                        s.pairs.iter().map(|p| p.name.clone()).collect(),
                        s.pending.clone(),
                    )
                })
                .collect(),
        }
    }

    /// The icon's state: the worst of the embedded node's and every site's. A desktop without
    /// an embedded node (stopped) that follows sites shows theirs.
    pub fn icon_state(&self) -> Overall {
        let sites = self.sites.iter().map(|s| s.overall);
        if self.overall == Overall::Stopped && !self.sites.is_empty() {
            return sites.max_by_key(|o| o.rank()).unwrap_or(Overall::Stopped);
        }
        sites
            .chain([self.overall])
            .max_by_key(|o| o.rank())
            .unwrap_or(self.overall)
    }
}

// ------------------------------------------------------------------------------------------------
// UI-5: remote sites.

/// What the tray knows of one followed site: its task's state, shown as is.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteState {
    /// No answer yet since the site was joined or the app started.
    Connecting,
    /// `server` (its name) answered with `status`.
    Following { server: String, status: Box<Status> },
    /// No server of the site answered, since `since` ("HH:MM", local time).
    Unreachable { since: String, reason: String },
    /// The site refused the token (revoked, or the permission was taken away): nothing more is
    /// asked until the site is joined again.
    Revoked { reason: String },
}

/// One remote site's lines in the menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSection {
    pub site: String,
    /// "Site s1 — following s1", "Site s1 — unreachable since 14:02", "Site s1 — access revoked".
    pub header: String,
    /// "s1 ACTIVE · s2 STANDBY" (the followed server first), or why there is nothing to show.
    pub servers: String,
    pub pairs: Vec<PairLine>,
    pub agents: String,
    pub pending: Vec<String>,
    pub overall: Overall,
    /// Whether the site answers: its action items are disabled otherwise.
    pub running: bool,
}

impl SiteSection {
    pub fn new(site: &str, label: &str, state: &SiteState) -> SiteSection {
        let label = if label.is_empty() { site } else { label };
        let mut section = SiteSection {
            site: site.to_string(),
            header: format!("Site {label} — connecting"),
            servers: "Servers: —".into(),
            pairs: Vec::new(),
            agents: "Agents: —".into(),
            pending: Vec::new(),
            overall: Overall::Degraded,
            running: false,
        };
        match state {
            SiteState::Connecting => {}
            SiteState::Unreachable { since, reason } => {
                section.header = format!("Site {label} — unreachable since {since}");
                section.servers = format!("Servers: {reason}");
                section.overall = Overall::Blackout;
            }
            SiteState::Revoked { reason } => {
                section.header = format!("Site {label} — access revoked");
                section.servers = format!("Servers: {reason} (join the site again)");
            }
            SiteState::Following { server, status } => {
                section.header = format!("Site {label} — following {server}");
                section.servers = servers_line(&status.node);
                section.pairs = status.pairs.iter().map(pair_line).collect();
                section.agents = agents_summary(&status.agents);
                section.pending = status
                    .agents
                    .iter()
                    .filter(|a| is_pending(a))
                    .map(|a| a.name.clone())
                    .collect();
                section.overall = overall_state(status);
                section.running = true;
            }
        }
        section
    }
}

/// "Servers: s1 ACTIVE · peer https://… STANDBY": the followed server and its peer as it sees it.
fn servers_line(node: &NodeView) -> String {
    let f = &node.failover;
    let mut text = format!("Servers: {} {}", node.name, f.state.to_uppercase());
    if let Some(peer) = f.peer.as_deref().filter(|p| !p.is_empty()) {
        let peer = peer.split('#').next().unwrap_or(peer);
        let state = f.peer_state.as_deref().unwrap_or("unknown");
        text.push_str(&format!(" · peer {peer} {}", state.to_uppercase()));
    }
    text
}

/// Overall state (UI-3), in this order: blackout if the link or any pair is in blackout;
/// degraded if the link is not home, the agent cannot write its checks' results to its cache
/// (`link.cache_error`, e.g. a full disk), any pair is degraded or running on its secondary, or
/// any agent is disconnected; else normal. `Stopped` comes from `MenuModel::stopped`.
pub fn overall_state(status: &Status) -> Overall {
    let link_state = status.link.as_ref().map(|l| l.state.to_lowercase());
    if link_state.as_deref() == Some("blackout") || status.pairs.iter().any(pair_is_blackout) {
        return Overall::Blackout;
    }
    let link_degraded = matches!(link_state.as_deref(), Some(s) if s != "home")
        || status
            .link
            .as_ref()
            .is_some_and(|l| l.cache_error.as_deref().is_some_and(|e| !e.is_empty()));
    let pair_degraded = status.pairs.iter().any(|p| {
        !p.state.eq_ignore_ascii_case("normal")
            || p.active == "secondary"
            || p.degraded.as_deref().is_some_and(|r| !r.is_empty())
    });
    let agent_down = status
        .agents
        .iter()
        .any(|a| a.state.eq_ignore_ascii_case("disconnected"));
    if link_degraded || pair_degraded || agent_down {
        Overall::Degraded
    } else {
        Overall::Normal
    }
}

fn pair_is_blackout(p: &PairStatus) -> bool {
    p.state.eq_ignore_ascii_case("blackout")
}

/// "srv-a: Server + Agent · PRIMARY · ACTIVE · epoch 3"; "srv-a: Standalone · no hot standby".
fn header(node: &NodeView) -> String {
    let name = if node.name.is_empty() {
        "this node"
    } else {
        node.name.as_str()
    };
    let roles = match (node.roles.server, node.roles.agent) {
        (true, true) => "Standalone (server + agent)",
        (true, false) => "Server",
        (false, true) => "Agent",
        (false, false) => "No role",
    };
    let failover = &node.failover;
    if !node.roles.server || failover.mode.eq_ignore_ascii_case("off") {
        return format!("{name}: {roles}");
    }
    let mut text = format!("{name}: {roles} · {}", failover.mode.to_uppercase());
    if !failover.state.is_empty() {
        text.push_str(&format!(" · {}", failover.state.to_uppercase()));
    }
    text.push_str(&format!(" · epoch {}", failover.epoch));
    text
}

fn link_line(link: Option<&LinkView>) -> String {
    let Some(link) = link else {
        return "Link: none (no agent role)".into();
    };
    let mut text = format!("Link: {}", link.state);
    if let Some(server) = link.server.as_deref().filter(|s| !s.is_empty()) {
        text.push_str(&format!(" {server}"));
    }
    text.push_str(&format!(" · {} cached", link.cached));
    if let Some(error) = link.cache_error.as_deref().filter(|e| !e.is_empty()) {
        text.push_str(&format!(" · {error}"));
    }
    text
}

fn pair_line(p: &PairStatus) -> PairLine {
    let name = &p.name;
    let mut label = match p.active.as_str() {
        "primary" => format!("{name}: active primary ({})", p.primary),
        "secondary" => format!("{name}: active secondary ({})", p.secondary),
        _ => format!("{name}: no active member"),
    };
    if !p.state.is_empty() && !p.state.eq_ignore_ascii_case("normal") {
        label.push_str(&format!(" · {}", p.state));
    } else if p.degraded.as_deref().is_some_and(|r| !r.is_empty()) {
        label.push_str(" · degraded");
    }
    PairLine {
        // PR-5: the engine's guard, as `status` dry-ran it; the tray adds nothing.
        force_failover: Allowed::from_action(&p.actions.force_failover),
        revert: Allowed::from_action(&p.actions.revert),
        name: name.clone(),
        label,
    }
}

fn is_pending(a: &AgentView) -> bool {
    a.pending || a.state == "pending"
}

/// The tray's item for the outbox (AL-5, AL-7), as the node counts it.
fn alerts_failing(failing: u64) -> Option<String> {
    match failing {
        0 => None,
        1 => Some("1 alert delivery failing".into()),
        n => Some(format!("{n} alert deliveries failing")),
    }
}

fn agents_summary(agents: &[AgentView]) -> String {
    if agents.is_empty() {
        return "Agents: none".into();
    }
    let count = |want: &str| {
        agents
            .iter()
            .filter(|a| !is_pending(a) && a.state.eq_ignore_ascii_case(want))
            .count()
    };
    let pending = agents.iter().filter(|a| is_pending(a)).count();
    let mut parts = vec![format!("{} connected", count("connected"))];
    let disconnected = count("disconnected");
    if disconnected > 0 {
        parts.push(format!("{disconnected} disconnected"));
    }
    if pending > 0 {
        parts.push(format!("{pending} pending"));
    }
    format!("Agents: {}", parts.join(", "))
}

// ------------------------------------------------------------------------------------------------
// Menu ids and the admin request each click becomes.

/// A click in the tray menu, decoded from the item's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    ForceFailover(String),
    Revert(String),
    Accept(String),
    ToggleServer,
    ToggleAgent,
    Failover(String),
    Standby,
    GenerateCertificate,
    ToggleMute,
    ToggleAutostart,
    /// "Run a node on this computer" (UI-5), the app's own setting.
    ToggleNode,
    OpenWindow,
    Quit,
    /// UI-5: an action on a remote site's pair or agent (Force failover, Revert, Accept).
    Site {
        site: String,
        action: Box<Action>,
    },
}

/// Separates a site's name from the action in a site item's id (names carry no control
/// characters).
const SITE_SEP: char = '\u{1f}';

impl Action {
    /// The menu item id for this action; `from_id` is its inverse.
    pub fn id(&self) -> String {
        match self {
            Action::ForceFailover(p) => format!("pair:force-failover:{p}"),
            Action::Revert(p) => format!("pair:revert:{p}"),
            Action::Accept(a) => format!("agent:accept:{a}"),
            Action::ToggleServer => "role:server".into(),
            Action::ToggleAgent => "role:agent".into(),
            Action::Failover(mode) => format!("role:failover:{mode}"),
            Action::Standby => "ha:standby".into(),
            Action::GenerateCertificate => "cert:generate".into(),
            Action::ToggleMute => "notifications:mute".into(),
            Action::ToggleAutostart => "app:autostart".into(),
            Action::ToggleNode => "app:run-node".into(),
            Action::OpenWindow => "app:open-window".into(),
            Action::Quit => "app:quit".into(),
            Action::Site { site, action } => format!("site:{site}{SITE_SEP}{}", action.id()),
        }
    }

    /// A site's action: Force failover, Revert and Accept only.
    pub fn on_site(site: &str, action: Action) -> Action {
        Action::Site {
            site: site.to_string(),
            action: Box::new(action),
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
        if let Some(rest) = id.strip_prefix("site:") {
            let (site, inner) = rest.split_once(SITE_SEP)?;
            return match Action::from_id(inner)? {
                a @ (Action::ForceFailover(_) | Action::Revert(_) | Action::Accept(_)) => {
                    Some(Action::on_site(site, a))
                }
                _ => None,
            };
        }
        if let Some(p) = id.strip_prefix("pair:force-failover:") {
            return Some(Action::ForceFailover(p.into()));
        }
        if let Some(p) = id.strip_prefix("pair:revert:") {
            return Some(Action::Revert(p.into()));
        }
        if let Some(a) = id.strip_prefix("agent:accept:") {
            return Some(Action::Accept(a.into()));
        }
        if let Some(m) = id.strip_prefix("role:failover:") {
            return Some(Action::Failover(m.into()));
        }
        Some(match id {
            "role:server" => Action::ToggleServer,
            "role:agent" => Action::ToggleAgent,
            "ha:standby" => Action::Standby,
            "cert:generate" => Action::GenerateCertificate,
            "notifications:mute" => Action::ToggleMute,
            "app:autostart" => Action::ToggleAutostart,
            "app:run-node" => Action::ToggleNode,
            "app:open-window" => Action::OpenWindow,
            "app:quit" => Action::Quit,
            _ => return None,
        })
    }

    /// The admin request for actions that go to the node; `None` for the app's own actions
    /// (mute, autostart, window, quit). Toggles are computed from `model`, the state last shown,
    /// so a click always asks for the opposite of what the user saw.
    pub fn request(&self, model: &MenuModel) -> Option<Request> {
        Some(match self {
            Action::ForceFailover(p) => Request::ForceFailover { name: p.clone() },
            Action::Revert(p) => Request::Revert { name: p.clone() },
            Action::Accept(a) => Request::AcceptAgent { name: a.clone() },
            Action::ToggleServer => Request::SetRole(RoleSpec {
                server: Some(!model.server_role),
                ..RoleSpec::default()
            }),
            Action::ToggleAgent => Request::SetRole(RoleSpec {
                agent: Some(!model.agent_role),
                ..RoleSpec::default()
            }),
            Action::Failover(mode) => Request::SetRole(RoleSpec {
                failover: Some(mode.clone()),
                ..RoleSpec::default()
            }),
            Action::Standby => Request::HaStandby,
            // Empty lists: the node binds the certificate to its current addresses (CT-1).
            Action::GenerateCertificate => Request::GenerateCert(Default::default()),
            Action::ToggleMute
            | Action::ToggleAutostart
            | Action::ToggleNode
            | Action::OpenWindow
            | Action::Quit => return None,
            Action::Site { action, .. } => return action.request(model),
        })
    }

    /// How the action is named in an error notification ("Could not force failover web: …").
    pub fn describe(&self) -> String {
        match self {
            Action::ForceFailover(p) => format!("force failover of {p}"),
            Action::Revert(p) => format!("revert {p}"),
            Action::Accept(a) => format!("accept {a}"),
            Action::ToggleServer => "change the server role".into(),
            Action::ToggleAgent => "change the agent role".into(),
            Action::Failover(m) => format!("set failover to {m}"),
            Action::Standby => "set this server to standby".into(),
            Action::GenerateCertificate => "generate a certificate".into(),
            Action::ToggleMute => "change notifications".into(),
            Action::ToggleAutostart => "change start at login".into(),
            Action::ToggleNode => "change running a node on this computer".into(),
            Action::OpenWindow => "open the window".into(),
            Action::Quit => "quit".into(),
            Action::Site { site, action } => format!("{} on site {site}", action.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use understudy_engine::{
        FailbackPolicy, FailoverMode, HotStandby, HotStandbyConfig, Member, Pair, PairConfig,
        PairEpoch, PairState, PeerStatus, SwitchbackPolicy,
    };

    use super::*;

    /// A status document read as the node's typed answer; pairs get the fields every node sends.
    fn typed(mut v: Value) -> Status {
        if let Some(pairs) = v["pairs"].as_array_mut() {
            for p in pairs {
                for (k, d) in [
                    ("switchback", json!("auto")),
                    ("failover_after", json!("10s")),
                    ("hold_down", json!("60s")),
                    ("degraded", Value::Null),
                ] {
                    if p.get(k).is_none() {
                        p[k] = d;
                    }
                }
                if p.get("actions").is_none() {
                    let allowed = json!({ "allowed": true, "reason": null });
                    p["actions"] = json!({ "force_failover": allowed, "revert": allowed });
                }
            }
        }
        for k in ["pairs", "agents"] {
            if v.get(k).is_none() {
                v[k] = json!([]);
            }
        }
        if v.get("link").is_none() {
            v["link"] = Value::Null;
        }
        if v["node"]["failover"].get("standby").is_none() {
            v["node"]["failover"]["standby"] = json!({ "allowed": true, "reason": null });
        }
        serde_json::from_value(v).expect("a status")
    }

    /// The same site as the window's test fixture (ui/test/fixtures.ts).
    fn status() -> Value {
        json!({
            "node": {
                "id": "7b0c6a1e", "name": "srv-a",
                "roles": { "server": true, "agent": true },
                "failover": { "mode": "primary", "state": "active", "epoch": 3, "peer": "https://127.0.0.2:7443" },
                "listen": "127.0.0.1:7443", "cert": { "fingerprint": "AA:BB" }
            },
            "link": { "server": "https://127.0.0.1:7443", "state": "home", "cached": 0 },
            "pairs": [
                { "name": "web", "primary": "web-1", "secondary": "web-2", "active": "primary", "state": "normal", "epoch": 1, "degraded": null },
                { "name": "db", "primary": "db-1", "secondary": "db-2", "active": "secondary", "state": "degraded", "epoch": 4, "degraded": "on_activate hook timed out" }
            ],
            "agents": [
                { "name": "web-1", "state": "connected", "server": "s", "pending": false },
                { "name": "web-2", "state": "connected", "server": "s", "pending": false },
                { "name": "db-1", "state": "disconnected", "server": null, "pending": false },
                { "name": "db-2", "state": "connected", "server": "s", "pending": false },
                { "name": "new-box", "state": "pending", "server": "s", "pending": true }
            ]
        })
    }

    fn healthy() -> Value {
        let mut s = status();
        s["pairs"] = json!([{ "name": "web", "primary": "web-1", "secondary": "web-2", "active": "primary", "state": "normal", "epoch": 1 }]);
        s["agents"] = json!([
            { "name": "web-1", "state": "connected", "pending": false },
            { "name": "web-2", "state": "connected", "pending": false }
        ]);
        s
    }

    #[test]
    fn header_names_roles_failover_state_and_epoch() {
        let m = MenuModel::from_status(&typed(status().clone()));
        assert_eq!(
            m.header,
            "srv-a: Standalone (server + agent) · PRIMARY · ACTIVE · epoch 3"
        );
        let mut s = status();
        s["node"]["roles"]["agent"] = json!(false);
        assert_eq!(
            MenuModel::from_status(&typed(s.clone())).header,
            "srv-a: Server · PRIMARY · ACTIVE · epoch 3"
        );
        s["node"]["failover"]["mode"] = json!("off");
        assert_eq!(
            MenuModel::from_status(&typed(s.clone())).header,
            "srv-a: Server"
        );
    }

    #[test]
    fn link_line_and_agents_summary() {
        let m = MenuModel::from_status(&typed(status().clone()));
        assert_eq!(m.link, "Link: home https://127.0.0.1:7443 · 0 cached");
        assert_eq!(m.agents, "Agents: 3 connected, 1 disconnected, 1 pending");
        assert_eq!(m.pending, vec!["new-box".to_string()]);
        let mut s = status();
        s["link"] = Value::Null;
        s["agents"] = json!([]);
        let m = MenuModel::from_status(&typed(s.clone()));
        assert_eq!(m.link, "Link: none (no agent role)");
        assert_eq!(m.agents, "Agents: none");
    }

    #[test]
    fn pair_labels_show_the_active_member_and_a_state_that_is_not_normal() {
        let m = MenuModel::from_status(&typed(status().clone()));
        assert_eq!(m.pairs[0].label, "web: active primary (web-1)");
        assert_eq!(m.pairs[1].label, "db: active secondary (db-2) · degraded");
        let mut s = status();
        s["pairs"][0]["active"] = json!("none");
        s["pairs"][0]["state"] = json!("blackout");
        assert_eq!(
            MenuModel::from_status(&typed(s.clone())).pairs[0].label,
            "web: no active member · blackout"
        );
    }

    /// A pair `web` (primary p, secondary s) in each state where the engine's guard refuses an
    /// operator action (PR-5), with the action refused: the four causes.
    fn refusing_pairs() -> Vec<(Pair, Instant, &'static str)> {
        let now = Instant::now();
        let config = PairConfig {
            name: "web".into(),
            primary: "p".into(),
            secondary: "s".into(),
            failover_after: Duration::from_secs(10),
            switchback: SwitchbackPolicy::Manual,
        };
        let on_primary = PairState {
            epoch: 1,
            active: Some(Member::Primary),
            held: false,
            ..Default::default()
        };
        let seen = |pair: &mut Pair, agent: &str, active: bool| {
            let epoch = PairEpoch { server: 1, pair: 1 };
            pair.handle_member_seen(now, agent, Some((epoch, active)));
        };
        // 1. Not the acting server.
        let not_acting = Pair::new(config.clone(), on_primary.clone());
        // 2. A handover already under way.
        let mut handing_over = Pair::new(config.clone(), on_primary.clone());
        handing_over.handle_supervising(now, true, 1);
        seen(&mut handing_over, "p", true);
        seen(&mut handing_over, "s", false);
        handing_over
            .force_failover(now)
            .expect("force failover starts");
        // 3. The target already active.
        let mut already = Pair::new(config.clone(), on_primary.clone());
        already.handle_supervising(now, true, 1);
        seen(&mut already, "p", true);
        seen(&mut already, "s", false);
        // 4. The target not connected.
        let mut alone = Pair::new(config, on_primary);
        alone.handle_supervising(now, true, 1);
        seen(&mut alone, "p", true);
        vec![
            (not_acting, now, "force_failover"),
            (handing_over, now, "revert"),
            (already, now, "revert"),
            (alone, now, "force_failover"),
        ]
    }

    /// PR-5, for each of the four causes the engine's guard refuses an action: the tray item is
    /// disabled and says exactly the sentence the engine refuses with.
    #[test]
    fn pr5_tray_items_are_disabled_with_exactly_the_engines_refusal() {
        let mut sentences = Vec::new();
        for (mut pair, now, action) in refusing_pairs() {
            let mut s = status();
            s["pairs"] =
                json!([serde_json::to_value(PairStatus::from_engine(&pair, now)).unwrap()]);
            let m = MenuModel::from_status(&typed(s));
            let (item, refusal) = match action {
                "force_failover" => (&m.pairs[0].force_failover, pair.force_failover(now)),
                _ => (&m.pairs[0].revert, pair.revert(now)),
            };
            let refusal = refusal.expect_err("the engine refuses");
            assert!(!item.allowed, "{refusal}");
            assert_eq!(item.reason, refusal);
            assert_eq!(
                item.item_text("Revert web"),
                format!("Revert web — {refusal}")
            );
            sentences.push(refusal);
        }
        assert_eq!(
            sentences,
            [
                "this server is not the acting server of the site",
                "a handover of web is already under way",
                "web is already active on the primary p",
                "the secondary s is not connected",
            ]
        );
    }

    #[test]
    fn an_allowed_action_is_enabled_and_named_plainly() {
        let m = MenuModel::from_status(&typed(status()));
        assert!(m.pairs[0].force_failover.allowed);
        assert_eq!(
            m.pairs[0].force_failover.item_text("Force failover web"),
            "Force failover web"
        );
    }

    /// A hot-standby server in each state the engine's HS-5 guard answers for: mode off, not
    /// the acting server, the peer not answering as STANDBY, and allowed.
    fn standby_cases() -> Vec<(HotStandby, Instant)> {
        let start = Instant::now();
        let config = |mode| HotStandbyConfig {
            name: "a".into(),
            mode,
            sync_interval: Duration::from_secs(5),
            failover_timeout: Duration::from_secs(15),
            failback: FailbackPolicy::Manual,
            crash_confirm: 3,
        };
        let peer = |state: &str, epoch| PeerStatus {
            name: "b".into(),
            mode: FailoverMode::Secondary,
            state: state.into(),
            epoch,
            site_version: 0,
        };
        let off = HotStandby::new(config(FailoverMode::Off), 1, start);
        let mut standby = HotStandby::new(config(FailoverMode::Secondary), 1, start);
        standby.handle_peer_status(start, peer("active", 2));
        let active = || {
            let mut ha = HotStandby::new(config(FailoverMode::Primary), 1, start);
            ha.handle_peer_status(start, peer("standby", 0));
            ha
        };
        // The peer last answered longer than failover_timeout ago.
        let later = start + Duration::from_secs(60);
        vec![
            (off, start),
            (standby, start),
            (active(), later),
            (active(), start),
        ]
    }

    #[test]
    fn hs5_the_standby_item_is_disabled_with_exactly_the_engines_refusal() {
        let mut sentences = Vec::new();
        for (mut ha, now) in standby_cases() {
            let mut s = status();
            let action = understudy_api::Action::from(ha.can_hand_over(now));
            s["node"]["failover"]["standby"] = serde_json::to_value(action).unwrap();
            let item = MenuModel::from_status(&typed(s)).standby;
            match ha.operator_standby(now) {
                Ok(_) => {
                    assert!(item.allowed);
                    assert_eq!(
                        item.item_text("Set this server to standby"),
                        "Set this server to standby"
                    );
                }
                Err(refusal) => {
                    assert!(!item.allowed, "{refusal}");
                    assert_eq!(item.reason, refusal);
                    assert_eq!(
                        item.item_text("Set this server to standby"),
                        format!("Set this server to standby — {refusal}")
                    );
                    sentences.push(refusal);
                }
            }
        }
        assert_eq!(
            sentences,
            [
                "failover mode is off: there is no peer to hand the role to",
                "this server is already STANDBY",
                "the peer is not answering as STANDBY: stepping down would leave no acting server",
            ]
        );
        assert_eq!(
            MenuModel::stopped("starting").standby,
            Allowed::no("the node is not running")
        );
    }

    #[test]
    fn overall_state_in_order_blackout_degraded_normal() {
        assert_eq!(overall_state(&typed(healthy().clone())), Overall::Normal);
        assert_eq!(overall_state(&typed(status().clone())), Overall::Degraded);

        let mut s = healthy();
        s["link"]["state"] = json!("blackout");
        assert_eq!(overall_state(&typed(s.clone())), Overall::Blackout);

        let mut s = healthy();
        s["pairs"][0]["state"] = json!("blackout");
        assert_eq!(overall_state(&typed(s.clone())), Overall::Blackout);

        for link in ["staged", "connecting", "standby"] {
            let mut s = healthy();
            s["link"]["state"] = json!(link);
            assert_eq!(
                overall_state(&typed(s.clone())),
                Overall::Degraded,
                "link {link}"
            );
        }

        let mut s = healthy();
        s["pairs"][0]["active"] = json!("secondary");
        assert_eq!(
            overall_state(&typed(s.clone())),
            Overall::Degraded,
            "failed over"
        );

        // The agent's checks cannot be written to its cache (a full disk): degraded, and the
        // link's menu line says why.
        let mut s = healthy();
        let error = "check results not written since 2026-12-02T01:00:00Z: disk full";
        s["link"]["cache_error"] = json!(error);
        assert_eq!(
            overall_state(&typed(s.clone())),
            Overall::Degraded,
            "cache not written"
        );
        assert!(link_line(typed(s).link.as_ref()).ends_with(error));

        let mut s = healthy();
        s["agents"][0]["state"] = json!("disconnected");
        assert_eq!(overall_state(&typed(s.clone())), Overall::Degraded);

        let mut s = healthy();
        s["link"] = Value::Null; // a server-only node has no link
        assert_eq!(overall_state(&typed(s.clone())), Overall::Normal);

        assert_eq!(MenuModel::stopped("starting").overall, Overall::Stopped);
        assert!(!MenuModel::stopped("starting").running);
    }

    #[test]
    fn shape_changes_only_with_pairs_or_pending_agents() {
        let a = MenuModel::from_status(&typed(status().clone()));
        let mut s = status();
        s["pairs"][0]["active"] = json!("secondary");
        s["link"]["cached"] = json!(12);
        assert_eq!(
            MenuModel::from_status(&typed(s.clone())).shape(),
            a.shape(),
            "labels change, shape does not"
        );
        s["agents"][4]["pending"] = json!(false);
        s["agents"][4]["state"] = json!("connected");
        assert_ne!(MenuModel::from_status(&typed(s.clone())).shape(), a.shape());
    }

    #[test]
    fn ui5_without_a_node_the_node_section_says_so() {
        let m = MenuModel::no_node();
        assert_eq!(m.header, "No node on this computer");
        assert!(!m.running);
        assert_eq!(m.overall, Overall::Stopped);
    }

    #[test]
    fn menu_ids_round_trip_and_become_admin_requests() {
        let m = MenuModel::from_status(&typed(status().clone()));
        for a in [
            Action::ForceFailover("web".into()),
            Action::Revert("db:x".into()),
            Action::Accept("new-box".into()),
            Action::ToggleServer,
            Action::ToggleAgent,
            Action::Failover("secondary".into()),
            Action::Standby,
            Action::GenerateCertificate,
            Action::ToggleMute,
            Action::ToggleAutostart,
            Action::ToggleNode,
            Action::OpenWindow,
            Action::Quit,
        ] {
            assert_eq!(Action::from_id(&a.id()), Some(a.clone()));
        }
        assert_eq!(Action::from_id("nonsense"), None);
        assert_eq!(
            Action::ToggleNode.request(&m),
            None,
            "the app's own setting"
        );

        assert_eq!(
            Action::ForceFailover("web".into()).request(&m),
            Some(Request::ForceFailover { name: "web".into() })
        );
        assert_eq!(
            Action::Accept("new box".into())
                .request(&m)
                .map(|r| r.to_http().path),
            Some("/api/agents/new%20box/accept".into())
        );
        // The toggle asks for the opposite of what is shown.
        assert_eq!(
            Action::ToggleServer.request(&m),
            Some(Request::SetRole(RoleSpec {
                server: Some(false),
                ..RoleSpec::default()
            }))
        );
        assert_eq!(Action::Quit.request(&m), None);
    }

    #[test]
    fn al7_the_tray_shows_the_failing_deliveries_the_node_counts() {
        let m = MenuModel::from_status(&typed(status()));
        assert_eq!(m.alerts_failing, None);
        let mut v = status();
        v["alerts"] = json!({ "pending": 5, "failing": 3, "failed": 1 });
        let m = MenuModel::from_status(&typed(v.clone()));
        assert_eq!(
            m.alerts_failing.as_deref(),
            Some("3 alert deliveries failing")
        );
        assert!(
            m.shape().alerts_failing,
            "the item appearing rebuilds the menu"
        );
        v["alerts"]["failing"] = json!(1);
        let m = MenuModel::from_status(&typed(v));
        assert_eq!(
            m.alerts_failing.as_deref(),
            Some("1 alert delivery failing")
        );
        assert_eq!(MenuModel::stopped("x").alerts_failing, None);
    }

    fn following(v: Value) -> SiteState {
        SiteState::Following {
            server: "srv-a".into(),
            status: Box::new(typed(v)),
        }
    }

    #[test]
    fn ui5_a_followed_site_shows_its_servers_pairs_actions_and_pending_agents() {
        let mut v = status();
        v["node"]["failover"]["peer_state"] = json!("standby");
        v["pairs"][0]["actions"] = json!({
            "force_failover": { "allowed": true, "reason": null },
            "revert": { "allowed": false, "reason": "web already runs on its primary" }
        });
        let s = SiteSection::new("srv-a", "Lab", &following(v.clone()));
        assert_eq!(s.header, "Site Lab — following srv-a");
        assert_eq!(
            s.servers,
            "Servers: srv-a ACTIVE · peer https://127.0.0.2:7443 STANDBY"
        );
        assert_eq!(s.pairs.len(), 2);
        assert_eq!(s.pairs[0].label, "web: active primary (web-1)");
        assert!(s.pairs[0].force_failover.allowed);
        // PR-5: exactly the engine's refusal, as for the embedded node's pairs.
        assert_eq!(
            s.pairs[0].revert.item_text("Revert web"),
            "Revert web — web already runs on its primary"
        );
        assert_eq!(s.pending, ["new-box"]);
        assert_eq!(s.agents, "Agents: 3 connected, 1 disconnected, 1 pending");
        assert_eq!(s.overall, Overall::Degraded);
        assert!(s.running);
        // Without a label the site's name is shown.
        assert_eq!(
            SiteSection::new("srv-a", "", &following(v)).header,
            "Site srv-a — following srv-a"
        );
    }

    #[test]
    fn ui5_an_unreachable_or_revoked_site_says_so_and_offers_no_action() {
        let down = SiteSection::new(
            "s1",
            "s1",
            &SiteState::Unreachable {
                since: "14:02".into(),
                reason: "connection refused".into(),
            },
        );
        assert_eq!(down.header, "Site s1 — unreachable since 14:02");
        assert_eq!(down.overall, Overall::Blackout);
        assert!(!down.running && down.pairs.is_empty());
        let revoked = SiteSection::new(
            "s1",
            "s1",
            &SiteState::Revoked {
                reason: "the token is not valid".into(),
            },
        );
        assert_eq!(revoked.header, "Site s1 — access revoked");
        assert!(revoked.servers.contains("join the site again"));
        assert!(!revoked.running);
        let connecting = SiteSection::new("s1", "s1", &SiteState::Connecting);
        assert_eq!(connecting.header, "Site s1 — connecting");
    }

    #[test]
    fn ui5_the_icon_shows_the_worst_of_the_node_and_the_sites() {
        let mut m = MenuModel::from_status(&typed(healthy()));
        assert_eq!(m.icon_state(), Overall::Normal);
        m.sites
            .push(SiteSection::new("s1", "s1", &following(healthy())));
        assert_eq!(m.icon_state(), Overall::Normal);
        m.sites.push(SiteSection::new(
            "s2",
            "s2",
            &SiteState::Unreachable {
                since: "1:00".into(),
                reason: String::new(),
            },
        ));
        assert_eq!(m.icon_state(), Overall::Blackout);
        // No embedded node running: the sites decide.
        let mut none = MenuModel::stopped("off");
        none.sites
            .push(SiteSection::new("s1", "s1", &following(healthy())));
        assert_eq!(none.icon_state(), Overall::Normal);
        assert_eq!(MenuModel::stopped("off").icon_state(), Overall::Stopped);
        // The menu is rebuilt when a site's pairs or pending agents change.
        let shape = none.shape();
        assert_eq!(
            shape.sites,
            [("s1".to_string(), vec!["web".to_string()], vec![])]
        );
    }

    #[test]
    fn ui5_site_items_name_their_site_and_become_the_same_requests() {
        let m = MenuModel::stopped("off");
        for inner in [
            Action::ForceFailover("web".into()),
            Action::Revert("db:x".into()),
            Action::Accept("new box".into()),
        ] {
            let a = Action::on_site("lab:1", inner.clone());
            assert_eq!(Action::from_id(&a.id()), Some(a.clone()));
            assert_eq!(a.request(&m), inner.request(&m));
            assert!(a.describe().ends_with("on site lab:1"), "{}", a.describe());
        }
        // Only a pair's or an agent's action is a site's.
        let quit = Action::on_site("s1", Action::Quit).id();
        assert_eq!(Action::from_id(&quit), None);
    }
}
