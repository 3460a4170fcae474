//! "Start at login" (the tray menu's check item): a login item that starts the app in the tray,
//! without the window (`--hidden`).
//!
//! On Linux it is an XDG autostart entry, `$XDG_CONFIG_HOME/autostart/Understudy.desktop`
//! (`~/.config` when XDG_CONFIG_HOME is unset), written here: auto-launch 0.6 (what
//! tauri-plugin-autostart wraps) always writes under `~/.config`, which a session with
//! XDG_CONFIG_HOME set never reads.
//! Elsewhere auto-launch does it (a LaunchAgent on macOS, the Run key on Windows).
//!
//! The login item starts `understudy-desktop` (the app's public name, which starts this tray
//! process), not `understudy-tray`.

/// Given by the login item so that a start at login stays in the tray.
pub const HIDDEN_ARG: &str = "--hidden";

#[cfg(target_os = "linux")]
mod imp {
    use std::path::PathBuf;

    use super::*;

    const FILE_NAME: &str = "Understudy.desktop";

    /// Where the entry lives: `$XDG_CONFIG_HOME/autostart` (absolute), else `~/.config/autostart`.
    pub fn entry_path() -> Result<PathBuf, String> {
        directories::BaseDirs::new()
            .map(|d| d.config_dir().join("autostart").join(FILE_NAME))
            .ok_or_else(|| "no home directory to put the login item in".to_string())
    }

    pub fn is_enabled() -> bool {
        entry_path().map(|p| p.exists()).unwrap_or(false)
    }

    pub fn set(enabled: bool) -> Result<(), String> {
        let path = entry_path()?;
        if !enabled {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("removing {}: {e}", path.display()))
                }
                _ => Ok(()),
            };
        }
        // An AppImage runs from a temporary mount: the login item must start the image itself.
        let exe = match std::env::var_os("APPIMAGE") {
            Some(image) => PathBuf::from(image),
            None => crate::window::desktop_exe()?,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, entry(&exe.to_string_lossy()))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The desktop entry that starts `exe --hidden`.
    pub fn entry(exe: &str) -> String {
        format!(
            "[Desktop Entry]\nType=Application\nVersion=1.0\nName=Understudy\n\
             Comment=Failover for small-site monitoring, in the tray\nExec={} {HIDDEN_ARG}\n\
             Terminal=false\nStartupNotify=false\n",
            exec_arg(exe)
        )
    }

    /// One argument of an Exec key (Desktop Entry Specification, "The Exec key"): plain when it has
    /// no reserved character, else double-quoted with `"`, `` ` ``, `$` and `\` escaped — and that
    /// backslash escaped again as the string escape rule is applied first. `%` is always doubled.
    pub fn exec_arg(arg: &str) -> String {
        let arg = arg.replace('%', "%%");
        let plain = arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-,:@=%".contains(c));
        if plain {
            return arg;
        }
        let mut quoted = String::from("\"");
        for c in arg.chars() {
            match c {
                '"' | '`' | '$' => quoted.push_str(&format!("\\\\{c}")),
                '\\' => quoted.push_str("\\\\\\\\"),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use auto_launch::{AutoLaunch, AutoLaunchBuilder};

    use super::*;

    fn launcher() -> Result<AutoLaunch, String> {
        let exe = crate::window::desktop_exe()?;
        AutoLaunchBuilder::new()
            .set_app_name("Understudy")
            .set_app_path(&exe.to_string_lossy())
            .set_args(&[HIDDEN_ARG])
            .build()
            .map_err(|e| e.to_string())
    }

    pub fn is_enabled() -> bool {
        launcher()
            .and_then(|l| l.is_enabled().map_err(|e| e.to_string()))
            .unwrap_or(false)
    }

    pub fn set(enabled: bool) -> Result<(), String> {
        let launcher = launcher()?;
        let done = if enabled {
            launcher.enable()
        } else {
            launcher.disable()
        };
        done.map_err(|e| e.to_string())
    }
}

pub use imp::{is_enabled, set};

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::*;

    #[test]
    fn the_entry_starts_the_app_hidden() {
        let entry = entry("/usr/bin/understudy-desktop");
        assert!(entry.starts_with("[Desktop Entry]\n"), "{entry}");
        assert!(
            entry.contains("\nExec=/usr/bin/understudy-desktop --hidden\n"),
            "{entry}"
        );
        assert!(entry.contains("\nType=Application\n"), "{entry}");
    }

    #[test]
    fn exec_arguments_are_quoted_as_the_specification_says() {
        assert_eq!(exec_arg("/opt/u/app"), "/opt/u/app");
        assert_eq!(exec_arg("/home/a b/app"), "\"/home/a b/app\"");
        assert_eq!(exec_arg("/x/$HOME"), "\"/x/\\\\$HOME\"");
        assert_eq!(exec_arg("/x/100%"), "/x/100%%");
    }

    #[test]
    fn the_entry_goes_under_xdg_config_home() {
        // Only this test touches XDG_CONFIG_HOME.
        std::env::set_var("XDG_CONFIG_HOME", "/tmp/understudy-xdg-test");
        let path = entry_path().unwrap();
        std::env::remove_var("XDG_CONFIG_HOME");
        assert_eq!(
            path,
            std::path::PathBuf::from("/tmp/understudy-xdg-test/autostart/Understudy.desktop")
        );
    }
}
