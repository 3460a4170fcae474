//! UI-5: the tray process's tasks for the remote sites in `sites.json` (`sites`). Per site:
//!
//! - a **status poll** every 500 ms of the server the tray follows, for the menu. When that
//!   server says it is STANDBY or stops answering and the other answers as not STANDBY, the tray
//!   follows the other ("now following s2", the tray's own failover). No server answering: the
//!   site is unreachable (one notification, not one per retry). 401/403: access revoked (one
//!   notification), and the site's tasks stop until it is joined again.
//! - an **event follower** ([`understudy_node::follow::Follower`], long polling from the stable
//!   event key stored as `after`): each batch becomes its notices at once (one per code, as UI-2
//!   coalesces), then `after` is stored, so each event is notified once across reconnects,
//!   failovers and restarts of the app.
//!
//! The menu's actions for a site go to the server followed, with the site's token. Nothing here
//! decides about the site: its status is shown as the engine wrote it (`model::SiteSection`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use understudy_api::{RefusalKind, Request, Status};
use understudy_node::follow::{FollowError, Follower};
use understudy_node::http_client::AdminClient;
use understudy_node::tls::Pins;

use crate::coalesce::{Coalescer, Event, Notice};
use crate::host::UNREACHABLE;
use crate::model::{SiteSection, SiteState};
use crate::sites::{self, SiteEntry};

/// How often a site's status is read (as the embedded node's, UI-3).
pub const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long one status read or action may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often sites.json is looked at for sites joined or removed by another process.
pub const FILE_POLL: Duration = Duration::from_secs(1);
/// The pause after the event follower found no server answering, before it asks again.
const FOLLOW_RETRY: Duration = Duration::from_millis(500);

/// Shows a notice (the tray process's notifier: mute, D-Bus).
pub type Notify = Arc<dyn Fn(&Notice) + Send + Sync>;

/// One site's live state, shared by its tasks and the menu.
struct Live {
    entry: SiteEntry,
    state: SiteState,
    /// Index in `entry.servers` of the server followed.
    current: usize,
}

struct Site {
    live: Arc<Mutex<Live>>,
    clients: Vec<AdminClient>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Every followed site (cheap to clone).
#[derive(Clone)]
pub struct Sites {
    /// The app directory holding sites.json; `None`: there is none (no home), no site.
    dir: Option<PathBuf>,
    notify: Notify,
    sites: Arc<Mutex<BTreeMap<String, Site>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sites {
    pub fn new(dir: Option<PathBuf>, notify: Notify) -> Sites {
        Sites {
            dir,
            notify,
            sites: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The menu's sections, one per site in name order.
    pub fn sections(&self) -> Vec<SiteSection> {
        lock(&self.sites)
            .iter()
            .map(|(name, site)| {
                let live = lock(&site.live);
                SiteSection::new(name, &live.entry.label, &live.state)
            })
            .collect()
    }

    /// Sends `request` to the server the tray follows for `site`, with the site's token.
    pub async fn request(&self, site: &str, request: &Request) -> (u16, Value) {
        let client = {
            let sites = lock(&self.sites);
            match sites.get(site) {
                Some(s) => s.clients[lock(&s.live).current].clone(),
                None => {
                    return (
                        404,
                        json!({ "error": format!("the site {site} is not followed any more") }),
                    )
                }
            }
        };
        let call = request.to_http();
        match client
            .call(call.method, &call.path, call.body.as_ref())
            .await
        {
            Ok(answer) => answer,
            Err(e) => (
                UNREACHABLE,
                json!({ "error": format!("cannot reach the site {site}: {e}") }),
            ),
        }
    }

    /// Reads sites.json and makes the tasks match it: starts new sites, stops removed ones,
    /// restarts those joined again (another token or servers).
    pub fn reload(&self) {
        let Some(dir) = &self.dir else { return };
        let entries = match sites::load(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let mut sites = lock(&self.sites);
        sites.retain(|name, site| {
            let keep = entries
                .iter()
                .any(|e| e.site == *name && e.same_access(&lock(&site.live).entry));
            if !keep {
                tracing::info!(site = name, "no longer following the site");
            }
            keep
        });
        for entry in entries {
            if sites.contains_key(&entry.site) {
                // The label may have changed; the position is the tasks' own.
                lock(&sites[&entry.site].live).entry.label = entry.label.clone();
                continue;
            }
            match self.start(dir, entry.clone()) {
                Ok(site) => {
                    tracing::info!(site = entry.site, servers = ?entry.addresses(), "following the site");
                    sites.insert(entry.site.clone(), site);
                }
                Err(e) => tracing::warn!(site = entry.site, "cannot follow the site: {e}"),
            }
        }
    }

    fn start(&self, dir: &Path, entry: SiteEntry) -> Result<Site, String> {
        let clients = entry
            .servers
            .iter()
            .map(|url| {
                AdminClient::new(url, &entry.token, Pins::new([]))
                    .map(|c| c.with_timeout(CALL_TIMEOUT))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err("no server".into());
        }
        // Refused before (sites.json says so): shown as such, and nothing is asked or notified.
        if let Some(reason) = entry.revoked.clone() {
            tracing::info!(
                site = entry.site,
                "access to the site was revoked: not followed"
            );
            let live = Live {
                entry,
                state: SiteState::Revoked { reason },
                current: 0,
            };
            return Ok(Site {
                live: Arc::new(Mutex::new(live)),
                clients,
                tasks: Vec::new(),
            });
        }
        let live = Arc::new(Mutex::new(Live {
            entry: entry.clone(),
            state: SiteState::Connecting,
            current: 0,
        }));
        let follower = Follower::new(&entry.servers, &entry.token, entry.after.clone())?;
        let poll = tokio::spawn(poll_status(
            live.clone(),
            clients.clone(),
            dir.to_path_buf(),
            self.notify.clone(),
        ));
        let events = tokio::spawn(follow_events(
            live.clone(),
            follower,
            dir.to_path_buf(),
            self.notify.clone(),
        ));
        Ok(Site {
            live,
            clients,
            tasks: vec![poll, events],
        })
    }

    /// Follows sites.json until the app exits: reloads when its modification time changes.
    pub async fn watch(self) {
        let Some(dir) = &self.dir else { return };
        let path = sites::path(dir);
        let mut seen: Option<SystemTime> = None;
        let mut first = true;
        loop {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if first || mtime != seen {
                seen = mtime;
                first = false;
                self.reload();
            }
            tokio::time::sleep(FILE_POLL).await;
        }
    }
}

fn now_hhmm() -> String {
    chrono::Local::now().format("%H:%M").to_string()
}

/// A notice of the site itself (not one of its events).
fn site_notice(site: &str, code: &str, summary: String, body: String, critical: bool) -> Notice {
    Notice {
        code: format!("{code}:{site}"),
        count: 1,
        summary,
        body,
        critical,
    }
}

fn error_text(status: u16, body: &Value) -> String {
    body["error"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("status {status}"))
}

/// What one server said to a status read.
enum Answer {
    Status(Box<Status>),
    Refused(String),
    Failed(String),
}

async fn read_status(client: &AdminClient) -> Answer {
    let call = Request::Status.to_http();
    match client.call(call.method, &call.path, None).await {
        Ok((200, body)) => match serde_json::from_value::<Status>(body) {
            Ok(status) => Answer::Status(Box::new(status)),
            Err(e) => Answer::Failed(format!("an unreadable status: {e}")),
        },
        Ok((code @ (401 | 403), body)) => Answer::Refused(error_text(code, &body)),
        Ok((code, body)) => Answer::Failed(error_text(code, &body)),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

fn is_standby(status: &Status) -> bool {
    status.node.failover.state.eq_ignore_ascii_case("standby")
}

/// Reads the status of the server followed and, when it is STANDBY or does not answer, of the
/// other: the answer to show and the server to follow from now on. The other is followed when
/// it answers as not STANDBY, or at all while the followed one does not answer (during a
/// takeover the STANDBY answers before it is promoted).
async fn choose(clients: &[AdminClient], current: usize) -> (Answer, usize) {
    let answer = read_status(&clients[current]).await;
    let standby = match &answer {
        Answer::Status(s) if is_standby(s) => true,
        Answer::Failed(_) => false,
        _ => return (answer, current),
    };
    if clients.len() < 2 {
        return (answer, current);
    }
    let other = (current + 1) % clients.len();
    match read_status(&clients[other]).await {
        Answer::Status(s) if !standby || !is_standby(&s) => (Answer::Status(s), other),
        refused @ Answer::Refused(_) => (refused, other),
        // Both STANDBY, or the other does not answer either: as it was.
        Answer::Status(_) | Answer::Failed(_) => (answer, current),
    }
}

/// The status poll of one site (see the module).
async fn poll_status(
    live: Arc<Mutex<Live>>,
    clients: Vec<AdminClient>,
    dir: PathBuf,
    notify: Notify,
) {
    let site = lock(&live).entry.site.clone();
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = lock(&live).current;
        let (answer, followed) = choose(&clients, current).await;
        let mut l = lock(&live);
        if matches!(l.state, SiteState::Revoked { .. }) {
            return; // the event follower was refused
        }
        let was = std::mem::replace(&mut l.state, SiteState::Connecting);
        let moved = followed != l.current;
        l.current = followed;
        match answer {
            Answer::Status(status) => {
                let server = status.node.name.clone();
                if moved {
                    tracing::info!(site, server, "now following {server}");
                    notify(&site_notice(
                        &site,
                        "SITE_FOLLOWING",
                        format!("{}: now following {server}", label_of(&l)),
                        format!(
                            "{} did not answer as the site's active server; the tray follows {server} ({}).",
                            l.entry.addresses()[current],
                            l.entry.addresses()[followed]
                        ),
                        false,
                    ));
                } else if let SiteState::Unreachable { .. } = was {
                    notify(&site_notice(
                        &site,
                        "SITE_REACHABLE",
                        format!("{}: reachable again", label_of(&l)),
                        format!("{server} answers again."),
                        false,
                    ));
                }
                l.state = SiteState::Following { server, status };
            }
            Answer::Failed(reason) => {
                l.state = match was {
                    SiteState::Unreachable { since, .. } => {
                        SiteState::Unreachable { since, reason }
                    }
                    _ => {
                        let since = now_hhmm();
                        tracing::warn!(site, reason, "the site is unreachable");
                        notify(&site_notice(
                            &site,
                            "SITE_UNREACHABLE",
                            format!("{}: unreachable", label_of(&l)),
                            format!("No server of the site answers since {since}: {reason}"),
                            true,
                        ));
                        SiteState::Unreachable { since, reason }
                    }
                };
            }
            Answer::Refused(reason) => {
                revoke(&mut l, &dir, reason, &notify);
                return;
            }
        }
    }
}

fn label_of(l: &Live) -> String {
    if l.entry.label.is_empty() {
        l.entry.site.clone()
    } else {
        l.entry.label.clone()
    }
}

/// The site refused the token: shown and notified once — and recorded in sites.json, so that
/// a restart of the app neither asks nor notifies again; the caller's task ends.
fn revoke(l: &mut Live, dir: &Path, reason: String, notify: &Notify) {
    if matches!(l.state, SiteState::Revoked { .. }) {
        return;
    }
    let site = l.entry.site.clone();
    tracing::warn!(site, reason, "access to the site revoked");
    if let Err(e) = sites::set_revoked(dir, &l.entry, &reason) {
        tracing::warn!(site, "could not record the revocation: {e}");
    }
    notify(&site_notice(
        &site,
        "SITE_REVOKED",
        format!("{}: access revoked", label_of(l)),
        format!("The site refuses this desktop's token ({reason}). Join it again with a new invitation."),
        true,
    ));
    l.state = SiteState::Revoked { reason };
}

/// The event follower of one site (see the module).
async fn follow_events(
    live: Arc<Mutex<Live>>,
    mut follower: Follower,
    dir: PathBuf,
    notify: Notify,
) {
    let (site, entry) = {
        let l = lock(&live);
        (l.entry.site.clone(), l.entry.clone())
    };
    // A site joined just now: its past is not news. Start after its newest event.
    if entry.after.is_none() {
        skip_to_newest(&mut follower, &live).await;
        if let Some(key) = follower.after() {
            store_after(&dir, &entry, key);
        }
    }
    loop {
        if matches!(lock(&live).state, SiteState::Revoked { .. }) {
            return;
        }
        match follower.next().await {
            Ok(events) if events.is_empty() => {}
            Ok(events) => {
                let label = label_of(&lock(&live));
                let now = std::time::Instant::now();
                let mut coalescer = Coalescer::new();
                coalescer.handle_events(
                    events.iter().map(|e| Event {
                        id: e.id,
                        time_ms: e.time_ms.max(0) as u64,
                        code: e.code.clone(),
                        subject: e.subject.clone(),
                        sentence: e.sentence.clone(),
                    }),
                    now,
                );
                // One batch is one burst: shown as soon as it arrives.
                for mut notice in coalescer.poll_notices(now + crate::coalesce::WINDOW) {
                    notice.summary = format!("{label}: {}", notice.summary);
                    notify(&notice);
                }
                if let Some(key) = follower.after() {
                    store_after(&dir, &entry, key);
                }
            }
            Err(FollowError::Moved { from, to, why }) => {
                tracing::debug!(site, from, to, why, "events: moved");
                tokio::time::sleep(FOLLOW_RETRY).await;
            }
            Err(FollowError::Refused(r))
                if matches!(r.kind, RefusalKind::Unauthorized | RefusalKind::Forbidden) =>
            {
                revoke(&mut lock(&live), &dir, r.reason, &notify);
                return;
            }
            Err(FollowError::Refused(r)) => {
                tracing::warn!(site, "events refused: {}", r.reason);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Reads the site's events without notifying them until there are no more: the follower then
/// resumes after the newest.
async fn skip_to_newest(follower: &mut Follower, live: &Arc<Mutex<Live>>) {
    // Without `after` the server answers the log from its start, a page at a time: the last
    // page is the one that is not full. An empty log makes the long poll wait: then there is
    // nothing to skip (the call is dropped, the cursor stays at the start, and whatever comes
    // now is notified).
    loop {
        if matches!(lock(live).state, SiteState::Revoked { .. }) {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(2), follower.next()).await {
            Ok(Ok(events)) if events.len() >= understudy_api::defaults::EVENTS_LIMIT => continue,
            Ok(Ok(_)) | Err(_) => return,
            Ok(Err(FollowError::Moved { .. })) => tokio::time::sleep(FOLLOW_RETRY).await,
            Ok(Err(FollowError::Refused(_))) => return,
        }
    }
}

fn store_after(dir: &Path, entry: &SiteEntry, key: &str) {
    if let Err(e) = sites::set_after(dir, entry, key) {
        tracing::warn!(
            site = entry.site,
            "could not store the last event notified: {e}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site that refused this desktop's token before is, after a restart of the app, shown as
    /// revoked without a connection to its servers and without a notification.
    #[tokio::test]
    async fn ui5_a_revoked_site_is_neither_asked_nor_notified_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let entry = SiteEntry {
            site: "t1".into(),
            servers: vec![format!(
                "https://{}#{}",
                server.local_addr().unwrap(),
                "ab".repeat(32)
            )],
            token: "cd".repeat(32),
            label: "t1".into(),
            after: None,
            revoked: None,
        };
        sites::store(dir.path(), entry.clone()).unwrap();
        sites::set_revoked(dir.path(), &entry, "a valid admin token is required").unwrap();
        assert_eq!(
            sites::load(dir.path()).unwrap()[0].revoked.as_deref(),
            Some("a valid admin token is required")
        );

        let notified = Arc::new(Mutex::new(Vec::new()));
        let notify: Notify = {
            let notified = notified.clone();
            Arc::new(move |n: &Notice| lock(&notified).push(n.summary.clone()))
        };
        let followed = Sites::new(Some(dir.path().to_path_buf()), notify);
        followed.reload();
        tokio::time::sleep(STATUS_POLL * 3).await;

        let sections = followed.sections();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].header, "Site t1 — access revoked");
        assert!(
            lock(&notified).is_empty(),
            "notified again: {:?}",
            lock(&notified)
        );
        assert!(
            server.accept().is_err(),
            "the revoked site's server was connected to"
        );

        // Joined again (a new token): followed again, the revocation forgotten.
        let mut again = entry.clone();
        again.token = "ef".repeat(32);
        sites::store(dir.path(), again).unwrap();
        assert_eq!(sites::load(dir.path()).unwrap()[0].revoked, None);
    }
}
