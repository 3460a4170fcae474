//! One tray per app directory: a second launch tells the first what it was started for and
//! exits (a plain launch opens the first one's window; a `--join` launch has stored its site
//! already, which the first one's sites watcher picks up).
//!
//! The first instance listens on a local socket named after the app directory: a Unix socket
//! `instance.sock` in it (the directory is the user's own, 0700), a named pipe on Windows. A
//! socket left by a tray that died is found stale (nobody accepts) and replaced.
//!
//! Only one short word crosses it, and nothing it says is more than "open the window".

use std::path::Path;

/// What a second launch asks of the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Open (or raise) the window.
    Open,
    /// A site was joined (`--join`): nothing to do, the sites watcher sees it.
    Joined,
}

impl Launch {
    fn word(self) -> &'static [u8] {
        match self {
            Launch::Open => b"open\n",
            Launch::Joined => b"joined\n",
        }
    }

    fn from_word(word: &[u8]) -> Option<Launch> {
        match word.trim_ascii() {
            b"open" => Some(Launch::Open),
            b"joined" => Some(Launch::Joined),
            _ => None,
        }
    }
}

/// The longest message read from a second launch.
const MAX_MESSAGE: u64 = 64;

/// Claims the app directory for this process. `Ok(Some(listener))`: this is the first instance;
/// `Ok(None)`: another one runs and was told `launch`. Call it inside the tokio runtime.
pub fn claim(dir: &Path, launch: Launch) -> std::io::Result<Option<Listener>> {
    imp::claim(dir, launch)
}

pub use imp::Listener;

#[cfg(unix)]
mod imp {
    use std::io::{ErrorKind, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};

    use tokio::io::AsyncReadExt;

    use super::{Launch, MAX_MESSAGE};

    pub struct Listener {
        listener: tokio::net::UnixListener,
        path: PathBuf,
    }

    pub fn claim(dir: &Path, launch: Launch) -> std::io::Result<Option<Listener>> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = dir.join("instance.sock");
        let bound = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == ErrorKind::AddrInUse => match UnixStream::connect(&path) {
                Ok(mut first) => {
                    first.write_all(launch.word())?;
                    return Ok(None);
                }
                // Left by a tray that is gone: nobody listens.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "replacing a stale instance socket");
                    std::fs::remove_file(&path)?;
                    UnixListener::bind(&path)?
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        bound.set_nonblocking(true)?;
        Ok(Some(Listener {
            listener: tokio::net::UnixListener::from_std(bound)?,
            path,
        }))
    }

    impl Listener {
        /// Hands every later launch's request to `on_launch`, for the process's life.
        pub async fn serve(self, on_launch: impl Fn(Launch)) {
            loop {
                match self.listener.accept().await {
                    Ok((stream, _)) => {
                        let mut word = Vec::new();
                        let read = stream.take(MAX_MESSAGE).read_to_end(&mut word).await;
                        match read.ok().and_then(|_| Launch::from_word(&word)) {
                            Some(launch) => on_launch(launch),
                            None => tracing::warn!("an unreadable message on the instance socket"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), "instance socket: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

    use super::{Launch, MAX_MESSAGE};

    pub struct Listener {
        name: String,
        server: NamedPipeServer,
    }

    /// The pipe's name: the app directory's hash, so that one user's trays of different app
    /// directories (tests, portable copies) do not meet.
    fn pipe_name(dir: &Path) -> String {
        // FNV-1a, 64 bits: stable across runs and builds, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in dir.to_string_lossy().to_lowercase().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!(r"\\.\pipe\understudy-desktop-{hash:016x}")
    }

    pub fn claim(dir: &Path, launch: Launch) -> std::io::Result<Option<Listener>> {
        let name = pipe_name(dir);
        match ServerOptions::new().first_pipe_instance(true).create(&name) {
            Ok(server) => Ok(Some(Listener { name, server })),
            Err(_) => {
                let mut first = ClientOptions::new().open(&name)?;
                let runtime = tokio::runtime::Handle::current();
                std::thread::scope(|s| {
                    s.spawn(|| runtime.block_on(first.write_all(launch.word())))
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked")))
                })?;
                Ok(None)
            }
        }
    }

    impl Listener {
        /// Hands every later launch's request to `on_launch`, for the process's life.
        pub async fn serve(mut self, on_launch: impl Fn(Launch)) {
            loop {
                if let Err(e) = self.server.connect().await {
                    tracing::warn!(pipe = self.name, "instance pipe: {e}");
                }
                let next = match ServerOptions::new().create(&self.name) {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(
                            pipe = self.name,
                            "instance pipe: {e}; no more launches heard"
                        );
                        return;
                    }
                };
                let mut client = std::mem::replace(&mut self.server, next);
                let mut word = Vec::new();
                let read = (&mut client).take(MAX_MESSAGE).read_to_end(&mut word).await;
                match read.ok().and_then(|_| Launch::from_word(&word)) {
                    Some(launch) => on_launch(launch),
                    None => tracing::warn!("an unreadable message on the instance pipe"),
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_second_launch_reaches_the_first_and_a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), Launch::Open)
            .unwrap()
            .expect("the first claims");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let serving = {
            let heard = heard.clone();
            tokio::spawn(first.serve(move |l| heard.lock().unwrap().push(l)))
        };
        assert!(claim(dir.path(), Launch::Open).unwrap().is_none());
        assert!(claim(dir.path(), Launch::Joined).unwrap().is_none());
        for _ in 0..100 {
            if heard.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*heard.lock().unwrap(), [Launch::Open, Launch::Joined]);

        // A tray that ended removed its socket; one that died left it, and nobody listens.
        serving.abort();
        let _ = serving.await;
        let path = dir.path().join("instance.sock");
        assert!(!path.exists());
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let again = claim(dir.path(), Launch::Open).unwrap();
        assert!(
            again.is_some(),
            "a stale socket must not stop the next tray"
        );
    }
}
