// Prevents an extra console window on Windows in release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use understudy_desktop::Mode;

fn main() {
    understudy_desktop::run(Mode::from_args(std::env::args().skip(1)))
}
