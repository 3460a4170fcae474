//! UI-5 in the window process: the nodes the console can show — this computer's (the tray's
//! node, when "Run a node on this computer" is on) and each joined site — and where an `admin`
//! request for one of them goes. A site is read from `sites.json` (`sites`), which the tray,
//! `--join` and the window's own "Connect to a site…" all write; its `Admin` is made once per
//! servers-and-token and kept (`host::site`: the ACTIVE server, the site's token, pinned TLS).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use crate::host::{self, Admin, Host};
use crate::settings;
use crate::sites::{self, SiteEntry};

/// The status of a request for a site that is not (or no longer) joined.
pub const NO_SUCH_SITE: u16 = 404;

/// A joined site as the window lists it: never its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteView {
    pub name: String,
    pub label: String,
    pub servers: Vec<String>,
}

impl From<&SiteEntry> for SiteView {
    fn from(e: &SiteEntry) -> SiteView {
        SiteView {
            name: e.site.clone(),
            label: e.label.clone(),
            servers: e.addresses(),
        }
    }
}

/// What the switcher offers (ui/src/sites.ts `Targets`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetsView {
    /// This computer runs a node.
    pub local: bool,
    pub sites: Vec<SiteView>,
}

/// Each site's `Admin`, with the entry it was made from.
type SiteCache = HashMap<String, (SiteEntry, Arc<dyn Admin>)>;

/// The window process's targets; managed as Tauri state.
pub struct Targets {
    local: Host,
    app_dir: Result<PathBuf, String>,
    /// The `Admin` of each site asked for, with the entry it was made from.
    sites: Mutex<SiteCache>,
}

impl Targets {
    /// `local`: the tray's node; `app_dir`: where the app keeps sites.json and its settings.
    pub fn new(local: Host, app_dir: Result<PathBuf, String>) -> Targets {
        Targets {
            local,
            app_dir,
            sites: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self) -> Result<&PathBuf, String> {
        self.app_dir.as_ref().map_err(Clone::clone)
    }

    /// This computer's node (if the setting says it runs one) and every joined site.
    pub fn list(&self) -> Result<TargetsView, String> {
        let dir = self.dir()?;
        let joined = sites::load(dir)?;
        let chosen = settings::load(dir)?.run_node;
        Ok(TargetsView {
            local: settings::run_node(chosen, joined.len()),
            sites: joined.iter().map(SiteView::from).collect(),
        })
    }

    /// "Connect to a site…": checks the invitation against the site (pinned certificate, token
    /// accepted) and stores it; the refusal's reason as `sites::join` gives it.
    pub async fn join(&self, invitation: &str) -> Result<SiteView, String> {
        let dir = self.dir()?.clone();
        let entry = sites::join(&dir, invitation).await?;
        Ok(SiteView::from(&entry))
    }

    /// Forgets a joined site (the tray stops following it when it reads the file again).
    pub fn remove(&self, site: &str) -> Result<(), String> {
        let dir = self.dir()?;
        if !sites::remove(dir, site)? {
            return Err(format!("no site {site} is joined"));
        }
        self.lock().remove(site);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SiteCache> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Admin` of a joined site, made again when its servers or token changed.
    fn site(&self, name: &str) -> Result<Arc<dyn Admin>, (u16, String)> {
        let dir = self.dir().map_err(|e| (NO_SUCH_SITE, e))?;
        let joined = sites::load(dir).map_err(|e| (NO_SUCH_SITE, e))?;
        let Some(entry) = joined.into_iter().find(|e| e.site == name) else {
            self.lock().remove(name);
            return Err((NO_SUCH_SITE, format!("no site {name} is joined")));
        };
        let mut cache = self.lock();
        if let Some((made_from, admin)) = cache.get(name) {
            if made_from.same_access(&entry) {
                return Ok(admin.clone());
            }
        }
        let admin =
            host::site(&entry.site, &entry.servers, &entry.token).map_err(|e| (NO_SUCH_SITE, e))?;
        cache.insert(name.to_string(), (entry, admin.clone()));
        Ok(admin)
    }

    /// One admin request for a target: `None` is this computer's node.
    pub async fn admin(
        &self,
        site: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        match site {
            None => self.local.admin(method, path, body).await,
            Some(name) => match self.site(name) {
                Ok(admin) => admin.admin(method, path, body).await,
                Err((status, error)) => (status, json!({ "error": error })),
            },
        }
    }
}
