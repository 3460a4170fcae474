//! The console window (UI-4) lives in a process of its own, the Tauri executable
//! `understudy-desktop --window` beside this one (src-tauri), so that closing it releases every
//! byte the webview took — and so that this process, which runs all day, links no WebKit at all.
//!
//! `WindowProcess` is the tray's side: "Open window" starts
//! `<dir of this exe>/understudy-desktop --window --data-dir D`, or raises the one already
//! running; Quit ends it. One task per window process waits for it, so it is reaped as soon as it
//! exits.
//!
//! The tray talks to the window process over its stdin, one command a line: `raise` (show and
//! focus the window) and `quit` (close it and exit). End of input changes nothing: a window
//! started by hand or by a WebDriver has no tray behind its stdin.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};

/// Makes `understudy-desktop` the console window only.
pub const WINDOW_ARG: &str = "--window";
/// The node's data directory, given to the window process so it reaches the tray's node.
pub const DATA_DIR_ARG: &str = "--data-dir";
/// The tray's commands to the window process, one a line on its stdin.
pub const RAISE: &str = "raise";
pub const QUIT: &str = "quit";
/// The Tauri executable: the console window, and the name the app is started by.
pub const DESKTOP_EXE: &str = "understudy-desktop";

/// `understudy-desktop` in the directory of this program (both are installed side by side).
pub fn desktop_exe() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    Ok(exe.with_file_name(format!("{DESKTOP_EXE}{}", std::env::consts::EXE_SUFFIX)))
}

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
    /// The runtime the watching tasks run on (menu and notification callbacks run on threads of
    /// their own).
    runtime: tokio::runtime::Handle,
    data_dir: Option<PathBuf>,
    /// The tray set `GDK_GL=disable` for itself: the window process must not inherit it.
    unset_gdk_gl: bool,
    /// Requests for the task that watches the running window process; `None` before the first
    /// one. A send fails once that task has ended, i.e. the process exited.
    running: Mutex<Option<mpsc::UnboundedSender<Request>>>,
}

impl WindowProcess {
    pub fn new(
        runtime: tokio::runtime::Handle,
        data_dir: Option<PathBuf>,
        unset_gdk_gl: bool,
    ) -> WindowProcess {
        WindowProcess {
            runtime,
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
        // Spawning a tokio child needs the runtime (it is reaped by the watching task).
        let _runtime = self.runtime.enter();
        match self.start() {
            Ok(tx) => *running = Some(tx),
            Err(e) => tracing::error!("could not start the window process: {e}"),
        }
    }

    fn start(&self) -> std::io::Result<mpsc::UnboundedSender<Request>> {
        let exe = desktop_exe().map_err(std::io::Error::other)?;
        let mut command = tokio::process::Command::new(&exe);
        command.arg(WINDOW_ARG).stdin(Stdio::piped());
        if let Some(dir) = &self.data_dir {
            command.arg(DATA_DIR_ARG).arg(dir);
        }
        if self.unset_gdk_gl {
            command.env_remove("GDK_GL");
        }
        let mut child = command
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", exe.display())))?;
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
