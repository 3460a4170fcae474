// Prevents an extra console window on Windows in release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use understudy_desktop::Mode;

fn main() {
    let mode = Mode::from_args(std::env::args().skip(1));
    // First thing, while this is the only thread (changing the environment is only sound then):
    // the tray process never draws with OpenGL, and without GDK_GL=disable GTK's display setup
    // probes GLX, which maps mesa's swrast and LLVM (~27 MB PSS) into a process that stays up all
    // day. The window process keeps GL (see `understudy_desktop::disable_gl`).
    let gl_disabled_here = matches!(mode, Mode::Tray { .. }) && understudy_desktop::disable_gl();
    understudy_desktop::run(mode, gl_disabled_here)
}
