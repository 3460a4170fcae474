//! The console window (UI-4) lives in a process of its own, so that closing it releases every
//! byte the webview took: the window process exits, and its WebKit web and network processes
//! with it, while the tray process (and the node in it) runs on. The tray's side — starting,
//! raising and ending this process — is `understudy_tray::window`.
//!
//! `run` is the window process: a Tauri app with the console window and the `admin` command,
//! which reaches the tray's node through its HTTPS admin API (`host::remote`) or a joined site
//! (UI-5, `targets`), and the switcher's site commands. It exits when the window is closed.
//!
//! The tray talks to it over its stdin, one command a line: `raise` (show and focus the window)
//! and `quit` (close it and exit). End of input changes nothing: a window started by hand or by
//! a WebDriver has no tray behind its stdin.

use std::path::PathBuf;

use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};
use understudy_tray::window::{QUIT, RAISE};

use crate::host::{self, Host};
use crate::sites;
use crate::targets::Targets;

pub const LABEL: &str = "main";

// ------------------------------------------------------------------- the window process --

/// The window process: the console window over the node of `data_dir`, until it is closed.
pub fn run(data_dir: PathBuf) {
    tracing::info!(dir = %data_dir.display(), "window process: console for the node of this data directory");
    let host = Host::new();
    host.set_running(host::remote(&data_dir));
    let app = tauri::Builder::default()
        .manage(Targets::new(host, sites::app_dir()))
        .invoke_handler(tauri::generate_handler![
            crate::commands::admin,
            crate::commands::targets,
            crate::commands::site_join,
            crate::commands::site_remove
        ])
        .setup(|app| {
            WebviewWindowBuilder::new(app, LABEL, WebviewUrl::App("index.html".into()))
                .title("Understudy")
                .inner_size(1180.0, 780.0)
                .min_inner_size(640.0, 420.0)
                .build()?;
            follow_stdin(app.handle().clone());
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("the window could not open: {e}");
            std::process::exit(1);
        }
    };
    // Closing the window ends the event loop (nothing prevents the exit) and the process.
    app.run(|_app, event| {
        if let RunEvent::Exit = event {
            tracing::info!("window closed: the window process exits");
        }
    });
}

/// Reads the tray's commands from stdin on a thread of its own (reading blocks).
fn follow_stdin(app: AppHandle) {
    let spawned = std::thread::Builder::new()
        .name("tray-commands".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                match line.trim() {
                    RAISE => raise(&app),
                    QUIT => app.exit(0),
                    other => tracing::warn!("unknown command from the tray: {other:?}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no thread to read the tray's commands: {e}");
    }
}

fn raise(app: &AppHandle) {
    let handle = app.clone();
    let done = app.run_on_main_thread(move || {
        if let Some(window) = handle.get_webview_window(LABEL) {
            let _ = window.unminimize();
            let _ = window.show();
            let _ = window.set_focus();
        }
    });
    if let Err(e) = done {
        tracing::warn!("could not raise the window: {e}");
    }
}
