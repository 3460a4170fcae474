//! The tray icon and its menu (UI-3), built in code. The icon shows the overall state; the menu
//! mirrors `model::MenuModel`. Items are updated in place (set_text / set_enabled / set_checked)
//! and the menu is rebuilt only when its shape — the pairs or the pending agents — changes.
//! On Linux the tray is menu-only, so every action is reachable from the menu.
//!
//! Threading: every menu call hops to the main thread and waits for it, so this module is only
//! called from async tasks, never while the main thread could be waiting on `Tray::inner`.

use std::sync::Mutex;

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Wry};

use crate::model::{Action, MenuModel, Overall, PairLine, SiteSection};

pub const TRAY_ID: &str = "understudy";

/// The app's own switches shown as check items beside the node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flags {
    pub muted: bool,
    pub autostart: bool,
    /// "Run a node on this computer" (UI-5).
    pub run_node: bool,
}

pub fn icon(overall: Overall) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match overall {
        Overall::Normal => include_bytes!("../../icons/tray/normal-64.png"),
        Overall::Degraded => include_bytes!("../../icons/tray/degraded-64.png"),
        Overall::Blackout => include_bytes!("../../icons/tray/blackout-64.png"),
        Overall::Stopped => include_bytes!("../../icons/tray/stopped-64.png"),
    };
    Image::from_bytes(bytes)
}

/// A pair's lines: its label, then its two actions. Flat items rather than a submenu: on Linux
/// (libayatana dbusmenu) a submenu's label does not follow set_text, a plain item's does.
struct PairItems {
    label: MenuItem<Wry>,
    force: MenuItem<Wry>,
    revert: MenuItem<Wry>,
}

/// UI-5: a remote site's lines: its header, its servers, its pairs, its agents, an "Accept"
/// item per pending agent. Flat items, for the same reason as the pairs'.
struct SiteItems {
    header: MenuItem<Wry>,
    servers: MenuItem<Wry>,
    pairs: Vec<PairItems>,
    agents: MenuItem<Wry>,
    accepts: Vec<MenuItem<Wry>>,
}

/// Handles to every item whose text or state follows the model.
struct Items {
    sites: Vec<SiteItems>,
    header: MenuItem<Wry>,
    link: MenuItem<Wry>,
    pairs: Vec<PairItems>,
    agents: MenuItem<Wry>,
    accepts: Vec<MenuItem<Wry>>,
    /// "N alert deliveries failing" (AL-5), only while there are.
    alerts: Option<MenuItem<Wry>>,
    server: CheckMenuItem<Wry>,
    agent: CheckMenuItem<Wry>,
    failover: [(String, CheckMenuItem<Wry>); 3],
    standby: MenuItem<Wry>,
    cert: MenuItem<Wry>,
    mute: CheckMenuItem<Wry>,
    autostart: CheckMenuItem<Wry>,
    run_node: CheckMenuItem<Wry>,
}

struct Inner {
    items: Items,
    shown: MenuModel,
    flags: Flags,
    /// Write every value on the next update, e.g. after a click flipped a check item by itself.
    resync: bool,
}

pub struct Tray {
    icon: TrayIcon<Wry>,
    inner: Mutex<Inner>,
}

const FAILOVER_MODES: [&str; 3] = ["off", "primary", "secondary"];

impl Tray {
    /// Creates the tray icon in the stopped state. `on_action` receives every decoded click.
    pub fn create(
        app: &AppHandle,
        flags: Flags,
        on_action: impl Fn(&AppHandle, Action) + Send + Sync + 'static,
    ) -> tauri::Result<Tray> {
        let model = MenuModel::stopped("starting");
        let (menu, items) = build_menu(app, &model, flags)?;
        let icon = TrayIconBuilder::with_id(TRAY_ID)
            .icon(icon(model.overall)?)
            .tooltip("Understudy")
            .menu(&menu)
            .show_menu_on_left_click(true)
            .on_menu_event(
                move |app, event| match Action::from_id(event.id().as_ref()) {
                    Some(action) => on_action(app, action),
                    None => {
                        tracing::debug!(id = event.id().as_ref(), "menu item without an action")
                    }
                },
            )
            .build(app)?;
        Ok(Tray {
            icon,
            inner: Mutex::new(Inner {
                items,
                shown: model,
                flags,
                resync: false,
            }),
        })
    }

    /// The model last shown: the state the user saw when clicking.
    pub fn shown(&self) -> MenuModel {
        self.lock().shown.clone()
    }

    pub fn request_resync(&self) {
        self.lock().resync = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shows `model`: in place when the shape is unchanged, else with a rebuilt menu.
    pub fn update(&self, app: &AppHandle, model: MenuModel, flags: Flags) -> tauri::Result<()> {
        let mut inner = self.lock();
        let state = model.icon_state();
        if inner.shown.icon_state() != state {
            self.icon.set_icon(Some(icon(state)?))?;
            let _ = self
                .icon
                .set_tooltip(Some(format!("Understudy — {}", state.as_str())));
        }
        if inner.shown.shape() != model.shape() {
            tracing::debug!(shape = ?model.shape(), "rebuilding the tray menu");
            let (menu, items) = build_menu(app, &model, flags)?;
            self.icon.set_menu(Some(menu))?;
            inner.items = items;
        } else {
            let all = std::mem::take(&mut inner.resync);
            update_items(&inner.items, &inner.shown, inner.flags, &model, flags, all)?;
        }
        inner.shown = model;
        inner.flags = flags;
        Ok(())
    }
}

/// The HS-5 item; disabled, the engine's sentence follows it.
const STANDBY: &str = "Set this server to standby";

fn force_name(pair: &str) -> String {
    format!("Force failover {pair}")
}

fn revert_name(pair: &str) -> String {
    format!("Revert {pair}")
}

fn build_menu(app: &AppHandle, m: &MenuModel, flags: Flags) -> tauri::Result<(Menu<Wry>, Items)> {
    let header = MenuItem::with_id(app, "info:header", &m.header, false, None::<&str>)?;
    let link = MenuItem::with_id(app, "info:link", &m.link, false, None::<&str>)?;

    let pairs = m
        .pairs
        .iter()
        .map(|p| pair_items(app, None, p, m.running))
        .collect::<tauri::Result<Vec<_>>>()?;
    let sites = m
        .sites
        .iter()
        .map(|s| site_items(app, s))
        .collect::<tauri::Result<Vec<_>>>()?;

    let agents = MenuItem::with_id(app, "info:agents", &m.agents, false, None::<&str>)?;
    let alerts = match &m.alerts_failing {
        Some(text) => Some(MenuItem::with_id(
            app,
            "info:alerts",
            text,
            false,
            None::<&str>,
        )?),
        None => None,
    };
    let mut accepts = Vec::new();
    for name in &m.pending {
        accepts.push(MenuItem::with_id(
            app,
            Action::Accept(name.clone()).id(),
            format!("Accept {name}"),
            m.running,
            None::<&str>,
        )?);
    }

    let server = CheckMenuItem::with_id(
        app,
        Action::ToggleServer.id(),
        "Server role",
        m.running,
        m.server_role,
        None::<&str>,
    )?;
    let agent = CheckMenuItem::with_id(
        app,
        Action::ToggleAgent.id(),
        "Agent role",
        m.running,
        m.agent_role,
        None::<&str>,
    )?;
    let failover = FAILOVER_MODES.map(|mode| {
        let item = CheckMenuItem::with_id(
            app,
            Action::Failover(mode.into()).id(),
            format!("Hot standby: {mode}"),
            m.running,
            m.failover_mode == mode,
            None::<&str>,
        );
        (mode.to_string(), item)
    });
    let [(m0, f0), (m1, f1), (m2, f2)] = failover;
    let failover = [(m0, f0?), (m1, f1?), (m2, f2?)];
    let standby = MenuItem::with_id(
        app,
        Action::Standby.id(),
        m.standby.item_text(STANDBY),
        m.running && m.standby.allowed,
        None::<&str>,
    )?;
    let sep = || PredefinedMenuItem::separator(app);
    let roles = Submenu::with_id_and_items(
        app,
        "roles",
        "Roles",
        true,
        &[
            &server,
            &agent,
            &sep()?,
            &failover[0].1,
            &failover[1].1,
            &failover[2].1,
            &sep()?,
            &standby,
        ],
    )?;

    let cert = MenuItem::with_id(
        app,
        Action::GenerateCertificate.id(),
        "Generate certificate",
        m.running,
        None::<&str>,
    )?;
    let mute = CheckMenuItem::with_id(
        app,
        Action::ToggleMute.id(),
        "Mute notifications",
        true,
        flags.muted,
        None::<&str>,
    )?;
    let autostart = CheckMenuItem::with_id(
        app,
        Action::ToggleAutostart.id(),
        "Start at login",
        true,
        flags.autostart,
        None::<&str>,
    )?;
    let run_node = CheckMenuItem::with_id(
        app,
        Action::ToggleNode.id(),
        "Run a node on this computer",
        true,
        flags.run_node,
        None::<&str>,
    )?;
    let open = MenuItem::with_id(
        app,
        Action::OpenWindow.id(),
        "Open window",
        true,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, Action::Quit.id(), "Quit", true, None::<&str>)?;

    let menu = Menu::with_id(app, "tray")?;
    menu.append_items(&[&header, &link, &run_node, &sep()?])?;
    for p in &pairs {
        menu.append_items(&[&p.label, &p.force, &p.revert])?;
    }
    if !pairs.is_empty() {
        menu.append(&sep()?)?;
    }
    menu.append(&agents)?;
    let accept_refs: Vec<&dyn IsMenuItem<Wry>> =
        accepts.iter().map(|a| a as &dyn IsMenuItem<Wry>).collect();
    menu.append_items(&accept_refs)?;
    if let Some(a) = &alerts {
        menu.append_items(&[&sep()?, a])?;
    }
    for site in &sites {
        menu.append_items(&[&sep()?, &site.header, &site.servers])?;
        for p in &site.pairs {
            menu.append_items(&[&p.label, &p.force, &p.revert])?;
        }
        menu.append(&site.agents)?;
        for a in &site.accepts {
            menu.append(a)?;
        }
    }
    menu.append_items(&[
        &sep()?,
        &roles,
        &cert,
        &sep()?,
        &mute,
        &autostart,
        &open,
        &quit,
    ])?;

    let items = Items {
        sites,
        header,
        link,
        pairs,
        agents,
        accepts,
        alerts,
        server,
        agent,
        failover,
        standby,
        cert,
        mute,
        autostart,
        run_node,
    };
    Ok((menu, items))
}

/// A pair's three items; `site`: the remote site it belongs to (its actions then name it).
fn pair_items(
    app: &AppHandle,
    site: Option<&str>,
    p: &PairLine,
    running: bool,
) -> tauri::Result<PairItems> {
    let on = |a: Action| match site {
        Some(site) => Action::on_site(site, a),
        None => a,
    };
    let force = MenuItem::with_id(
        app,
        on(Action::ForceFailover(p.name.clone())).id(),
        p.force_failover.item_text(&force_name(&p.name)),
        running && p.force_failover.allowed,
        None::<&str>,
    )?;
    let revert = MenuItem::with_id(
        app,
        on(Action::Revert(p.name.clone())).id(),
        p.revert.item_text(&revert_name(&p.name)),
        running && p.revert.allowed,
        None::<&str>,
    )?;
    let info = match site {
        Some(site) => format!("info:site:{site}:pair:{}", p.name),
        None => format!("info:pair:{}", p.name),
    };
    let label = MenuItem::with_id(app, info, &p.label, false, None::<&str>)?;
    Ok(PairItems {
        label,
        force,
        revert,
    })
}

fn site_items(app: &AppHandle, s: &SiteSection) -> tauri::Result<SiteItems> {
    let site = s.site.as_str();
    let info = |what: &str, text: &str| {
        MenuItem::with_id(
            app,
            format!("info:site:{site}:{what}"),
            text,
            false,
            None::<&str>,
        )
    };
    let pairs = s
        .pairs
        .iter()
        .map(|p| pair_items(app, Some(site), p, s.running))
        .collect::<tauri::Result<Vec<_>>>()?;
    let accepts = s
        .pending
        .iter()
        .map(|name| {
            MenuItem::with_id(
                app,
                Action::on_site(site, Action::Accept(name.clone())).id(),
                format!("Accept {name}"),
                s.running,
                None::<&str>,
            )
        })
        .collect::<tauri::Result<Vec<_>>>()?;
    Ok(SiteItems {
        header: info("header", &s.header)?,
        servers: info("servers", &s.servers)?,
        pairs,
        agents: info("agents", &s.agents)?,
        accepts,
    })
}

/// Writes a pair's items where they differ from what is shown (everything when `all`).
fn update_pairs(
    items: &[PairItems],
    old: &[PairLine],
    old_running: bool,
    new: &[PairLine],
    run: bool,
    all: bool,
) -> tauri::Result<()> {
    for ((it, o), n) in items.iter().zip(old).zip(new) {
        if all || o.label != n.label {
            it.label.set_text(&n.label)?;
        }
        if all || o.force_failover != n.force_failover || old_running != run {
            it.force.set_enabled(run && n.force_failover.allowed)?;
            it.force
                .set_text(n.force_failover.item_text(&force_name(&n.name)))?;
        }
        if all || o.revert != n.revert || old_running != run {
            it.revert.set_enabled(run && n.revert.allowed)?;
            it.revert
                .set_text(n.revert.item_text(&revert_name(&n.name)))?;
        }
    }
    Ok(())
}

fn update_site(
    items: &SiteItems,
    old: &SiteSection,
    new: &SiteSection,
    all: bool,
) -> tauri::Result<()> {
    for (item, o, n) in [
        (&items.header, &old.header, &new.header),
        (&items.servers, &old.servers, &new.servers),
        (&items.agents, &old.agents, &new.agents),
    ] {
        if all || o != n {
            item.set_text(n)?;
        }
    }
    update_pairs(
        &items.pairs,
        &old.pairs,
        old.running,
        &new.pairs,
        new.running,
        all,
    )?;
    if all || old.running != new.running {
        for a in &items.accepts {
            a.set_enabled(new.running)?;
        }
    }
    Ok(())
}

/// Writes only what changed between `old` and `new` (everything when `all`).
fn update_items(
    items: &Items,
    old: &MenuModel,
    old_flags: Flags,
    new: &MenuModel,
    flags: Flags,
    all: bool,
) -> tauri::Result<()> {
    let run = new.running;
    if all || old.header != new.header {
        items.header.set_text(&new.header)?;
    }
    if all || old.link != new.link {
        items.link.set_text(&new.link)?;
    }
    if all || old.agents != new.agents {
        items.agents.set_text(&new.agents)?;
    }
    if let (Some(item), Some(text)) = (&items.alerts, &new.alerts_failing) {
        if all || old.alerts_failing.as_ref() != Some(text) {
            item.set_text(text)?;
        }
    }
    update_pairs(&items.pairs, &old.pairs, old.running, &new.pairs, run, all)?;
    for ((it, o), n) in items.sites.iter().zip(&old.sites).zip(&new.sites) {
        update_site(it, o, n, all)?;
    }
    if all || old.running != run {
        for a in &items.accepts {
            a.set_enabled(run)?;
        }
        items.server.set_enabled(run)?;
        items.agent.set_enabled(run)?;
        for (_, f) in &items.failover {
            f.set_enabled(run)?;
        }
        items.cert.set_enabled(run)?;
    }
    if all || old.server_role != new.server_role {
        items.server.set_checked(new.server_role)?;
    }
    if all || old.agent_role != new.agent_role {
        items.agent.set_checked(new.agent_role)?;
    }
    if all || old.failover_mode != new.failover_mode {
        for (mode, f) in &items.failover {
            f.set_checked(*mode == new.failover_mode)?;
        }
    }
    if all || old.standby != new.standby || old.running != run {
        items.standby.set_enabled(run && new.standby.allowed)?;
        items.standby.set_text(new.standby.item_text(STANDBY))?;
    }
    if all || old_flags.muted != flags.muted {
        items.mute.set_checked(flags.muted)?;
    }
    if all || old_flags.autostart != flags.autostart {
        items.autostart.set_checked(flags.autostart)?;
    }
    if all || old_flags.run_node != flags.run_node {
        items.run_node.set_checked(flags.run_node)?;
    }
    Ok(())
}
