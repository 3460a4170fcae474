//! Durable, atomic file writes for the small files in a node's data directory (config, certificate,
//! key, admin token). A reader sees either the old file or the new one, never a torn write, and a
//! secret is created with its final permissions so it is never readable by others, even briefly.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` by writing a sibling temp file, syncing it and renaming it over `path`.
/// `mode` is the Unix permission the file is created with (ignored elsewhere).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)
}

/// Like [`write_atomic`] but never replaces an existing file: returns `Ok(false)` when `path`
/// already exists (another process won the race), so both sides end up using the same content.
pub fn create_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    let tmp = write_temp(path, bytes, mode)?;
    // A hard link is the one atomic "create if absent" that also publishes complete content.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(io::Error::other)?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        hex::encode(suffix)
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    set_mode(&mut options, mode);
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

#[cfg(unix)]
fn set_mode(options: &mut OpenOptions, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(mode);
}

#[cfg(not(unix))]
fn set_mode(_options: &mut OpenOptions, _mode: u32) {}

/// The rename is only durable once the directory entry is on disk too.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Files in a data directory that anyone else may read: the certificate, nothing more. The
/// configuration (enrollment tokens), the store and its WAL (records, site configuration), the
/// admin token and the key are the node's alone.
#[cfg(unix)]
const PUBLIC_FILES: &[&str] = &["cert.pem"];

/// Makes `dir` 0700 and every file directly in it (but the certificate) 0600, returning one
/// sentence for each that was looser, to log as a warning (issue 12 item 6). On systems without
/// Unix permissions it does nothing.
pub fn secure_data_dir(dir: &Path) -> io::Result<Vec<String>> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut fixed = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut tighten = |path: &Path, mode: u32| -> io::Result<()> {
            let meta = fs::symlink_metadata(path)?;
            let was = meta.permissions().mode() & 0o777;
            if was & !mode != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(was & mode))?;
                fixed.push(format!(
                    "{} was {was:o}, readable by others: now {:o}",
                    path.display(),
                    was & mode
                ));
            }
            Ok(())
        };
        tighten(dir, 0o700)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !entry.file_type()?.is_file() || PUBLIC_FILES.iter().any(|p| name == *p) {
                continue;
            }
            tighten(&entry.path(), 0o600)?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_and_create_keeps_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o644).expect("write");
        write_atomic(&p, b"two", 0o644).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert!(!create_atomic(&p, b"three", 0o600).expect("create"));
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let q = dir.path().join("g");
        assert!(create_atomic(&q, b"x", 0o600).expect("create"));
        // No temp files are left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&q).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_loose_data_directory_is_tightened_and_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        for (name, m) in [
            ("config.toml", 0o644),
            ("store.db-wal", 0o640),
            ("cert.pem", 0o644),
            ("admin.token", 0o600),
        ] {
            let p = dir.path().join(name);
            fs::write(&p, b"x").expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).expect("chmod");
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let fixed = secure_data_dir(dir.path()).expect("secure");
        assert_eq!(fixed.len(), 3, "{fixed:?}");
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("config.toml")), 0o600);
        assert_eq!(mode(&dir.path().join("store.db-wal")), 0o600);
        assert_eq!(mode(&dir.path().join("cert.pem")), 0o644);
        assert!(secure_data_dir(dir.path()).expect("again").is_empty());
    }
}
