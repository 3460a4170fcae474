//! Desktop notifications (UI-2) with notify-rust: follows `GET /api/events?since=<last id>`,
//! coalesces bursts (`coalesce`), and shows one notification per code and burst. Clicking one
//! opens the window where the platform reports actions (XDG). Failing to notify is logged, never
//! fatal. Muting follows the node's `ui.notifications` setting, or the app's own flag when the
//! node has no settings endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use understudy_api::status::DesktopMessage;
use understudy_api::{ChannelSpec, Channels, EventQuery, Request, Status};

use crate::app::App;
use crate::coalesce::{desktop_notice, taken_by_desktop_channel, Coalescer, Event, Notice};
use crate::host::Host;

pub const POLL: Duration = Duration::from_millis(500);

/// The mute switch, shared by the tray and the event follower.
#[derive(Default)]
pub struct Mute {
    muted: AtomicBool,
    /// False once the node answered that it has no settings endpoint: the flag is then local.
    node_has_settings: AtomicBool,
}

impl Mute {
    pub fn new() -> Arc<Mute> {
        Arc::new(Mute {
            muted: AtomicBool::new(false),
            node_has_settings: AtomicBool::new(true),
        })
    }

    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// Reads `ui.notifications` from the node; keeps the local flag if the node has none.
    pub async fn refresh(&self, host: &Host) {
        if !self.node_has_settings.load(Ordering::Relaxed) {
            return;
        }
        let (status, body) = host.request(&Request::Settings).await;
        match status {
            200..=299 => {
                if let Some(enabled) = notifications_setting(&body) {
                    self.muted.store(!enabled, Ordering::Relaxed);
                }
            }
            404 | 405 => {
                tracing::info!("the node has no /api/settings; muting is kept in the app");
                self.node_has_settings.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Flips the switch, persisting it in the node when it can. Returns the new muted state.
    pub async fn toggle(&self, host: &Host) -> bool {
        let muted = !self.is_muted();
        self.muted.store(muted, Ordering::Relaxed);
        if self.node_has_settings.load(Ordering::Relaxed) {
            let (status, body) = host
                .request(&Request::SetSettings {
                    notifications: !muted,
                })
                .await;
            match status {
                200..=299 => {}
                404 | 405 => self.node_has_settings.store(false, Ordering::Relaxed),
                _ => {
                    tracing::warn!(status, %body, "could not save ui.notifications; kept in the app")
                }
            }
        }
        muted
    }
}

/// `ui.notifications` from the node's settings answer (`understudy_api::status::Settings`).
pub fn notifications_setting(settings: &Value) -> Option<bool> {
    understudy_api::status::Settings::deserialize(settings)
        .ok()
        .map(|s| s.notifications)
}

/// The events listed in an answer of `GET /api/events`, skipping any it cannot read.
pub fn parse_events(body: &Value) -> Vec<Event> {
    let list = body["events"].as_array().or_else(|| body.as_array());
    list.map(|l| {
        l.iter()
            .filter_map(|e| serde_json::from_value(e.clone()).ok())
            .collect()
    })
    .unwrap_or_default()
}

/// Fetches every event after `since`, in id order; `None` when the node cannot answer.
async fn fetch_after(host: &Host, since: u64) -> Option<Vec<Event>> {
    let (status, body) = host
        .request(&Request::Events(EventQuery {
            since,
            ..EventQuery::default()
        }))
        .await;
    if status != 200 {
        return None;
    }
    let mut events: Vec<Event> = parse_events(&body)
        .into_iter()
        .filter(|e| e.id > since)
        .collect();
    events.sort_by_key(|e| e.id);
    Some(events)
}

/// AL-7: shows a `desktop` alert channel's message (called by the node's sender while it acts).
/// Muted, it is counted as delivered: the operator chose not to see it.
pub fn show_desktop_message(app: &App, mute: &Mute, m: &DesktopMessage) -> Result<(), String> {
    let notice = desktop_notice(m);
    if mute.is_muted() {
        tracing::debug!(
            channel = m.channel,
            alerts = m.alerts.len(),
            "muted: not notified"
        );
        return Ok(());
    }
    tracing::info!(
        channel = m.channel,
        alerts = m.alerts.len(),
        summary = notice.summary,
        "notify"
    );
    send(app, &notice.summary, &notice.body, notice.critical)
        .map_err(|e| format!("could not show the notification: {e}"))
}

/// Whether this node acts and the site's `desktop` channels (AL-7), read now and then.
async fn desktop_channels(host: &Host) -> (bool, Vec<ChannelSpec>) {
    let acting = match host.request(&Request::Status).await {
        (200, body) => Status::deserialize(&body).is_ok_and(|s| s.node.acting),
        _ => false,
    };
    if !acting {
        return (false, Vec::new());
    }
    let channels = match host.request(&Request::Channels).await {
        (200, body) => Channels::deserialize(&body)
            .map(|c| c.channels)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    (acting, channels)
}

/// Follows the event log until the app exits. Events already in the log when the node came up
/// are not notified (they were seen, or were meant to be seen, before this run).
pub async fn follow_events(app: App, host: Host, mute: Arc<Mute>) {
    // The starting point: the newest event now, paging in case the node limits a page.
    let mut last = 0u64;
    loop {
        match fetch_after(&host, last).await {
            Some(events) if events.is_empty() => break,
            Some(events) => last = events.last().map(|e| e.id).unwrap_or(last),
            None => tokio::time::sleep(POLL).await,
        }
    }
    tracing::info!(last, "following events");

    let mut coalescer = Coalescer::new();
    let mut desktop = (false, Vec::new());
    let mut n: u64 = 0;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Wake for the next poll, or earlier when a burst is due.
        match coalescer.deadline() {
            Some(due) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep_until(Instant::from_std(due)) => {}
                }
            }
            None => {
                tick.tick().await;
            }
        }
        if n.is_multiple_of(4) {
            desktop = desktop_channels(&host).await;
        }
        n += 1;
        if let Some(mut events) = fetch_after(&host, last).await {
            if let Some(e) = events.last() {
                last = e.id;
            }
            events.retain(|e| !taken_by_desktop_channel(desktop.0, &desktop.1, &e.code));
            coalescer.handle_events(events, std::time::Instant::now());
        }
        for notice in coalescer.poll_notices(std::time::Instant::now()) {
            if mute.is_muted() {
                tracing::debug!(
                    code = notice.code,
                    count = notice.count,
                    "muted: not notified"
                );
                continue;
            }
            show(&app, &notice);
        }
    }
}

/// Shows one notification; a failure is logged and otherwise ignored.
pub fn show(app: &App, notice: &Notice) {
    tracing::info!(
        code = notice.code,
        count = notice.count,
        summary = notice.summary,
        "notify"
    );
    if let Err(e) = send(app, &notice.summary, &notice.body, notice.critical) {
        tracing::warn!(
            "could not show the notification \"{}\": {e}",
            notice.summary
        );
    }
}

/// An error the user caused by a click and should hear about, even when notifications are muted.
pub fn show_error(app: &App, summary: &str, reason: &str) {
    tracing::warn!("{summary}: {reason}");
    if let Err(e) = send(app, summary, reason, false) {
        tracing::warn!("could not show the notification \"{summary}\": {e}");
    }
}

/// `text` with the characters the XDG notification markup gives meaning to escaped.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(all(unix, not(target_os = "macos")))]
fn send(
    app: &App,
    summary: &str,
    body: &str,
    critical: bool,
) -> Result<(), notify_rust::error::Error> {
    use notify_rust::{Notification, Urgency};
    // XDG bodies are markup: a name or a reason must not become a link or an image.
    let handle = Notification::new()
        .appname("Understudy")
        .summary(summary)
        .body(&escape_markup(body))
        .icon("network-server")
        .urgency(if critical {
            Urgency::Critical
        } else {
            Urgency::Normal
        })
        .action("default", "Open window")
        .show()?;
    // Waits for the click (or the close) on its own thread: the XDG API blocks.
    let app = app.clone();
    std::thread::Builder::new()
        .name("notification-action".into())
        .spawn(move || {
            handle.wait_for_action(|action| {
                if action == "default" {
                    app.open_window();
                }
            })
        })
        .map(|_| ())
        .or_else(|e| {
            tracing::debug!("no thread to wait for the notification's click: {e}");
            Ok(())
        })
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn send(
    _app: &App,
    summary: &str,
    body: &str,
    _critical: bool,
) -> Result<(), notify_rust::error::Error> {
    // No click actions on these platforms.
    notify_rust::Notification::new()
        .appname("Understudy")
        .summary(summary)
        .body(body)
        .show()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn notification_bodies_carry_no_markup_from_names() {
        assert_eq!(
            escape_markup("<a href=\"https://x\">web</a> & <img src=x>"),
            "&lt;a href=&quot;https://x&quot;&gt;web&lt;/a&gt; &amp; &lt;img src=x&gt;"
        );
        assert_eq!(
            escape_markup("web-1 did SWITCHOVER."),
            "web-1 did SWITCHOVER."
        );
    }

    #[test]
    fn the_setting_is_read_as_the_node_answers_it() {
        let answer = serde_json::to_value(understudy_api::status::Settings {
            notifications: false,
        })
        .unwrap();
        assert_eq!(notifications_setting(&answer), Some(false));
        assert_eq!(
            notifications_setting(&json!({ "ui.notifications": true })),
            Some(true)
        );
        assert_eq!(notifications_setting(&json!({ "other": 1 })), None);
    }

    #[test]
    fn events_are_parsed_and_bad_entries_skipped() {
        let body = json!({ "events": [
            { "id": 3, "time_ms": 1, "code": "SWITCHOVER", "subject": "a", "sentence": "a switched over." },
            { "id": "x" },
            { "id": 4, "code": "CERT_GENERATED" }
        ]});
        let events = parse_events(&body);
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(events[1].sentence, "");
    }

    #[tokio::test]
    async fn mute_stays_local_when_the_node_has_no_settings() {
        let host = Host::new(); // not running: 503, so the node's answer is simply unknown
        let mute = Mute::new();
        mute.refresh(&host).await;
        assert!(!mute.is_muted());
        assert!(mute.toggle(&host).await);
        assert!(mute.is_muted());
    }
}
