// Prevents an extra console window on Windows in release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

//! `understudy-tray`: the desktop app's tray process, without a webview. `understudy-desktop`
//! (the name the app is started by) turns itself into this program; started directly it takes
//! the same arguments, but the console window is `understudy-desktop --window`.

use understudy_tray::Mode;

fn main() {
    let mode = Mode::from_args(std::env::args().skip(1));
    match mode {
        Mode::Version => println!("understudy-tray {}", env!("CARGO_PKG_VERSION")),
        Mode::Help => print!("{}", understudy_tray::HELP),
        Mode::Window { .. } => {
            eprintln!("understudy-tray: the console window is `understudy-desktop --window`");
            std::process::exit(2);
        }
        Mode::Tray { hidden } => {
            // First thing, while this is the only thread (changing the environment is only
            // sound then): the tray process never draws with OpenGL, and without GDK_GL=disable
            // GTK's display setup probes GLX, which maps mesa's swrast and LLVM (~27 MB PSS)
            // into a process that stays up all day. The window process keeps GL.
            let gl_disabled_here = understudy_tray::disable_gl();
            understudy_tray::run_tray(hidden, gl_disabled_here)
        }
    }
}
