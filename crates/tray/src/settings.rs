//! The desktop app's own settings (not the node's): kept in `<app dir>/settings.json`, mode 0600,
//! beside the joined sites (`sites::app_dir`).
//! One today, UI-5's "Run a node on this computer": on by default for a first start with no site
//! joined, off by default once a site is joined, and whatever the user chose once they chose.
//! The decision is `run_node`, a pure function; reading and writing the file are beside it.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file in the app directory.
pub const FILE: &str = "settings.json";

/// What the user set; `None`: never set, the default applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_node: Option<bool>,
}

/// Whether the tray process runs a node: the user's choice if they made one, else only while no
/// site is joined (a laptop that watches a site runs no server of its own).
pub fn run_node(chosen: Option<bool>, sites_joined: usize) -> bool {
    chosen.unwrap_or(sites_joined == 0)
}

/// The decision at start-up, from the app directory: the user's choice, else the default for the
/// sites joined. A settings file that cannot be read is reported and the default applies (the
/// file is left as it is).
pub fn decide() -> bool {
    let dir = match crate::sites::app_dir() {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!("{e}: running a node");
            return true;
        }
    };
    let chosen = load(&dir).unwrap_or_else(|e| {
        tracing::warn!("{e}; the default applies");
        Settings::default()
    });
    run_node(chosen.run_node, sites_joined(&dir))
}

/// The user turned "Run a node on this computer" on or off: kept as their explicit choice.
pub fn choose_run_node(on: bool) -> Result<(), String> {
    let dir = crate::sites::app_dir()?;
    let mut settings = load(&dir).unwrap_or_default();
    settings.run_node = Some(on);
    save(&dir, &settings)
}

/// How many sites the app has joined (UI-5, sites.json); an unreadable file counts as none
/// joined (the node, which needs no site, keeps running).
fn sites_joined(dir: &Path) -> usize {
    crate::sites::load(dir)
        .map(|s| s.len())
        .unwrap_or_else(|e| {
            tracing::warn!("{e}");
            0
        })
}

/// The settings in `dir`; none set when there is no file yet. An unreadable file is an error
/// (never silently replaced by defaults that could start or stop a node).
pub fn load(dir: &Path) -> Result<Settings, String> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not the app's settings: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Writes the settings (mode 0600, replaced whole so a crash leaves the old or the new file).
pub fn save(dir: &Path, settings: &Settings) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let text = serde_json::to_vec_pretty(settings).map_err(|e| e.to_string())?;
    write_private(&tmp, &text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui5_a_first_start_with_no_site_runs_a_node() {
        assert!(run_node(None, 0));
    }

    #[test]
    fn ui5_once_a_site_is_joined_no_node_runs_by_default() {
        assert!(!run_node(None, 1));
        assert!(!run_node(None, 3));
    }

    #[test]
    fn ui5_the_users_choice_wins_over_the_default() {
        assert!(run_node(Some(true), 2), "kept on with a site joined");
        assert!(!run_node(Some(false), 0), "turned off with no site");
    }

    #[test]
    fn ui5_settings_are_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Settings::default());
        let chosen = Settings {
            run_node: Some(false),
        };
        save(dir.path(), &chosen).unwrap();
        assert_eq!(load(dir.path()).unwrap(), chosen);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.contains("not the app's settings"), "{err}");
    }
}
