//! The Understudy desktop app's tray process, and what the console window shares with it.
//!
//! The app is two executables, two processes:
//!
//! - **`understudy-tray`** (this crate, `app`): the tray icon and menu, the notifications, the
//!   embedded node (`host`, when "Run a node on this computer" is on) and the followed sites
//!   (`remote`). It runs all day, so it links no WebKit: its tray is tray-icon and muda on tao's
//!   event loop, not Tauri.
//! - **`understudy-desktop`** (src-tauri): the name the app is started by — which turns itself
//!   into the tray process at once (it `exec`s `understudy-tray` beside it, with its arguments)
//!   — and, with `--window`, the console window (Tauri and its webview). The tray starts it for
//!   "Open window" and ends it at Quit; it exits when its window is closed, taking its WebKit
//!   processes with it. It reaches the tray's node through the node's HTTPS admin API
//!   (`host::remote`), as the CLI does, and the joined sites with their tokens.
//!
//! Architecture invariant: neither holds policy. Every question and every action goes through
//! the node's one admin handler, exactly as the CLI and the HTTPS admin API do; the pure modules
//! (`model`, `coalesce`) only turn its JSON into labels and notices.
//!
//! Tasks of the tray process: one polls `GET /api/status` for the tray every 500 ms, one follows
//! the event log for notifications, two per followed site, one watches the window process while
//! it runs; menu clicks each spawn a short task.

pub mod app;
pub mod autostart;
pub mod coalesce;
pub mod host;
pub mod instance;
pub mod model;
pub mod notify;
pub mod remote;
pub mod settings;
pub mod sites;
#[cfg(test)]
pub mod test_node;
pub mod tray;
pub mod window;

use std::path::PathBuf;

use crate::autostart::HIDDEN_ARG;
use crate::instance::Launch;
pub use crate::window::{DATA_DIR_ARG, WINDOW_ARG};

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

/// What `--help` prints (both executables: the tray's options are the app's).
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

/// The tray process (`understudy-tray`, or `understudy-desktop` without `--window`): joins the
/// site of `--join` if given, then runs the tray until Quit. Never returns.
pub fn run_tray(hidden: bool, gl_disabled_here: bool) -> ! {
    init_tracing();
    let launch = match join_arg(std::env::args().skip(1)) {
        Some(invitation) => {
            join_site(&invitation);
            Launch::Joined
        }
        None => Launch::Open,
    };
    app::run(hidden, gl_disabled_here, launch)
}

/// Logs to stderr, at `RUST_LOG`'s level (info by default).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
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
