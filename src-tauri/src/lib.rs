//! The Understudy desktop app: a tray icon, a console window and desktop notifications around
//! the runtime. One binary, two processes:
//!
//! - the **tray process** (the default mode): the node runs in it (`host`), with the tray menu
//!   and the notifications. It never makes a webview, so no WebKit process belongs to it while
//!   the window is closed.
//! - the **window process** (`--window`, `window::run`): only the console window. The tray starts
//!   it for "Open window" and ends it at Quit; it exits when its window is closed, taking its
//!   WebKit processes with it. Its `admin` command reaches the tray's node through the node's
//!   HTTPS admin API, as the CLI does (`host::remote`).
//!
//! Architecture invariant: the Tauri crate holds no policy. Every question and every action goes
//! through the node's one admin handler (`Host::admin`), exactly as the CLI and the HTTPS admin
//! API do; the pure modules (`model`, `coalesce`) only turn its JSON into labels and notices.
//!
//! Tasks of the tray process: one polls `GET /api/status` for the tray every 500 ms, one follows
//! the event log for notifications, one watches the window process while it runs; menu clicks
//! each spawn a short task.

mod autostart;
pub mod coalesce;
pub mod commands;
pub mod host;
pub mod model;
pub mod notify;
pub mod remote;
pub mod settings;
pub mod sites;
pub mod targets;
#[cfg(test)]
mod test_node;
mod tray;
mod window;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent};

use crate::autostart::HIDDEN_ARG;
use crate::host::Host;
use crate::model::{Action, MenuModel};
use crate::notify::Mute;
use crate::tray::{Flags, Tray};
use crate::window::WindowProcess;

/// How often the tray reads the status (UI-3: the menu follows every change within a second).
const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long Quit waits for the node to stop cleanly.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How long Quit waits for the window process to exit before killing it.
const WINDOW_QUIT_LIMIT: Duration = Duration::from_secs(3);
/// Makes the process the console window only (started by the tray).
pub const WINDOW_ARG: &str = "--window";
/// The node's data directory, given to the window process so it reaches the tray's node.
pub const DATA_DIR_ARG: &str = "--data-dir";
/// UI-5: `--join INVITATION` joins a site, then starts the tray (or leaves it to the running one).
pub const JOIN_ARG: &str = "--join";

/// The invitation of `--join INVITATION`, if given.
pub fn join_arg(args: impl IntoIterator<Item = String>) -> Option<String> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == JOIN_ARG {
            return Some(args.next().unwrap_or_default());
        }
    }
    None
}

/// `--join`: joins the site into the app's directory, saying so (or why not) on stderr; exits 1
/// when refused. A tray already running notices the new site in sites.json.
fn join_site(invitation: &str) {
    let joined = sites::app_dir().and_then(|dir| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(sites::join(&dir, invitation))
    });
    match joined {
        Ok(site) => eprintln!(
            "joined site {} ({})",
            site.site,
            site.addresses().join(", ")
        ),
        Err(reason) => {
            eprintln!("understudy-desktop --join: {reason}");
            std::process::exit(1);
        }
    }
}

/// What this process is, from its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The tray with the node in-process (the default). `hidden`: no window at start.
    Tray { hidden: bool },
    /// The console window alone, talking to the node whose data directory is given (else the
    /// one the tray uses: `UNDERSTUDY_DATA_DIR` or the platform's).
    Window { data_dir: Option<PathBuf> },
    /// `--version` (or `-V`): prints the name and version, starts nothing. It also tells whether
    /// the program loads at all where no window can be made (the Windows build under Wine).
    Version,
    /// `--help` (or `-h`): prints how the app is started, starts nothing.
    Help,
}

/// What `--help` prints.
pub const HELP: &str = "\
The Understudy desktop app: a tray icon with a node (server and agent) in it, a console window and
desktop notifications.

Usage: understudy-desktop [--hidden] [--join INVITATION]
       understudy-desktop --window [--data-dir DIR]

  (none)          the tray, with the node in this process; its window opens at start
  --hidden        the tray without opening the window (the login item starts it so)
  --join INVITATION
                  join a site (`understudy invite`'s line): its server is checked against the
                  invitation's fingerprint and token, then the tray follows it (UI-5)
  --window        the console window alone, for the tray's node (the tray starts it)
  --data-dir DIR  the node's data directory, for --window (default: UNDERSTUDY_DATA_DIR, else the
                  platform's data directory)
  -V, --version   print the version
  -h, --help      print this help
";

impl Mode {
    /// Reads `--window`, `--data-dir D` and `--hidden`; other arguments are ignored (a login item
    /// or a desktop file may add its own).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Mode {
        let mut window = false;
        let mut hidden = false;
        let mut data_dir = None;
        let (mut version, mut help) = (false, false);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                WINDOW_ARG => window = true,
                HIDDEN_ARG => hidden = true,
                DATA_DIR_ARG => data_dir = args.next().map(PathBuf::from),
                "--version" | "-V" => version = true,
                "--help" | "-h" => help = true,
                _ => {}
            }
        }
        if version {
            Mode::Version
        } else if help {
            Mode::Help
        } else if window {
            Mode::Window { data_dir }
        } else {
            Mode::Tray { hidden }
        }
    }
}

/// Sets `GDK_GL=disable` for this process unless the user set `GDK_GL`; returns whether it did
/// (the window process is then started without it, so the console keeps GL).
///
/// Why: the tray process never draws with OpenGL, but GTK opens the display in `gtk_init` and
/// probes GLX through libepoxy, which loads mesa's DRI driver and libLLVM (~27 MB PSS, measured
/// in BENCHMARKS.md) into a process that runs all day.
///
/// Call it first thing in `main`, before any thread exists: changing the environment while
/// another thread may read it is undefined behaviour in glibc.
pub fn disable_gl() -> bool {
    if std::env::var_os("GDK_GL").is_some() {
        return false;
    }
    std::env::set_var("GDK_GL", "disable");
    true
}

/// The app's shared state in the tray process, managed by Tauri beside `Host`.
struct Shell {
    tray: Arc<Tray>,
    mute: Arc<Mute>,
    autostart: AtomicBool,
    window: WindowProcess,
    /// UI-5: the remote sites followed.
    sites: remote::Sites,
    /// "Run a node on this computer" (UI-5) as it is now; changed only under `node_change`,
    /// which also keeps a start and a stop from overlapping.
    run_node: AtomicBool,
    node_change: tokio::sync::Mutex<()>,
    /// The task that turns the node's events into notifications was started (once: it waits
    /// through the node's absences and reads the same event log when it is back).
    following_events: AtomicBool,
}

/// Runs the process in `mode`. `gl_disabled_here`: `disable_gl` set GDK_GL for this process.
pub fn run(mode: Mode, gl_disabled_here: bool) {
    match mode {
        Mode::Version => println!("understudy-desktop {}", env!("CARGO_PKG_VERSION")),
        Mode::Help => print!("{HELP}"),
        Mode::Tray { hidden } => {
            init_tracing();
            if let Some(invitation) = join_arg(std::env::args().skip(1)) {
                join_site(&invitation);
            }
            run_tray(hidden, gl_disabled_here)
        }
        Mode::Window { data_dir } => {
            init_tracing();
            let dir = match data_dir.map(Ok).unwrap_or_else(host::data_dir) {
                Ok(dir) => dir,
                Err(reason) => {
                    tracing::error!("{reason}");
                    std::process::exit(2);
                }
            };
            window::run(dir)
        }
    }
}

/// Opens the console window: raises the window process if it runs, else starts one. Callable
/// from any thread (menu, second launch, notification click).
pub fn open_window(app: &AppHandle) {
    match app.try_state::<Shell>() {
        Some(shell) => shell.window.open(),
        None => tracing::warn!("open window: the app is not set up yet"),
    }
}

fn run_tray(hidden: bool, gl_disabled_here: bool) {
    let host = Host::new();

    // First: a second launch only opens the first instance's window.
    let mut builder =
        tauri::Builder::default().plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            // `--join` stored its site already: the sites watcher picks it up.
            if join_arg(argv).is_none() {
                open_window(app)
            }
        }));
    if let Some(plugin) = autostart::plugin() {
        builder = builder.plugin(plugin);
    }
    let app = builder
        .manage(host.clone())
        .setup(move |app| {
            let handle = app.handle().clone();
            let autostart = autostart::is_enabled(&handle);
            let mute = Mute::new();
            let run_node = settings::decide();
            let flags = Flags {
                muted: mute.is_muted(),
                autostart,
                run_node,
            };
            let tray = Arc::new(Tray::create(&handle, flags, on_action)?);
            // The window process is given the data directory the node uses; without one (no
            // home directory) it looks for itself and shows why it cannot reach the node.
            let window = WindowProcess::new(host::data_dir().ok(), gl_disabled_here);
            let sites = site_follower(&handle, &mute);
            app.manage(Shell {
                tray: tray.clone(),
                mute: mute.clone(),
                autostart: AtomicBool::new(autostart),
                window,
                sites: sites.clone(),
                run_node: AtomicBool::new(run_node),
                node_change: tokio::sync::Mutex::new(()),
                following_events: AtomicBool::new(false),
            });
            tauri::async_runtime::spawn(sites.watch());
            if !hidden {
                open_window(&handle);
            }
            if run_node {
                tauri::async_runtime::spawn(start_node(handle.clone(), host.clone(), mute));
            } else {
                tracing::info!("Run a node on this computer is off: no node started");
                host.set_off();
            }
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
        // The tray process has no window, but should one ever close, that is not quitting: only
        // Quit (which calls `exit` with a code) ends the app.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Creates the node on first run, starts it, then follows its events for notifications (one
/// task for the app's life, started with the first node).
async fn start_node(app: AppHandle, host: Host, mute: Arc<Mute>) {
    let shell = app.state::<Shell>();
    let started = {
        let _change = shell.node_change.lock().await;
        host.set_starting();
        let started = match host::data_dir() {
            Ok(dir) => {
                tracing::info!(dir = %dir.display(), "starting the node");
                let desktop = {
                    let (app, mute) = (app.clone(), mute.clone());
                    Arc::new(move |m: &understudy_api::status::DesktopMessage| {
                        notify::show_desktop_message(&app, &mute, m)
                    }) as host::DesktopSink
                };
                host::start_node(&dir, desktop).await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(node) => {
                host.set_running(node);
                tracing::info!("node running");
                true
            }
            Err(reason) => {
                tracing::error!("{reason}");
                notify::show_error(&app, "Understudy could not start its node", &reason);
                host.set_failed(reason);
                false
            }
        }
    };
    if started {
        mute.refresh(&host).await;
        if !shell.following_events.swap(true, Ordering::SeqCst) {
            notify::follow_events(app.clone(), host, mute).await;
        }
    }
}

/// UI-5: the followed sites, their notices shown like the node's (muting included). Without an
/// app directory (no home) no site is followed.
fn site_follower(app: &AppHandle, mute: &Arc<Mute>) -> remote::Sites {
    let (app, mute) = (app.clone(), mute.clone());
    let notify: remote::Notify = Arc::new(move |notice: &coalesce::Notice| {
        if mute.is_muted() {
            tracing::debug!(code = notice.code, "muted: not notified");
        } else {
            notify::show(&app, notice)
        }
    });
    let dir = sites::app_dir();
    if let Err(reason) = &dir {
        tracing::warn!("no remote sites: {reason}");
    }
    remote::Sites::new(dir.ok(), notify)
}

/// "Run a node on this computer" turned off: stops the node cleanly (no listener, store closed,
/// its threads ended) and leaves no node.
async fn stop_node(app: &AppHandle, host: &Host) {
    let shell = app.state::<Shell>();
    let _change = shell.node_change.lock().await;
    tracing::info!("Run a node on this computer turned off: stopping the node");
    host.shutdown(SHUTDOWN_LIMIT).await;
    host.set_off();
    tracing::info!("node stopped (no node on this computer)");
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
        let mut model = match host.node() {
            Err(_) if host.is_off() => MenuModel::no_node(),
            Err(reason) => MenuModel::stopped(&reason),
            Ok(_) => match host.request(&understudy_api::Request::Status).await {
                (200, status) => match serde_json::from_value(status) {
                    Ok(status) => MenuModel::from_status(&status),
                    Err(e) => MenuModel::stopped(&format!("an unreadable status: {e}")),
                },
                (code, body) => MenuModel::stopped(
                    body["error"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| format!("status {code}"))
                        .as_str(),
                ),
            },
        };
        model.sites = shell.sites.sections();
        let flags = Flags {
            muted: shell.mute.is_muted(),
            autostart: shell.autostart.load(Ordering::Relaxed),
            run_node: shell.run_node.load(Ordering::Relaxed),
        };
        if let Err(e) = shell.tray.update(&app, model, flags) {
            tracing::warn!("could not update the tray: {e}");
        }
    }
}

/// A click in the tray menu. Runs on the main thread: everything that waits is spawned.
fn on_action(app: &AppHandle, action: Action) {
    tracing::info!(?action, "tray");
    match action {
        Action::OpenWindow => open_window(app),
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
            let want = !shell.autostart.load(Ordering::Relaxed);
            match autostart::set(&app, want) {
                Ok(()) => {
                    tracing::info!(enabled = want, "start at login");
                    shell.autostart.store(want, Ordering::Relaxed)
                }
                Err(e) => notify::show_error(&app, "Could not change start at login", &e),
            }
        }
        Action::ToggleNode => {
            let want = !shell.run_node.load(Ordering::Relaxed);
            match settings::choose_run_node(want) {
                Ok(()) => {
                    shell.run_node.store(want, Ordering::Relaxed);
                    if want {
                        let mute = shell.mute.clone();
                        tauri::async_runtime::spawn(start_node(app.clone(), host.clone(), mute));
                    } else {
                        stop_node(&app, &host).await;
                    }
                }
                Err(e) => {
                    notify::show_error(&app, "Could not change Run a node on this computer", &e)
                }
            }
        }
        _ => {
            if let Some(request) = action.request(&shell.tray.shown()) {
                let (status, answer) = match &action {
                    Action::Site { site, .. } => shell.sites.request(site, &request).await,
                    _ => host.request(&request).await,
                };
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
    app.state::<Shell>().window.close(WINDOW_QUIT_LIMIT).await;
    tracing::info!("quit: stopping the node");
    host.shutdown(SHUTDOWN_LIMIT).await;
    tracing::info!("node stopped; exiting");
    app.exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str]) -> Mode {
        Mode::from_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn the_arguments_choose_the_process() {
        assert_eq!(mode(&[]), Mode::Tray { hidden: false });
        assert_eq!(mode(&["--hidden"]), Mode::Tray { hidden: true });
        assert_eq!(mode(&["--window"]), Mode::Window { data_dir: None });
        assert_eq!(
            mode(&["--window", "--data-dir", "/var/lib/u"]),
            Mode::Window {
                data_dir: Some(PathBuf::from("/var/lib/u"))
            }
        );
        assert_eq!(
            mode(&["--data-dir", "/d", "--window", "--extra"]),
            Mode::Window {
                data_dir: Some("/d".into())
            }
        );
        // UI-5: `--join INVITATION` starts the tray (after joining).
        assert_eq!(
            mode(&["--join", "understudy://join/1?x"]),
            Mode::Tray { hidden: false }
        );
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            join_arg(args(&["--hidden", "--join", "understudy://join/1?x"])),
            Some("understudy://join/1?x".into())
        );
        assert_eq!(join_arg(args(&["--join"])), Some(String::new()));
        assert_eq!(join_arg(args(&["--hidden"])), None);
    }

    #[test]
    fn in3_version_and_help_start_nothing_whatever_else_is_given() {
        assert_eq!(mode(&["--version"]), Mode::Version);
        assert_eq!(mode(&["-V"]), Mode::Version);
        assert_eq!(mode(&["--window", "--version"]), Mode::Version);
        assert_eq!(mode(&["--help"]), Mode::Help);
        assert_eq!(mode(&["-h", "--hidden"]), Mode::Help);
        assert_eq!(mode(&["--help", "--version"]), Mode::Version);
        for flag in [WINDOW_ARG, HIDDEN_ARG, DATA_DIR_ARG, JOIN_ARG] {
            assert!(HELP.contains(flag), "--help does not mention {flag}");
        }
    }
}
