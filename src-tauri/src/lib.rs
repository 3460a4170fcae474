//! The Understudy desktop app: a tray icon, a console window and desktop notifications around
//! the runtime, which runs in this process (`host`).
//!
//! Architecture invariant: the Tauri crate holds no policy. Every question and every action goes
//! through the node's one admin handler (`Host::admin`), exactly as the CLI and the HTTPS admin
//! API do; the pure modules (`model`, `coalesce`) only turn its JSON into labels and notices.
//!
//! Tasks: one polls `GET /api/status` for the tray every 500 ms, one follows the event log for
//! notifications; menu clicks each spawn a short task. The window is made when opened and
//! destroyed when closed; the app lives on in the tray until Quit stops the node.

pub mod coalesce;
pub mod commands;
pub mod host;
pub mod model;
pub mod notify;
mod tray;
mod window;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt};

use crate::host::Host;
use crate::model::{Action, MenuModel};
use crate::notify::Mute;
use crate::tray::{Flags, Tray};

/// How often the tray reads the status (UI-3: the menu follows every change within a second).
const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long Quit waits for the node to stop cleanly.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// Given by the login item so that a start at login stays in the tray.
const HIDDEN_ARG: &str = "--hidden";

/// The app's shared state, managed by Tauri beside `Host`.
struct Shell {
    tray: Arc<Tray>,
    mute: Arc<Mute>,
    autostart: AtomicBool,
}

pub fn run() {
    init_tracing();
    let hidden = std::env::args().any(|a| a == HIDDEN_ARG);
    let host = Host::new();

    let app = tauri::Builder::default()
        // First: a second launch only opens the first instance's window.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| window::open(app)))
        .plugin(tauri_plugin_autostart::init(MacosLauncher::LaunchAgent, Some(vec![HIDDEN_ARG])))
        .manage(host.clone())
        .invoke_handler(tauri::generate_handler![commands::admin])
        .on_window_event(|_window, event| {
            if let tauri::WindowEvent::Destroyed = event {
                window::released();
            }
        })
        .setup(move |app| {
            let handle = app.handle().clone();
            let autostart = handle.autolaunch().is_enabled().unwrap_or(false);
            let mute = Mute::new();
            let flags = Flags { muted: mute.is_muted(), autostart };
            let tray = Arc::new(Tray::create(&handle, flags, on_action)?);
            app.manage(Shell { tray: tray.clone(), mute: mute.clone(), autostart: AtomicBool::new(autostart) });
            if !hidden {
                window::open(&handle);
            }
            tauri::async_runtime::spawn(start_node(handle.clone(), host.clone(), mute));
            tauri::async_runtime::spawn(follow_status(handle, host.clone()));
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("the desktop app could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|_app, event| {
        // Closing the last window is not quitting: the app stays in the tray. Only Quit (which
        // calls `exit` with a code) ends it.
        if let RunEvent::ExitRequested { code: None, api, .. } = event {
            api.prevent_exit();
        }
    });
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

/// Creates the node on first run, starts it, then follows its events for notifications.
async fn start_node(app: AppHandle, host: Host, mute: Arc<Mute>) {
    let started = match host::data_dir() {
        Ok(dir) => {
            tracing::info!(dir = %dir.display(), "starting the node");
            host::start_node(&dir).await
        }
        Err(e) => Err(e),
    };
    match started {
        Ok(node) => {
            host.set_running(node);
            tracing::info!("node running");
            mute.refresh(&host).await;
            notify::follow_events(app, host, mute).await;
        }
        Err(reason) => {
            tracing::error!("{reason}");
            notify::show_error(&app, "Understudy could not start its node", &reason);
            host.set_failed(reason);
        }
    }
}

/// Reads the status every 500 ms and shows it in the tray.
async fn follow_status(app: AppHandle, host: Host) {
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let shell = app.state::<Shell>();
        // The node's mute setting may be changed from the window or the CLI: read it now and then.
        if n.is_multiple_of(4) && host.node().is_ok() {
            shell.mute.refresh(&host).await;
        }
        let model = match host.node() {
            Err(reason) => MenuModel::stopped(&reason),
            Ok(_) => match host.admin("GET", "/api/status", None).await {
                (200, status) => MenuModel::from_status(&status),
                (code, body) => MenuModel::stopped(
                    body["error"].as_str().map(String::from).unwrap_or_else(|| format!("status {code}")).as_str(),
                ),
            },
        };
        let flags = Flags { muted: shell.mute.is_muted(), autostart: shell.autostart.load(Ordering::Relaxed) };
        if let Err(e) = shell.tray.update(&app, model, flags) {
            tracing::warn!("could not update the tray: {e}");
        }
    }
}

/// A click in the tray menu. Runs on the main thread: everything that waits is spawned.
fn on_action(app: &AppHandle, action: Action) {
    tracing::info!(?action, "tray");
    match action {
        Action::OpenWindow => window::open(app),
        Action::Quit => {
            tauri::async_runtime::spawn(quit(app.clone()));
        }
        action => {
            tauri::async_runtime::spawn(act(app.clone(), action));
        }
    }
}

async fn act(app: AppHandle, action: Action) {
    let shell = app.state::<Shell>();
    let host = app.state::<Host>().inner().clone();
    match &action {
        Action::ToggleMute => {
            let muted = shell.mute.toggle(&host).await;
            tracing::info!(muted, "notifications");
        }
        Action::ToggleAutostart => {
            let launcher = app.autolaunch();
            let want = !shell.autostart.load(Ordering::Relaxed);
            let done = if want { launcher.enable() } else { launcher.disable() };
            match done {
                Ok(()) => shell.autostart.store(want, Ordering::Relaxed),
                Err(e) => notify::show_error(&app, "Could not change start at login", &e.to_string()),
            }
        }
        _ => {
            if let Some((method, path, body)) = action.request(&shell.tray.shown()) {
                let (status, answer) = host.admin(method, &path, body).await;
                if let Err(e) = commands::into_result(status, answer) {
                    notify::show_error(&app, &format!("Could not {}", action.describe()), &e.error);
                }
            }
        }
    }
    // A check item flips itself when clicked: write the real state back on the next tick.
    shell.tray.request_resync();
}

async fn quit(app: AppHandle) {
    let host = app.state::<Host>().inner().clone();
    tracing::info!("quit: stopping the node");
    if let Some(window) = app.get_webview_window(window::LABEL) {
        let _ = window.destroy();
    }
    host.shutdown(SHUTDOWN_LIMIT).await;
    tracing::info!("node stopped; exiting");
    app.exit(0);
}
