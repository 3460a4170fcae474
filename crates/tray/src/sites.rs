//! UI-5: the remote sites this desktop follows, kept in `<app dir>/sites.json` (mode 0600: it
//! holds each site's operator token). One entry per site: its servers as invitations name them
//! (`https://HOST:PORT#FINGERPRINT`, pinned), the token, a label, and the key of the last event
//! notified (`after`), so that a restart of the app does not notify old events again.
//!
//! [`join`] is "Connect to a site…" and `understudy-desktop --join`: it reads the invitation,
//! checks that a server of the site presents the certificate the invitation names and accepts
//! the token, and only then stores the site. Free of Tauri types: the tray's site tasks and the
//! window's dialog both call it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use understudy_api::invite::{Invitation, TokenKind};
use understudy_node::http_client::{AdminClient, ClientError};
use understudy_node::tls::{Pins, TlsError};

/// The file, in the app directory.
pub const FILE_NAME: &str = "sites.json";
/// Overrides the app directory (tests; a second profile).
pub const DIR_ENV: &str = "UNDERSTUDY_DESKTOP_DIR";
/// How long joining waits for one server.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One followed site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteEntry {
    /// The site's name (the invitation's `site`: the server that made it).
    pub site: String,
    /// `https://HOST:PORT#FINGERPRINT`, the invitation's order (the inviting server first).
    pub servers: Vec<String>,
    /// The operator (or admin) token, 64 hex digits.
    pub token: String,
    /// What the menu calls it (the site's name unless the user renames it).
    #[serde(default)]
    pub label: String,
    /// The key (`ORIGIN:N`) of the last event notified; `None`: none yet.
    #[serde(default)]
    pub after: Option<String>,
    /// The site refused this token (401/403), with its reason: shown, never asked again, and
    /// not notified again after a restart of the app. Joining again (a new token) clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

impl SiteEntry {
    /// The servers as `https://HOST:PORT`, without their fingerprints (for display).
    pub fn addresses(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| s.split('#').next().unwrap_or(s).to_string())
            .collect()
    }

    /// Whether `other` is the same subscription (same site, servers and token): a change of
    /// any of them means the site's tasks start again; a new `after` or label does not.
    pub fn same_access(&self, other: &SiteEntry) -> bool {
        self.site == other.site && self.servers == other.servers && self.token == other.token
    }
}

/// The file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SitesFile {
    #[serde(default)]
    sites: Vec<SiteEntry>,
}

/// The app's own directory: `UNDERSTUDY_DESKTOP_DIR`, else the platform's data directory for
/// the desktop app (`~/.local/share/understudy-desktop` on Linux; the node's directory is
/// separate, so a desktop without a node keeps its sites).
pub fn app_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("org", "Understudy", "understudy-desktop")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| format!("no home directory: set {DIR_ENV}"))
}

/// The path of the store in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The sites stored in `dir` (none when there is no file yet).
pub fn load(dir: &Path) -> Result<Vec<SiteEntry>, String> {
    let path = path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<SitesFile>(&bytes)
            .map(|f| f.sites)
            .map_err(|e| format!("{}: not a list of sites: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn save(dir: &Path, sites: Vec<SiteEntry>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = path(dir);
    let mut bytes = serde_json::to_vec_pretty(&SitesFile { sites }).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    understudy_node::fsutil::write_atomic(&path, &bytes, 0o600)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Adds `entry`, replacing the entry of the same site (one entry per site).
pub fn store(dir: &Path, entry: SiteEntry) -> Result<(), String> {
    let mut sites = load(dir)?;
    match sites.iter_mut().find(|s| s.site == entry.site) {
        Some(old) => *old = entry,
        None => sites.push(entry),
    }
    save(dir, sites)
}

/// Forgets `site`; `Ok(false)` when it was not stored.
pub fn remove(dir: &Path, site: &str) -> Result<bool, String> {
    let mut sites = load(dir)?;
    let before = sites.len();
    sites.retain(|s| s.site != site);
    if sites.len() == before {
        return Ok(false);
    }
    save(dir, sites).map(|()| true)
}

/// Records that the site refused `entry`'s token (see `SiteEntry::revoked`). Only for the same
/// access, as `set_after`.
pub fn set_revoked(dir: &Path, entry: &SiteEntry, reason: &str) -> Result<(), String> {
    let mut sites = load(dir)?;
    match sites.iter_mut().find(|s| s.same_access(entry)) {
        Some(s) if s.revoked.as_deref() != Some(reason) => s.revoked = Some(reason.to_string()),
        _ => return Ok(()),
    }
    save(dir, sites)
}

/// Records that the events of `entry`'s site up to `key` were notified. Only for the same
/// access: a site removed or joined again meanwhile (another process may have written the file)
/// is left as it is.
pub fn set_after(dir: &Path, entry: &SiteEntry, key: &str) -> Result<(), String> {
    let mut sites = load(dir)?;
    match sites.iter_mut().find(|s| s.same_access(entry)) {
        Some(s) if s.after.as_deref() != Some(key) => s.after = Some(key.to_string()),
        _ => return Ok(()),
    }
    save(dir, sites)
}

/// Joins the site an invitation names (see the module): refuses agent and peer invitations,
/// finds the first server that answers, checks its certificate against the invitation's
/// fingerprint and the token against `GET /api/status`, then stores the site in `dir`
/// (replacing its entry if it was joined before). Nothing is stored when any check fails.
pub async fn join(dir: &Path, invitation_text: &str) -> Result<SiteEntry, String> {
    let invitation = Invitation::parse(invitation_text)?;
    match invitation.kind {
        TokenKind::Operator | TokenKind::Admin => {}
        kind => {
            return Err(format!(
            "this is an {} invitation: it joins {} with `understudy init --join`, not a desktop \
                 (ask for `understudy invite` without --agent or --peer)",
            kind.as_str(),
            if kind == TokenKind::Agent {
                "an agent"
            } else {
                "a standby server"
            }
        ))
        }
    }
    let mut unreachable = Vec::new();
    let mut answered = false;
    for server in &invitation.servers {
        let client = AdminClient::new(&server.url(), &invitation.token, Pins::new([]))
            .map_err(|e| e.to_string())?
            .with_timeout(JOIN_TIMEOUT);
        let call = understudy_api::Request::Status.to_http();
        match client.call(call.method, &call.path, None).await {
            Ok((200, _)) => {
                answered = true;
                break;
            }
            Ok((status, body)) => {
                let reason = body["error"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| body.to_string());
                return Err(format!(
                    "{} refused the invitation's token ({status}: {reason}); nothing was stored",
                    server.address
                ));
            }
            Err(ClientError::Tls(e @ TlsError::NotPinned { .. })) => {
                return Err(format!(
                    "{} does not present the certificate the invitation names ({e}); nothing was stored",
                    server.address
                ));
            }
            Err(e) => unreachable.push(e.to_string()),
        }
    }
    if !answered {
        return Err(format!(
            "no server of site {} answered ({}); nothing was stored",
            invitation.site,
            unreachable.join("; ")
        ));
    }
    let entry = SiteEntry {
        site: invitation.site.clone(),
        servers: invitation.servers.iter().map(|s| s.url()).collect(),
        token: invitation.token.clone(),
        label: invitation.site.clone(),
        after: None,
        revoked: None,
    };
    store(dir, entry.clone())?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_node::TestNode;
    use understudy_api::invite::InvitedServer;

    /// A real server node, started in this process.
    fn server(name: &str) -> TestNode {
        TestNode::new(name, understudy_node::Role::Server, true)
    }

    impl TestNode {
        fn join(&self, dir: &Path, text: &str) -> Result<SiteEntry, String> {
            self.runtime.block_on(join(dir, text))
        }
    }

    fn entry(site: &str, token: &str) -> SiteEntry {
        SiteEntry {
            site: site.into(),
            servers: vec![format!("https://127.0.0.1:1#{}", "ab".repeat(32))],
            token: token.into(),
            label: site.into(),
            after: None,
            revoked: None,
        }
    }

    #[test]
    fn ui5_joining_checks_the_server_then_stores_the_site_0600() {
        let server = server("s1");
        let dir = tempfile::tempdir().unwrap();
        let text = server.invite("operator");
        let joined = server.join(dir.path(), &text).expect("joined");
        assert_eq!(joined.site, "s1");
        assert_eq!(
            joined.servers,
            vec![format!("https://{}#{}", server.address, server.fingerprint)]
        );
        assert_eq!(load(dir.path()).unwrap(), vec![joined.clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }

        // Joining again replaces the token: still one entry for the site.
        let again = server.join(dir.path(), &server.invite("operator")).unwrap();
        assert_ne!(again.token, joined.token);
        assert_eq!(load(dir.path()).unwrap(), vec![again]);
    }

    #[test]
    fn ui5_a_wrong_fingerprint_is_refused_and_nothing_is_stored() {
        let server = server("s1");
        let dir = tempfile::tempdir().unwrap();
        let mut invitation = Invitation::parse(&server.invite("operator")).unwrap();
        invitation.servers[0].fingerprint = "0".repeat(64);
        let err = server.join(dir.path(), &invitation.encode()).unwrap_err();
        assert!(
            err.contains("does not present the certificate") && err.contains("nothing was stored"),
            "{err}"
        );
        assert!(!path(dir.path()).exists());
    }

    #[test]
    fn ui5_a_token_the_server_does_not_know_is_refused() {
        let server = server("s1");
        let dir = tempfile::tempdir().unwrap();
        let mut invitation = Invitation::parse(&server.invite("operator")).unwrap();
        invitation.token = "1".repeat(64);
        let err = server.join(dir.path(), &invitation.encode()).unwrap_err();
        assert!(err.contains("refused the invitation's token (401"), "{err}");
        assert!(load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn ui5_agent_and_peer_invitations_are_not_for_a_desktop() {
        let server = server("s1");
        let dir = tempfile::tempdir().unwrap();
        for (kind, says) in [("agent", "an agent"), ("peer", "a standby server")] {
            let err = server.join(dir.path(), &server.invite(kind)).unwrap_err();
            assert!(err.contains(&format!("{kind} invitation")), "{err}");
            assert!(err.contains(says), "{err}");
        }
        assert!(!path(dir.path()).exists());
        let err = server
            .join(dir.path(), "understudy://join/1?site=x")
            .unwrap_err();
        assert!(err.contains("cut short"), "{err}");
    }

    #[test]
    fn ui5_the_next_server_is_tried_when_the_first_does_not_answer() {
        let server = server("s1");
        let dir = tempfile::tempdir().unwrap();
        let mut invitation = Invitation::parse(&server.invite("operator")).unwrap();
        // A port nothing listens on (bound, then closed), first.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap().to_string();
        drop(closed);
        invitation.servers.insert(
            0,
            InvitedServer {
                address: dead.clone(),
                fingerprint: "cd".repeat(32),
            },
        );
        let joined = server.join(dir.path(), &invitation.encode()).unwrap();
        assert_eq!(joined.servers.len(), 2);
        assert!(joined.servers[0].starts_with(&format!("https://{dead}#")));

        // None answers: refused, nothing stored.
        invitation.servers.truncate(1);
        let other = tempfile::tempdir().unwrap();
        let err = server.join(other.path(), &invitation.encode()).unwrap_err();
        assert!(err.contains("no server of site s1 answered"), "{err}");
        assert!(!path(other.path()).exists());
    }

    #[test]
    fn ui5_sites_are_removed_and_their_last_event_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let (a, b) = (entry("a", &"1".repeat(64)), entry("b", &"2".repeat(64)));
        store(dir.path(), a.clone()).unwrap();
        store(dir.path(), b.clone()).unwrap();
        set_after(dir.path(), &a, "a:7").unwrap();
        let sites = load(dir.path()).unwrap();
        assert_eq!(sites[0].after.as_deref(), Some("a:7"));
        assert_eq!(sites[1].after, None);

        // A site joined again with another token is not given the old follower's position.
        let a2 = entry("a", &"3".repeat(64));
        store(dir.path(), a2.clone()).unwrap();
        set_after(dir.path(), &a, "a:9").unwrap();
        assert_eq!(load(dir.path()).unwrap()[0], a2);

        assert!(remove(dir.path(), "a").unwrap());
        assert!(!remove(dir.path(), "a").unwrap());
        assert_eq!(load(dir.path()).unwrap(), vec![b]);
        // A removed site stays removed when its follower records an event afterwards.
        set_after(dir.path(), &a2, "a:10").unwrap();
        assert_eq!(load(dir.path()).unwrap().len(), 1);

        std::fs::write(path(dir.path()), "{not json").unwrap();
        assert!(load(dir.path())
            .unwrap_err()
            .contains("not a list of sites"));
    }
}
