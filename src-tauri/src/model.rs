//! The tray's model, computed from the JSON of `GET /api/status` (UI-3): the overall state, every
//! menu label, which actions are allowed, and the admin request each menu click becomes.
//! Pure data in, data out — no GTK, no Tauri — so every rule here is unit-tested.
//! Architecture invariant: this decides nothing about failover; it only reads the status and
//! mirrors the window's rules (ui/src/rules.ts) so the tray and the window always agree.

use serde_json::{json, Value};

/// The at-a-glance state shown by the tray icon (UI-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overall {
    Normal,
    Degraded,
    Blackout,
    Stopped,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Normal => "normal",
            Overall::Degraded => "degraded",
            Overall::Blackout => "blackout",
            Overall::Stopped => "stopped",
        }
    }
}

/// Whether an action may be taken now, with the reason either way (shown in the log on refusal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub allowed: bool,
    pub reason: String,
}

impl Allowed {
    fn yes(reason: impl Into<String>) -> Self {
        Allowed {
            allowed: true,
            reason: reason.into(),
        }
    }
    fn no(reason: impl Into<String>) -> Self {
        Allowed {
            allowed: false,
            reason: reason.into(),
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
    /// "Set this server to standby" (HS-5): only the ACTIVE node of a hot-standby pair.
    pub standby: Allowed,
    /// False when the node is not running: every action item is then disabled.
    pub running: bool,
}

/// What decides the menu's structure: when this changes the menu is rebuilt, otherwise its items
/// are updated in place.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Shape {
    pub pairs: Vec<String>,
    pub pending: Vec<String>,
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
            running: false,
        }
    }

    pub fn from_status(status: &Value) -> MenuModel {
        let node = &status["node"];
        let server_role = node["roles"]["server"].as_bool().unwrap_or(false);
        let agent_role = node["roles"]["agent"].as_bool().unwrap_or(false);
        let failover_mode = str_of(&node["failover"]["mode"])
            .unwrap_or("off")
            .to_lowercase();
        let failover_state = str_of(&node["failover"]["state"]).unwrap_or("").to_string();

        let pairs: Vec<PairLine> = array(&status["pairs"])
            .iter()
            .map(|p| pair_line(status, p))
            .collect();
        let agents_list = array(&status["agents"]);
        let pending: Vec<String> = agents_list
            .iter()
            .filter(|a| is_pending(a))
            .filter_map(|a| str_of(&a["name"]).map(String::from))
            .collect();

        let standby = if !server_role {
            Allowed::no("this node has no server role")
        } else if failover_mode == "off" {
            Allowed::no("hot standby is off")
        } else if !failover_state.eq_ignore_ascii_case("active") {
            Allowed::no("this server is not the ACTIVE one")
        } else {
            Allowed::yes("hand the ACTIVE role to the peer")
        };

        MenuModel {
            overall: overall_state(status),
            header: header(node),
            link: link_line(&status["link"]),
            pairs,
            agents: agents_summary(agents_list),
            pending,
            server_role,
            agent_role,
            failover_mode,
            standby,
            running: true,
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            pairs: self.pairs.iter().map(|p| p.name.clone()).collect(),
            pending: self.pending.clone(),
        }
    }
}

/// Overall state (UI-3), in this order: blackout if the link or any pair is in blackout;
/// degraded if the link is not home, any pair is degraded or running on its secondary, or any
/// agent is disconnected; else normal. `Stopped` comes from `MenuModel::stopped`.
pub fn overall_state(status: &Value) -> Overall {
    let link_state = str_of(&status["link"]["state"]).map(str::to_lowercase);
    let pairs = array(&status["pairs"]);
    if link_state.as_deref() == Some("blackout") || pairs.iter().any(pair_is_blackout) {
        return Overall::Blackout;
    }
    let link_degraded = matches!(link_state.as_deref(), Some(s) if s != "home");
    let pair_degraded = pairs.iter().any(|p| {
        let state = str_of(&p["state"]).unwrap_or("").to_lowercase();
        state != "normal"
            || str_of(&p["active"]) == Some("secondary")
            || str_of(&p["degraded"]).is_some_and(|r| !r.is_empty())
    });
    let agent_down = array(&status["agents"])
        .iter()
        .any(|a| str_of(&a["state"]).is_some_and(|s| s.eq_ignore_ascii_case("disconnected")));
    if link_degraded || pair_degraded || agent_down {
        Overall::Degraded
    } else {
        Overall::Normal
    }
}

fn pair_is_blackout(p: &Value) -> bool {
    matches!(
        str_of(&p["state"]).unwrap_or("").to_lowercase().as_str(),
        "blackout" | "failed" | "down" | "unreachable" | "disconnected"
    )
}

/// "srv-a: Server + Agent · PRIMARY · ACTIVE · epoch 3"; "srv-a: Standalone · no hot standby".
fn header(node: &Value) -> String {
    let name = str_of(&node["name"]).unwrap_or("this node");
    let server = node["roles"]["server"].as_bool().unwrap_or(false);
    let agent = node["roles"]["agent"].as_bool().unwrap_or(false);
    let roles = match (server, agent) {
        (true, true) => "Standalone (server + agent)",
        (true, false) => "Server",
        (false, true) => "Agent",
        (false, false) => "No role",
    };
    let failover = &node["failover"];
    let mode = str_of(&failover["mode"]).unwrap_or("off");
    if !server || mode.eq_ignore_ascii_case("off") {
        return format!("{name}: {roles}");
    }
    let mut text = format!("{name}: {roles} · {}", mode.to_uppercase());
    if let Some(state) = str_of(&failover["state"]).filter(|s| !s.is_empty()) {
        text.push_str(&format!(" · {}", state.to_uppercase()));
    }
    if let Some(epoch) = failover["epoch"].as_u64() {
        text.push_str(&format!(" · epoch {epoch}"));
    }
    text
}

fn link_line(link: &Value) -> String {
    if link.is_null() {
        return "Link: none (no agent role)".into();
    }
    let state = str_of(&link["state"]).unwrap_or("unknown");
    let mut text = format!("Link: {state}");
    if let Some(server) = str_of(&link["server"]).filter(|s| !s.is_empty()) {
        text.push_str(&format!(" {server}"));
    }
    if let Some(cached) = link["cached"].as_u64() {
        text.push_str(&format!(" · {cached} cached"));
    }
    text
}

fn pair_line(status: &Value, p: &Value) -> PairLine {
    let name = str_of(&p["name"]).unwrap_or("?").to_string();
    let primary = str_of(&p["primary"]).unwrap_or("?");
    let secondary = str_of(&p["secondary"]).unwrap_or("?");
    let active = str_of(&p["active"]).unwrap_or("none");
    let mut label = match active {
        "primary" => format!("{name}: active primary ({primary})"),
        "secondary" => format!("{name}: active secondary ({secondary})"),
        _ => format!("{name}: no active member"),
    };
    let state = str_of(&p["state"]).unwrap_or("");
    if !state.is_empty() && !state.eq_ignore_ascii_case("normal") {
        label.push_str(&format!(" · {state}"));
    } else if str_of(&p["degraded"]).is_some_and(|r| !r.is_empty()) {
        label.push_str(" · degraded");
    }
    PairLine {
        force_failover: can_force_failover(status, &name, active, secondary),
        revert: can_revert(status, &name, active, primary),
        name,
        label,
    }
}

/// PR-5, same rule as the window: not when the secondary is already active or not connected.
pub fn can_force_failover(status: &Value, pair: &str, active: &str, secondary: &str) -> Allowed {
    if active == "secondary" {
        return Allowed::no("the secondary is already active");
    }
    if !is_connected(status, secondary) {
        return Allowed::no(format!("secondary {secondary} is not connected"));
    }
    Allowed::yes(format!("move {pair} to {secondary}"))
}

/// PR-5, same rule as the window: not when the primary is already active or not connected.
pub fn can_revert(status: &Value, pair: &str, active: &str, primary: &str) -> Allowed {
    if active == "primary" {
        return Allowed::no("the primary is already active");
    }
    if !is_connected(status, primary) {
        return Allowed::no(format!("primary {primary} is not connected"));
    }
    Allowed::yes(format!("move {pair} back to {primary}"))
}

fn is_connected(status: &Value, agent: &str) -> bool {
    array(&status["agents"])
        .iter()
        .any(|a| str_of(&a["name"]) == Some(agent) && str_of(&a["state"]) == Some("connected"))
}

fn is_pending(a: &Value) -> bool {
    a["pending"].as_bool().unwrap_or(false) || str_of(&a["state"]) == Some("pending")
}

fn agents_summary(agents: &[Value]) -> String {
    if agents.is_empty() {
        return "Agents: none".into();
    }
    let count = |want: &str| {
        agents
            .iter()
            .filter(|a| {
                !is_pending(a) && str_of(&a["state"]).is_some_and(|s| s.eq_ignore_ascii_case(want))
            })
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

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
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
    OpenWindow,
    Quit,
}

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
            Action::OpenWindow => "app:open-window".into(),
            Action::Quit => "app:quit".into(),
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
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
            "app:open-window" => Action::OpenWindow,
            "app:quit" => Action::Quit,
            _ => return None,
        })
    }

    /// The admin request (method, path, body) for actions that go to the node; `None` for the
    /// app's own actions (mute, autostart, window, quit). Toggles are computed from `model`, the
    /// state last shown, so a click always asks for the opposite of what the user saw.
    pub fn request(&self, model: &MenuModel) -> Option<(&'static str, String, Option<Value>)> {
        Some(match self {
            Action::ForceFailover(p) => (
                "POST",
                format!("/api/pairs/{}/force-failover", path_segment(p)),
                None,
            ),
            Action::Revert(p) => (
                "POST",
                format!("/api/pairs/{}/revert", path_segment(p)),
                None,
            ),
            Action::Accept(a) => (
                "POST",
                format!("/api/agents/{}/accept", path_segment(a)),
                None,
            ),
            Action::ToggleServer => (
                "POST",
                "/api/role".into(),
                Some(json!({ "server": !model.server_role })),
            ),
            Action::ToggleAgent => (
                "POST",
                "/api/role".into(),
                Some(json!({ "agent": !model.agent_role })),
            ),
            Action::Failover(mode) => (
                "POST",
                "/api/role".into(),
                Some(json!({ "failover": mode })),
            ),
            Action::Standby => ("POST", "/api/ha/standby".into(), None),
            // Empty lists: the node binds the certificate to its current addresses (CT-1).
            Action::GenerateCertificate => (
                "POST",
                "/api/cert/generate".into(),
                Some(json!({ "ips": [], "dns": [] })),
            ),
            Action::ToggleMute | Action::ToggleAutostart | Action::OpenWindow | Action::Quit => {
                return None
            }
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
            Action::OpenWindow => "open the window".into(),
            Action::Quit => "quit".into(),
        }
    }
}

/// Percent-encodes a name for use as one path segment (names are operator-chosen).
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = MenuModel::from_status(&status());
        assert_eq!(
            m.header,
            "srv-a: Standalone (server + agent) · PRIMARY · ACTIVE · epoch 3"
        );
        let mut s = status();
        s["node"]["roles"]["agent"] = json!(false);
        assert_eq!(
            MenuModel::from_status(&s).header,
            "srv-a: Server · PRIMARY · ACTIVE · epoch 3"
        );
        s["node"]["failover"]["mode"] = json!("off");
        assert_eq!(MenuModel::from_status(&s).header, "srv-a: Server");
    }

    #[test]
    fn link_line_and_agents_summary() {
        let m = MenuModel::from_status(&status());
        assert_eq!(m.link, "Link: home https://127.0.0.1:7443 · 0 cached");
        assert_eq!(m.agents, "Agents: 3 connected, 1 disconnected, 1 pending");
        assert_eq!(m.pending, vec!["new-box".to_string()]);
        let mut s = status();
        s["link"] = Value::Null;
        s["agents"] = json!([]);
        let m = MenuModel::from_status(&s);
        assert_eq!(m.link, "Link: none (no agent role)");
        assert_eq!(m.agents, "Agents: none");
    }

    #[test]
    fn pair_labels_show_the_active_member_and_a_state_that_is_not_normal() {
        let m = MenuModel::from_status(&status());
        assert_eq!(m.pairs[0].label, "web: active primary (web-1)");
        assert_eq!(m.pairs[1].label, "db: active secondary (db-2) · degraded");
        let mut s = status();
        s["pairs"][0]["active"] = json!("none");
        s["pairs"][0]["state"] = json!("blackout");
        assert_eq!(
            MenuModel::from_status(&s).pairs[0].label,
            "web: no active member · blackout"
        );
    }

    #[test]
    fn force_failover_and_revert_follow_the_windows_rules() {
        let m = MenuModel::from_status(&status());
        // web: primary active, web-2 connected → force allowed, revert not.
        assert!(m.pairs[0].force_failover.allowed);
        assert_eq!(
            m.pairs[0].revert,
            Allowed::no("the primary is already active")
        );
        // db: secondary active → no force; primary db-1 disconnected → no revert.
        assert_eq!(
            m.pairs[1].force_failover,
            Allowed::no("the secondary is already active")
        );
        assert_eq!(
            m.pairs[1].revert,
            Allowed::no("primary db-1 is not connected")
        );

        let mut s = status();
        s["agents"][1]["state"] = json!("disconnected"); // web-2
        assert_eq!(
            MenuModel::from_status(&s).pairs[0].force_failover,
            Allowed::no("secondary web-2 is not connected")
        );
        s["agents"][2]["state"] = json!("connected"); // db-1 back
        assert!(MenuModel::from_status(&s).pairs[1].revert.allowed);
    }

    #[test]
    fn standby_only_on_the_active_server_of_a_hot_standby_pair() {
        assert!(MenuModel::from_status(&status()).standby.allowed);
        let mut s = status();
        s["node"]["failover"]["state"] = json!("standby");
        assert_eq!(
            MenuModel::from_status(&s).standby,
            Allowed::no("this server is not the ACTIVE one")
        );
        s["node"]["failover"]["mode"] = json!("off");
        assert_eq!(
            MenuModel::from_status(&s).standby,
            Allowed::no("hot standby is off")
        );
    }

    #[test]
    fn overall_state_in_order_blackout_degraded_normal() {
        assert_eq!(overall_state(&healthy()), Overall::Normal);
        assert_eq!(overall_state(&status()), Overall::Degraded);

        let mut s = healthy();
        s["link"]["state"] = json!("blackout");
        assert_eq!(overall_state(&s), Overall::Blackout);

        let mut s = healthy();
        s["pairs"][0]["state"] = json!("blackout");
        assert_eq!(overall_state(&s), Overall::Blackout);

        for link in ["staged", "connecting", "standby"] {
            let mut s = healthy();
            s["link"]["state"] = json!(link);
            assert_eq!(overall_state(&s), Overall::Degraded, "link {link}");
        }

        let mut s = healthy();
        s["pairs"][0]["active"] = json!("secondary");
        assert_eq!(overall_state(&s), Overall::Degraded, "failed over");

        let mut s = healthy();
        s["agents"][0]["state"] = json!("disconnected");
        assert_eq!(overall_state(&s), Overall::Degraded);

        let mut s = healthy();
        s["link"] = Value::Null; // a server-only node has no link
        assert_eq!(overall_state(&s), Overall::Normal);

        assert_eq!(MenuModel::stopped("starting").overall, Overall::Stopped);
        assert!(!MenuModel::stopped("starting").running);
    }

    #[test]
    fn shape_changes_only_with_pairs_or_pending_agents() {
        let a = MenuModel::from_status(&status());
        let mut s = status();
        s["pairs"][0]["active"] = json!("secondary");
        s["link"]["cached"] = json!(12);
        assert_eq!(
            MenuModel::from_status(&s).shape(),
            a.shape(),
            "labels change, shape does not"
        );
        s["agents"][4]["pending"] = json!(false);
        s["agents"][4]["state"] = json!("connected");
        assert_ne!(MenuModel::from_status(&s).shape(), a.shape());
    }

    #[test]
    fn menu_ids_round_trip_and_become_admin_requests() {
        let m = MenuModel::from_status(&status());
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
            Action::OpenWindow,
            Action::Quit,
        ] {
            assert_eq!(Action::from_id(&a.id()), Some(a.clone()));
        }
        assert_eq!(Action::from_id("nonsense"), None);

        assert_eq!(
            Action::ForceFailover("web".into()).request(&m),
            Some(("POST", "/api/pairs/web/force-failover".into(), None))
        );
        assert_eq!(
            Action::Accept("new box".into()).request(&m),
            Some(("POST", "/api/agents/new%20box/accept".into(), None))
        );
        // The toggle asks for the opposite of what is shown.
        assert_eq!(
            Action::ToggleServer.request(&m),
            Some(("POST", "/api/role".into(), Some(json!({ "server": false }))))
        );
        assert_eq!(
            Action::Failover("off".into()).request(&m),
            Some((
                "POST",
                "/api/role".into(),
                Some(json!({ "failover": "off" }))
            ))
        );
        assert_eq!(Action::Quit.request(&m), None);
    }

    #[test]
    fn missing_fields_do_not_panic() {
        let m = MenuModel::from_status(&json!({}));
        assert_eq!(m.header, "this node: No role");
        assert!(m.pairs.is_empty());
        assert_eq!(m.overall, Overall::Normal);
    }
}
