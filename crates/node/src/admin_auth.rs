//! The admin API's credential: one random bearer token per node, in `admin.token` in its data
//! directory (readable only by its owner), and the constant-time check of an `Authorization`
//! header against it. Whoever can read the data directory may administer the node.
//! `metrics.token` (MX-1) is made the same way: a read-only credential for `GET /metrics` only.

use std::path::{Path, PathBuf};

use crate::fsutil;

pub const TOKEN_FILE: &str = "admin.token";
/// MX-1: the scrape token, accepted by `GET /metrics` and by nothing else.
pub const METRICS_TOKEN_FILE: &str = "metrics.token";
/// CK-4: the push token, accepted by the remote-write receiver (`POST /api/v1/write`) only.
pub const PUSH_TOKEN_FILE: &str = "push.token";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {doing}: {source}")]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: not a token (expected 64 hex digits); delete it to have a new one made")]
    Malformed { path: PathBuf },
    #[error("no randomness available for a token: {0}")]
    Random(String),
}

/// The node's admin token, creating it (32 random bytes as hex, mode 0600) on first use. Two
/// processes starting together end up with the same token.
pub fn load_or_create_token(data_dir: &Path) -> Result<String, AuthError> {
    load_or_create(&data_dir.join(TOKEN_FILE))
}

/// MX-1: the node's scrape token (`metrics.token`), made like the admin token: at `init`, or at
/// the first start of a node initialised before it existed.
pub fn load_or_create_metrics_token(data_dir: &Path) -> Result<String, AuthError> {
    load_or_create(&data_dir.join(METRICS_TOKEN_FILE))
}

/// CK-4: the agent's push token (`push.token`), made like the others: at `init`, or at the
/// first start of a node initialised before it existed.
pub fn load_or_create_push_token(data_dir: &Path) -> Result<String, AuthError> {
    load_or_create(&data_dir.join(PUSH_TOKEN_FILE))
}

fn load_or_create(path: &Path) -> Result<String, AuthError> {
    let path = path.to_path_buf();
    match std::fs::read_to_string(&path) {
        Ok(text) => return check(&path, text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AuthError::Io {
                path,
                doing: "reading a token",
                source,
            })
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    let token = hex::encode(bytes);
    let created =
        fsutil::create_atomic(&path, format!("{token}\n").as_bytes(), 0o600).map_err(|source| {
            AuthError::Io {
                path: path.clone(),
                doing: "creating a token",
                source,
            }
        })?;
    if created {
        return Ok(token);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| AuthError::Io {
        path: path.clone(),
        doing: "reading a token",
        source,
    })?;
    check(&path, text)
}

fn check(path: &Path, text: String) -> Result<String, AuthError> {
    let token = text.trim();
    if token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(token.to_string())
    } else {
        Err(AuthError::Malformed {
            path: path.to_path_buf(),
        })
    }
}

/// Whether an `Authorization` header value is `Bearer <expected>`. The comparison takes the same
/// time wherever the first wrong byte is, so the token cannot be guessed byte by byte.
pub fn token_matches(expected: &str, header_value: &str) -> bool {
    let value = header_value.trim();
    let Some((scheme, presented)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") || expected.is_empty() {
        return false;
    }
    let (a, b) = (expected.as_bytes(), presented.trim().as_bytes());
    // The length is not secret (every token is 64 hex digits); only the content is.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = load_or_create_token(dir.path()).expect("create");
        assert_eq!(token.len(), 64);
        assert_eq!(load_or_create_token(dir.path()).expect("reload"), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(TOKEN_FILE)).expect("stat");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(load_or_create_token(other.path()).expect("create"), token);

        std::fs::write(dir.path().join(TOKEN_FILE), "short\n").expect("overwrite");
        let err = load_or_create_token(dir.path()).expect_err("malformed");
        assert!(err.to_string().contains(TOKEN_FILE), "{err}");
    }

    #[test]
    fn mx1_the_metrics_token_is_its_own_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = load_or_create_token(dir.path()).expect("admin");
        let scrape = load_or_create_metrics_token(dir.path()).expect("metrics");
        assert_ne!(admin, scrape);
        assert_eq!(
            load_or_create_metrics_token(dir.path()).expect("reload"),
            scrape
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(METRICS_TOKEN_FILE)).expect("stat");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn bearer_header_matching() {
        let t = "ab".repeat(32);
        assert!(token_matches(&t, &format!("Bearer {t}")));
        assert!(token_matches(&t, &format!("bearer  {t} ")));
        assert!(!token_matches(&t, &t));
        assert!(!token_matches(&t, &format!("Basic {t}")));
        assert!(!token_matches(&t, &format!("Bearer {}", "ab".repeat(31))));
        assert!(!token_matches(&t, &format!("Bearer {}cd", "ab".repeat(31))));
        assert!(!token_matches("", "Bearer "));
    }
}
