//! The tray icon and its menu (UI-3), built in code. The icon shows the overall state; the menu
//! mirrors `model::MenuModel`. Items are updated in place (set_text / set_enabled / set_checked)
//! and the menu is rebuilt only when its shape — the pairs or the pending agents — changes.
//! On Linux the tray is menu-only, so every action is reachable from the menu.
//!
//! The icon and menu are tray-icon and muda, the libraries Tauri's own tray wraps (on Linux a
//! libayatana-appindicator item whose menu is exported over D-Bus), without Tauri: the tray
//! process links no WebKit.
//!
//! Threading: menu items live on the main thread (GTK's), so `Tray` is made and updated only
//! there, from the event loop (`crate::app`); other threads send it models through the loop.

use tray_icon::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

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

/// A menu or tray call that failed, as the platform said it.
pub type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The icon of a state: the PNG decoded to RGBA, as the tray wants it.
pub fn icon(overall: Overall) -> Result<Icon> {
    let bytes: &'static [u8] = match overall {
        Overall::Normal => include_bytes!("../../../icons/tray/normal-64.png"),
        Overall::Degraded => include_bytes!("../../../icons/tray/degraded-64.png"),
        Overall::Blackout => include_bytes!("../../../icons/tray/blackout-64.png"),
        Overall::Stopped => include_bytes!("../../../icons/tray/stopped-64.png"),
    };
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .map_err(err)?;
    let size = reader.output_buffer_size().ok_or("the icon is too large")?;
    let mut rgba = vec![0; size];
    let info = reader.next_frame(&mut rgba).map_err(err)?;
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "the icon is {:?}/{:?}, not 8-bit RGBA",
            info.color_type, info.bit_depth
        ));
    }
    rgba.truncate(info.buffer_size());
    Icon::from_rgba(rgba, info.width, info.height).map_err(err)
}

/// A pair's lines: its label, then its two actions. Flat items rather than a submenu: on Linux
/// (libayatana dbusmenu) a submenu's label does not follow set_text, a plain item's does.
struct PairItems {
    label: MenuItem,
    force: MenuItem,
    revert: MenuItem,
}

/// UI-5: a remote site's lines: its header, its servers, its pairs, its agents, an "Accept"
/// item per pending agent. Flat items, for the same reason as the pairs'.
struct SiteItems {
    header: MenuItem,
    servers: MenuItem,
    pairs: Vec<PairItems>,
    agents: MenuItem,
    accepts: Vec<MenuItem>,
}

/// Handles to every item whose text or state follows the model.
struct Items {
    sites: Vec<SiteItems>,
    header: MenuItem,
    link: MenuItem,
    pairs: Vec<PairItems>,
    agents: MenuItem,
    accepts: Vec<MenuItem>,
    /// "N alert deliveries failing" (AL-5), only while there are.
    alerts: Option<MenuItem>,
    server: CheckMenuItem,
    agent: CheckMenuItem,
    failover: [(String, CheckMenuItem); 3],
    standby: MenuItem,
    cert: MenuItem,
    mute: CheckMenuItem,
    autostart: CheckMenuItem,
    run_node: CheckMenuItem,
}

/// The tray icon and the handles of its items; lives on the main thread.
pub struct Tray {
    icon: TrayIcon,
    /// Every menu this tray has shown, the current one last, kept for the process's life:
    /// dropping a muda menu's last handle destroys its GTK widgets, which libayatana's dbusmenu
    /// export may still reach (a use-after-free class tray-icon itself had,
    /// tauri-apps/tray-icon#103). A menu is rebuilt only when its shape changes (pairs, pending
    /// agents, sites), so they are few.
    menus: Vec<Menu>,
    items: Items,
    shown: MenuModel,
    flags: Flags,
}

const FAILOVER_MODES: [&str; 3] = ["off", "primary", "secondary"];

impl Tray {
    /// Creates the tray icon in the stopped state. Clicks arrive as `MenuEvent`s whose ids
    /// `Action::from_id` decodes (`crate::app` routes them).
    pub fn create(flags: Flags) -> Result<Tray> {
        let model = MenuModel::stopped("starting");
        let (menu, items) = build_menu(&model, flags)?;
        let icon = TrayIconBuilder::new()
            .with_id(TRAY_ID)
            .with_icon(icon(model.overall)?)
            .with_tooltip("Understudy")
            .with_menu(Box::new(menu.clone()))
            .with_menu_on_left_click(true)
            .build()
            .map_err(err)?;
        Ok(Tray {
            icon,
            menus: vec![menu],
            items,
            shown: model,
            flags,
        })
    }

    /// Shows `model`: in place when the shape is unchanged, else with a rebuilt menu. `all`:
    /// write every value, e.g. after a click flipped a check item by itself.
    pub fn update(&mut self, model: MenuModel, flags: Flags, all: bool) -> Result<()> {
        let state = model.icon_state();
        if self.shown.icon_state() != state {
            self.icon.set_icon(Some(icon(state)?)).map_err(err)?;
            let _ = self
                .icon
                .set_tooltip(Some(format!("Understudy — {}", state.as_str())));
        }
        if self.shown.shape() != model.shape() {
            tracing::debug!(shape = ?model.shape(), "rebuilding the tray menu");
            let (menu, items) = build_menu(&model, flags)?;
            self.icon.set_menu(Some(Box::new(menu.clone())));
            self.menus.push(menu);
            self.items = items;
        } else {
            update_items(&self.items, &self.shown, self.flags, &model, flags, all);
        }
        self.shown = model;
        self.flags = flags;
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

fn build_menu(m: &MenuModel, flags: Flags) -> Result<(Menu, Items)> {
    let header = MenuItem::with_id("info:header", &m.header, false, None);
    let link = MenuItem::with_id("info:link", &m.link, false, None);

    let pairs = m
        .pairs
        .iter()
        .map(|p| pair_items(None, p, m.running))
        .collect::<Vec<_>>();
    let sites = m.sites.iter().map(site_items).collect::<Vec<_>>();

    let agents = MenuItem::with_id("info:agents", &m.agents, false, None);
    let alerts = m
        .alerts_failing
        .as_ref()
        .map(|text| MenuItem::with_id("info:alerts", text, false, None));
    let mut accepts = Vec::new();
    for name in &m.pending {
        accepts.push(MenuItem::with_id(
            Action::Accept(name.clone()).id(),
            format!("Accept {name}"),
            m.running,
            None,
        ));
    }

    let server = CheckMenuItem::with_id(
        Action::ToggleServer.id(),
        "Server role",
        m.running,
        m.server_role,
        None,
    );
    let agent = CheckMenuItem::with_id(
        Action::ToggleAgent.id(),
        "Agent role",
        m.running,
        m.agent_role,
        None,
    );
    let failover = FAILOVER_MODES.map(|mode| {
        let item = CheckMenuItem::with_id(
            Action::Failover(mode.into()).id(),
            format!("Hot standby: {mode}"),
            m.running,
            m.failover_mode == mode,
            None,
        );
        (mode.to_string(), item)
    });
    let standby = MenuItem::with_id(
        Action::Standby.id(),
        m.standby.item_text(STANDBY),
        m.running && m.standby.allowed,
        None,
    );
    let sep = PredefinedMenuItem::separator;
    let roles = Submenu::with_id_and_items(
        "roles",
        "Roles",
        true,
        &[
            &server,
            &agent,
            &sep(),
            &failover[0].1,
            &failover[1].1,
            &failover[2].1,
            &sep(),
            &standby,
        ],
    )
    .map_err(err)?;

    let cert = MenuItem::with_id(
        Action::GenerateCertificate.id(),
        "Generate certificate",
        m.running,
        None,
    );
    let mute = CheckMenuItem::with_id(
        Action::ToggleMute.id(),
        "Mute notifications",
        true,
        flags.muted,
        None,
    );
    let autostart = CheckMenuItem::with_id(
        Action::ToggleAutostart.id(),
        "Start at login",
        true,
        flags.autostart,
        None,
    );
    let run_node = CheckMenuItem::with_id(
        Action::ToggleNode.id(),
        "Run a node on this computer",
        true,
        flags.run_node,
        None,
    );
    let open = MenuItem::with_id(Action::OpenWindow.id(), "Open window", true, None);
    let quit = MenuItem::with_id(Action::Quit.id(), "Quit", true, None);

    let menu = Menu::with_id("tray");
    menu.append_items(&[&header, &link, &run_node, &sep()])
        .map_err(err)?;
    for p in &pairs {
        menu.append_items(&[&p.label, &p.force, &p.revert])
            .map_err(err)?;
    }
    if !pairs.is_empty() {
        menu.append(&sep()).map_err(err)?;
    }
    menu.append(&agents).map_err(err)?;
    let accept_refs: Vec<&dyn IsMenuItem> = accepts.iter().map(|a| a as &dyn IsMenuItem).collect();
    menu.append_items(&accept_refs).map_err(err)?;
    if let Some(a) = &alerts {
        menu.append_items(&[&sep(), a]).map_err(err)?;
    }
    for site in &sites {
        menu.append_items(&[&sep(), &site.header, &site.servers])
            .map_err(err)?;
        for p in &site.pairs {
            menu.append_items(&[&p.label, &p.force, &p.revert])
                .map_err(err)?;
        }
        menu.append(&site.agents).map_err(err)?;
        for a in &site.accepts {
            menu.append(a).map_err(err)?;
        }
    }
    menu.append_items(&[
        &sep(),
        &roles,
        &cert,
        &sep(),
        &mute,
        &autostart,
        &open,
        &quit,
    ])
    .map_err(err)?;

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
fn pair_items(site: Option<&str>, p: &PairLine, running: bool) -> PairItems {
    let on = |a: Action| match site {
        Some(site) => Action::on_site(site, a),
        None => a,
    };
    let force = MenuItem::with_id(
        on(Action::ForceFailover(p.name.clone())).id(),
        p.force_failover.item_text(&force_name(&p.name)),
        running && p.force_failover.allowed,
        None,
    );
    let revert = MenuItem::with_id(
        on(Action::Revert(p.name.clone())).id(),
        p.revert.item_text(&revert_name(&p.name)),
        running && p.revert.allowed,
        None,
    );
    let info = match site {
        Some(site) => format!("info:site:{site}:pair:{}", p.name),
        None => format!("info:pair:{}", p.name),
    };
    let label = MenuItem::with_id(info, &p.label, false, None);
    PairItems {
        label,
        force,
        revert,
    }
}

fn site_items(s: &SiteSection) -> SiteItems {
    let site = s.site.as_str();
    let info = |what: &str, text: &str| {
        MenuItem::with_id(format!("info:site:{site}:{what}"), text, false, None)
    };
    let pairs = s
        .pairs
        .iter()
        .map(|p| pair_items(Some(site), p, s.running))
        .collect::<Vec<_>>();
    let accepts = s
        .pending
        .iter()
        .map(|name| {
            MenuItem::with_id(
                Action::on_site(site, Action::Accept(name.clone())).id(),
                format!("Accept {name}"),
                s.running,
                None,
            )
        })
        .collect::<Vec<_>>();
    SiteItems {
        header: info("header", &s.header),
        servers: info("servers", &s.servers),
        pairs,
        agents: info("agents", &s.agents),
        accepts,
    }
}

/// Writes a pair's items where they differ from what is shown (everything when `all`).
fn update_pairs(
    items: &[PairItems],
    old: &[PairLine],
    old_running: bool,
    new: &[PairLine],
    run: bool,
    all: bool,
) {
    for ((it, o), n) in items.iter().zip(old).zip(new) {
        if all || o.label != n.label {
            it.label.set_text(&n.label);
        }
        if all || o.force_failover != n.force_failover || old_running != run {
            it.force.set_enabled(run && n.force_failover.allowed);
            it.force
                .set_text(n.force_failover.item_text(&force_name(&n.name)));
        }
        if all || o.revert != n.revert || old_running != run {
            it.revert.set_enabled(run && n.revert.allowed);
            it.revert
                .set_text(n.revert.item_text(&revert_name(&n.name)));
        }
    }
}

fn update_site(items: &SiteItems, old: &SiteSection, new: &SiteSection, all: bool) {
    for (item, o, n) in [
        (&items.header, &old.header, &new.header),
        (&items.servers, &old.servers, &new.servers),
        (&items.agents, &old.agents, &new.agents),
    ] {
        if all || o != n {
            item.set_text(n);
        }
    }
    update_pairs(
        &items.pairs,
        &old.pairs,
        old.running,
        &new.pairs,
        new.running,
        all,
    );
    if all || old.running != new.running {
        for a in &items.accepts {
            a.set_enabled(new.running);
        }
    }
}

/// Writes only what changed between `old` and `new` (everything when `all`).
fn update_items(
    items: &Items,
    old: &MenuModel,
    old_flags: Flags,
    new: &MenuModel,
    flags: Flags,
    all: bool,
) {
    let run = new.running;
    if all || old.header != new.header {
        items.header.set_text(&new.header);
    }
    if all || old.link != new.link {
        items.link.set_text(&new.link);
    }
    if all || old.agents != new.agents {
        items.agents.set_text(&new.agents);
    }
    if let (Some(item), Some(text)) = (&items.alerts, &new.alerts_failing) {
        if all || old.alerts_failing.as_ref() != Some(text) {
            item.set_text(text);
        }
    }
    update_pairs(&items.pairs, &old.pairs, old.running, &new.pairs, run, all);
    for ((it, o), n) in items.sites.iter().zip(&old.sites).zip(&new.sites) {
        update_site(it, o, n, all);
    }
    if all || old.running != run {
        for a in &items.accepts {
            a.set_enabled(run);
        }
        items.server.set_enabled(run);
        items.agent.set_enabled(run);
        for (_, f) in &items.failover {
            f.set_enabled(run);
        }
        items.cert.set_enabled(run);
    }
    if all || old.server_role != new.server_role {
        items.server.set_checked(new.server_role);
    }
    if all || old.agent_role != new.agent_role {
        items.agent.set_checked(new.agent_role);
    }
    if all || old.failover_mode != new.failover_mode {
        for (mode, f) in &items.failover {
            f.set_checked(*mode == new.failover_mode);
        }
    }
    if all || old.standby != new.standby || old.running != run {
        items.standby.set_enabled(run && new.standby.allowed);
        items.standby.set_text(new.standby.item_text(STANDBY));
    }
    if all || old_flags.muted != flags.muted {
        items.mute.set_checked(flags.muted);
    }
    if all || old_flags.autostart != flags.autostart {
        items.autostart.set_checked(flags.autostart);
    }
    if all || old_flags.run_node != flags.run_node {
        items.run_node.set_checked(flags.run_node);
    }
}
