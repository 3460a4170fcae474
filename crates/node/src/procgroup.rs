//! Hooks and command checks run in a process group of their own, so that a timeout kills
//! everything they started, not only the direct child (issue 12 item 6): a shell script's
//! `sleep` or a plugin's helper would otherwise outlive it and pile up.

/// `tokio::process::Command` for `program`, in a new process group, killed when dropped.
pub(crate) fn command(program: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    cmd
}

/// Kills the whole process group of a child started by [`command`] when dropped, unless
/// [`GroupGuard::disarm`]ed once the child has ended on its own.
pub(crate) struct GroupGuard(Option<u32>);

impl GroupGuard {
    pub(crate) fn new(child: &tokio::process::Child) -> GroupGuard {
        GroupGuard(child.id())
    }

    /// The child ended by itself: whatever it left running is its own business.
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Whether `pid` is still running (a zombie waiting for its reaper counts as gone): for tests.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|s| s.starts_with('Z'))
        })
        .unwrap_or(false)
}
