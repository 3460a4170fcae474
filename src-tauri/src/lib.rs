//! `understudy-desktop`, the Tauri executable of the desktop app: the console window
//! (`--window`), and the name the app is started by. Without `--window` it becomes the tray
//! process at once — it runs `understudy-tray` beside it with the same arguments (on Unix by
//! `exec`, so the process, its pid and its parent stay the same) — because the tray runs all day
//! and this executable links WebKit: the loader maps and relocates WebKit's libraries (~27 MB
//! PSS, BENCHMARKS.md) into every process started from it, window or not.
//!
//! See `understudy_tray` for the two processes and what each does.

pub mod commands;
pub mod targets;
mod window;

pub use understudy_tray::{host, settings, sites, Mode, DATA_DIR_ARG, HELP, WINDOW_ARG};

/// The real node the tests run against, shared with understudy-tray's tests (which use all of
/// it; these do not).
#[cfg(test)]
#[path = "../../crates/tray/src/test_node.rs"]
#[allow(dead_code)]
mod test_node;

/// The tray executable, installed beside this one.
pub const TRAY_EXE: &str = "understudy-tray";

/// Runs the process in `mode`.
pub fn run(mode: Mode) {
    match mode {
        Mode::Version => println!("understudy-desktop {}", env!("CARGO_PKG_VERSION")),
        Mode::Help => print!("{HELP}"),
        Mode::Tray { .. } => become_tray(),
        Mode::Window { data_dir } => {
            understudy_tray::init_tracing();
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

/// Runs `understudy-tray` (beside this executable) with this process's arguments in its place.
/// Returns only if it could not be started, after saying why.
fn become_tray() {
    let tray = std::env::current_exe()
        .map(|exe| exe.with_file_name(format!("{TRAY_EXE}{}", std::env::consts::EXE_SUFFIX)));
    let tray = match tray {
        Ok(tray) => tray,
        Err(e) => {
            eprintln!("understudy-desktop: finding this program: {e}");
            std::process::exit(1);
        }
    };
    let mut command = std::process::Command::new(&tray);
    command.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    let error = {
        use std::os::unix::process::CommandExt;
        // Only returns on failure.
        command.exec()
    };
    #[cfg(not(unix))]
    let error = match command.spawn() {
        // The tray runs on; this process has nothing more to do.
        Ok(_) => std::process::exit(0),
        Err(e) => e,
    };
    eprintln!(
        "understudy-desktop: could not start the tray, {}: {error}",
        tray.display()
    );
    std::process::exit(1);
}
