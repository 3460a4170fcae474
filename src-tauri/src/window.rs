//! The console window (UI-4) lives in a process of its own, so that closing it releases every
//! byte the webview took: the window process exits, and its WebKit web and network processes
//! with it, while the tray process (and the node in it) runs on.
//!
//! - `WindowProcess` is the tray's side: "Open window" starts `<this exe> --window --data-dir D`,
//!   or raises the one already running; Quit ends it. One task per window process waits for it,
//!   so it is reaped as soon as it exits.
//! - `run` is the window process: a Tauri app with the console window and the `admin` command,
//!   which reaches the tray's node through its HTTPS admin API (`host::remote`) or a joined site
//!   (UI-5, `targets`), and the switcher's site commands. It exits when the window is closed.
//!
//! The tray talks to the window process over its stdin, one command a line: `raise` (show and
//! focus the window) and `quit` (close it and exit). End of input changes nothing: a window
//! started by hand or by a WebDriver has no tray behind its stdin.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WebviewWindowBuilder};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};

use crate::host::{self, Host};
use crate::sites;
use crate::targets::Targets;
use crate::{DATA_DIR_ARG, WINDOW_ARG};

pub const LABEL: &str = "main";
const RAISE: &str = "raise";
const QUIT: &str = "quit";

// ---------------------------------------------------------------------- the tray's side --

enum Request {
    Raise,
    Quit {
        limit: Duration,
        done: oneshot::Sender<()>,
    },
}

/// The tray's handle on its window process: at most one runs at a time.
pub struct WindowProcess {
    data_dir: Option<PathBuf>,
    /// The tray set `GDK_GL=disable` for itself: the window process must not inherit it.
    unset_gdk_gl: bool,
    /// Requests for the task that watches the running window process; `None` before the first
    /// one. A send fails once that task has ended, i.e. the process exited.
    running: Mutex<Option<mpsc::UnboundedSender<Request>>>,
}

impl WindowProcess {
    pub fn new(data_dir: Option<PathBuf>, unset_gdk_gl: bool) -> WindowProcess {
        WindowProcess {
            data_dir,
            unset_gdk_gl,
            running: Mutex::new(None),
        }
    }

    /// Raises the window process if it runs, else starts one. Failures are logged: the tray
    /// still works without a window.
    pub fn open(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = running.as_ref() {
            if tx.send(Request::Raise).is_ok() {
                tracing::info!("window: raising the running window process");
                return;
            }
        }
        // Spawning a tokio child needs the runtime (it is reaped by the watching task); menu
        // and notification callbacks run on threads of their own.
        let _runtime = tauri::async_runtime::handle().inner().enter();
        match self.start() {
            Ok(tx) => *running = Some(tx),
            Err(e) => tracing::error!("could not start the window process: {e}"),
        }
    }

    fn start(&self) -> std::io::Result<mpsc::UnboundedSender<Request>> {
        let exe = std::env::current_exe()?;
        let mut command = tokio::process::Command::new(exe);
        command.arg(WINDOW_ARG).stdin(Stdio::piped());
        if let Some(dir) = &self.data_dir {
            command.arg(DATA_DIR_ARG).arg(dir);
        }
        if self.unset_gdk_gl {
            command.env_remove("GDK_GL");
        }
        let mut child = command.spawn()?;
        tracing::info!(pid = child.id(), "window process started");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(watch(child, stdin, rx));
        Ok(tx)
    }

    /// Ends the window process if it runs (Quit): asks it to exit, kills it after `limit`, and
    /// returns once it is reaped.
    pub async fn close(&self, limit: Duration) {
        let tx = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(tx) = tx else { return };
        let (done, finished) = oneshot::channel();
        if tx.send(Request::Quit { limit, done }).is_ok() {
            let _ = finished.await;
        }
    }
}

/// Owns one window process until it exits: forwards the tray's requests to its stdin and reaps it.
async fn watch(
    mut child: Child,
    mut stdin: Option<ChildStdin>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let pid = child.id();
    loop {
        tokio::select! {
            status = child.wait() => {
                match status {
                    Ok(status) => tracing::info!(?pid, %status, "window process exited"),
                    Err(e) => tracing::warn!(?pid, "waiting for the window process: {e}"),
                }
                return;
            }
            request = requests.recv() => match request {
                Some(Request::Raise) => send_line(&mut stdin, RAISE).await,
                Some(Request::Quit { limit, done }) => {
                    send_line(&mut stdin, QUIT).await;
                    drop(stdin.take());
                    if tokio::time::timeout(limit, child.wait()).await.is_err() {
                        tracing::warn!(?pid, "the window process did not exit within {limit:?}: killing it");
                        if let Err(e) = child.kill().await {
                            tracing::warn!(?pid, "killing the window process: {e}");
                        }
                    }
                    tracing::info!(?pid, "window process ended");
                    let _ = done.send(());
                    return;
                }
                // The tray dropped its handle: leave the window to the user.
                None => {
                    let _ = child.wait().await;
                    return;
                }
            }
        }
    }
}

async fn send_line(stdin: &mut Option<ChildStdin>, line: &str) {
    if let Some(pipe) = stdin {
        if let Err(e) = pipe.write_all(format!("{line}\n").as_bytes()).await {
            // The process is exiting (its window was just closed): the watch loop reaps it.
            tracing::debug!("could not tell the window process to {line}: {e}");
        }
    }
}

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
