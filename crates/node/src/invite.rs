//! UI-5 `understudy invite`: tokens handed out in invitations. A token is 32 random bytes (64 hex
//! digits); the store keeps only its SHA-256, as site configuration (a `token.ID` setting), so it
//! is replicated to the STANDBY with the rest of the site (HS-3) and revoked there by the same
//! replication. `last used` is each server's own, kept in memory and in its node state.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use understudy_api::{
    Invitation, InvitationView, Invitations, InviteSpec, InvitedServer, Permission, Refusal,
    TokenKind,
};

use crate::config::{Config, ServerUrl};
use crate::store::Store;

/// The settings key prefix of a token (`token.ID`).
pub const PREFIX: &str = "token.";
/// How often a token's `last used` is written to the node state (it is kept in memory at once).
const LAST_USED_SAVE_MS: i64 = 60_000;

/// A token as stored: its hash, never itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredToken {
    pub hash: String,
    #[serde(default)]
    pub label: String,
    pub kind: TokenKind,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

/// SHA-256 of a token, hex: 256 random bits need no slow hash (nothing to brute-force).
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, Refusal> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Refusal::failed(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// The stored tokens, by id.
pub fn tokens(store: &Store) -> Result<Vec<(String, StoredToken)>, Refusal> {
    let settings = store.settings_list().map_err(Refusal::failed)?;
    Ok(settings
        .into_iter()
        .filter_map(|(key, doc)| {
            let id = key.strip_prefix(PREFIX)?.to_string();
            match serde_json::from_value::<StoredToken>(doc) {
                Ok(t) => Some((id, t)),
                Err(e) => {
                    tracing::warn!("setting {key}: not a token ({e}); ignored");
                    None
                }
            }
        })
        .collect())
}

/// This server's URL for an invitation: `listen`, or `address` (`HOST` or `HOST:PORT`) when
/// given; a wildcard `listen` without `address` is refused (no client can dial `0.0.0.0`).
fn own_address(config: &Config, address: Option<&str>) -> Result<String, Refusal> {
    let listen: std::net::SocketAddr = config.node.listen.parse().map_err(|_| {
        Refusal::failed(format!("node.listen {} is not IP:PORT", config.node.listen))
    })?;
    let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
        if listen.ip().is_unspecified() {
            return Err(Refusal::invalid(format!(
                "this server listens on {listen}, which no client can dial: give --address HOST"
            )));
        }
        return Ok(listen.to_string());
    };
    let with_port = ServerUrl::parse(&format!("https://{address}"))
        .or_else(|_| ServerUrl::parse(&format!("https://{address}:{}", listen.port())))
        .or_else(|_| ServerUrl::parse(&format!("https://[{address}]:{}", listen.port())))
        .map_err(|e| Refusal::invalid(format!("--address {address}: {e}")))?;
    Ok(with_port.address())
}

/// `invite`: a new token stored (hashed) as site configuration and the invitation carrying it:
/// this server first, then its hot-standby peer (`failover.peer`, when it names a fingerprint).
pub fn create(
    store: &mut Store,
    config: &Config,
    own_fingerprint: &str,
    spec: &InviteSpec,
    now_ms: i64,
) -> Result<understudy_api::Invited, Refusal> {
    let label = spec.label.clone().unwrap_or_default();
    if label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(Refusal::invalid(
            "a label is at most 64 characters, without control characters",
        ));
    }
    let uses_left = match (spec.kind, spec.uses) {
        (TokenKind::Agent, None) => Some(1),
        (TokenKind::Agent, Some(0)) => return Err(Refusal::invalid("--uses must be at least 1")),
        (TokenKind::Agent, Some(n)) => Some(n),
        (_, Some(_)) => return Err(Refusal::invalid("--uses is for --agent invitations")),
        (_, None) => None,
    };
    let mut servers = vec![InvitedServer {
        address: own_address(config, spec.address.as_deref())?,
        fingerprint: own_fingerprint.to_string(),
    }];
    if let Ok(peer) = ServerUrl::parse(&config.failover.peer) {
        if let Some(fingerprint) = peer.fingerprint.clone() {
            servers.push(InvitedServer {
                address: peer.address(),
                fingerprint,
            });
        }
    }
    let token = random_hex(32)?;
    let id = random_hex(4)?;
    let stored = StoredToken {
        hash: hash(&token),
        label,
        kind: spec.kind,
        created_ms: now_ms,
        uses_left,
    };
    let doc = serde_json::to_value(&stored).map_err(Refusal::failed)?;
    store
        .setting_put(&format!("{PREFIX}{id}"), &doc)
        .map_err(Refusal::failed)?;
    let invitation = Invitation {
        site: config.node.name.clone(),
        kind: spec.kind,
        servers,
        token,
    };
    Ok(understudy_api::Invited {
        id,
        invitation: invitation.encode(),
    })
}

/// `invite revoke ID`: the token is gone from the site configuration (and from the STANDBY's
/// at its next poll).
pub fn revoke(store: &mut Store, id: &str) -> Result<String, Refusal> {
    match store
        .setting_remove(&format!("{PREFIX}{id}"))
        .map_err(Refusal::failed)?
    {
        Some(_) => Ok(format!("invitation {id} revoked")),
        None => Err(Refusal::not_found(format!("no invitation {id}"))),
    }
}

/// Each server's own record of when a token was last presented to it.
#[derive(Default)]
pub struct LastUsed {
    seen: Mutex<HashMap<String, (i64, i64)>>,
}

impl LastUsed {
    const STATE_KEY: &'static str = "invite.last_used";

    /// Notes a use; writes the node state at most once a minute per token.
    pub fn note(&self, store: &Mutex<Store>, id: &str, now_ms: i64) {
        let save = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let entry = seen.entry(id.to_string()).or_insert((now_ms, i64::MIN));
            entry.0 = now_ms;
            if now_ms.saturating_sub(entry.1) >= LAST_USED_SAVE_MS {
                entry.1 = now_ms;
                true
            } else {
                false
            }
        };
        if save {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            let mut saved = match store.state_get(Self::STATE_KEY) {
                Ok(Some(Value::Object(m))) => m,
                _ => Default::default(),
            };
            saved.insert(id.to_string(), now_ms.into());
            if let Err(e) = store.state_set(Self::STATE_KEY, &Value::Object(saved)) {
                tracing::warn!("saving when invitation {id} was last used: {e}");
            }
        }
    }

    fn get(&self, store: &Store, id: &str) -> Option<i64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(id).map(|(t, _)| *t).or_else(|| {
            store
                .state_get(Self::STATE_KEY)
                .ok()
                .flatten()
                .and_then(|v| v.get(id).and_then(Value::as_i64))
        })
    }
}

/// `invite list`: id, label, kind, created, last used here; never a secret or its hash.
pub fn list(store: &Store, used: &LastUsed) -> Result<Invitations, Refusal> {
    let mut invitations: Vec<InvitationView> = tokens(store)?
        .into_iter()
        .map(|(id, t)| InvitationView {
            last_used_ms: used.get(store, &id),
            id,
            label: t.label,
            kind: t.kind,
            created_ms: t.created_ms,
            uses_left: t.uses_left,
        })
        .collect();
    invitations.sort_by_key(|i| (i.created_ms, i.id.clone()));
    Ok(Invitations { invitations })
}

/// Which stored token an `Authorization: Bearer …` header presents, if any: its id and kind.
pub fn presented(store: &Store, header: &str) -> Option<(String, TokenKind)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() != 64 {
        return None;
    }
    let wanted = hash(token);
    let tokens = tokens(store).ok()?;
    tokens
        .into_iter()
        .find(|(_, t)| crate::admin_auth::token_matches(&t.hash, &format!("Bearer {wanted}")))
        .map(|(id, t)| (id, t.kind))
}

/// An agent's enrollment token compared with the `--agent` invitations (issue 14 item 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enrollment {
    /// No `--agent` invitation has this token.
    NotInvited,
    /// An invitation with uses left: one use is spent now (site configuration, replicated).
    Valid { id: String },
    /// The invitation's uses are spent: the agent waits for an operator like one without a
    /// token.
    Spent { id: String },
}

/// Whether `token` is an `--agent` invitation's; for a new agent (`known` false) with uses
/// left, spends one. A known agent spends nothing (it is admitted by its certificate).
pub fn enroll(store: &mut Store, token: &str, known: bool) -> Enrollment {
    let token = token.trim();
    if token.len() != 64 {
        return Enrollment::NotInvited;
    }
    let wanted = format!("Bearer {}", hash(token));
    let Ok(tokens) = tokens(store) else {
        return Enrollment::NotInvited;
    };
    let Some((id, mut stored)) = tokens.into_iter().find(|(_, t)| {
        t.kind == TokenKind::Agent && crate::admin_auth::token_matches(&t.hash, &wanted)
    }) else {
        return Enrollment::NotInvited;
    };
    match stored.uses_left {
        _ if known => Enrollment::Valid { id },
        Some(n) if n > 0 => {
            stored.uses_left = Some(n - 1);
            let saved = serde_json::to_value(&stored)
                .map_err(|e| e.to_string())
                .and_then(|doc| {
                    store
                        .setting_put(&format!("{PREFIX}{id}"), &doc)
                        .map_err(|e| e.to_string())
                });
            match saved {
                Ok(_) => Enrollment::Valid { id },
                Err(e) => {
                    tracing::warn!("spending a use of invitation {id}: {e}");
                    Enrollment::Spent { id }
                }
            }
        }
        _ => Enrollment::Spent { id },
    }
}

/// What an `Authorization` header allows on the admin API: the node's own admin token
/// everything, an operator or admin invitation's token what its kind grants.
pub fn grant(
    admin_token: &str,
    store: &Mutex<Store>,
    used: &LastUsed,
    header: Option<&str>,
    now_ms: i64,
) -> Option<Permission> {
    let header = header?;
    if crate::admin_auth::token_matches(admin_token, header) {
        return Some(Permission::Admin);
    }
    let (id, kind) = presented(&store.lock().unwrap_or_else(|p| p.into_inner()), header)?;
    let grants = kind.grants()?;
    used.note(store, &id, now_ms);
    Some(grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Store, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store.db"), "n1").expect("store");
        let mut config = Config::new("s1", dir.path());
        config.node.listen = "10.0.0.1:7400".into();
        (dir, store, config)
    }

    #[test]
    fn ui5_a_token_is_stored_hashed_listed_without_secret_and_revoked() {
        let (_dir, mut store, mut config) = setup();
        config.failover.peer = format!("https://10.0.0.2:7400#{}", "cd".repeat(32));
        let spec = InviteSpec {
            kind: TokenKind::Operator,
            label: Some("laptop".into()),
            address: None,
            uses: None,
        };
        let invited = create(&mut store, &config, &"ab".repeat(32), &spec, 1_000).expect("invite");
        let inv = Invitation::parse(&invited.invitation).expect("parses");
        assert_eq!(inv.servers.len(), 2, "{inv:?}");
        assert_eq!(inv.servers[0].address, "10.0.0.1:7400");
        assert_eq!(inv.servers[1].address, "10.0.0.2:7400");
        let settings =
            serde_json::to_string(&store.settings_list().expect("settings")).expect("json");
        assert!(!settings.contains(&inv.token), "the secret is not stored");
        assert!(settings.contains(&hash(&inv.token)));
        let used = LastUsed::default();
        let m = Mutex::new(store);
        let header = format!("Bearer {}", inv.token);
        assert_eq!(
            grant("ff".repeat(32).as_str(), &m, &used, Some(&header), 5_000),
            Some(Permission::Operate)
        );
        let listed = list(&m.lock().expect("lock"), &used).expect("list");
        assert_eq!(listed.invitations.len(), 1);
        assert_eq!(listed.invitations[0].last_used_ms, Some(5_000));
        assert_eq!(listed.invitations[0].label, "laptop");
        assert!(!serde_json::to_string(&listed)
            .expect("json")
            .contains(&inv.token));
        revoke(&mut m.lock().expect("lock"), &invited.id).expect("revoke");
        assert_eq!(
            grant("ff".repeat(32).as_str(), &m, &used, Some(&header), 6_000),
            None
        );
        assert!(revoke(&mut m.lock().expect("lock"), &invited.id).is_err());
    }

    #[test]
    fn ui5_an_agent_invitation_enrolls_as_many_new_agents_as_its_uses() {
        let (_dir, mut store, config) = setup();
        let spec = InviteSpec {
            kind: TokenKind::Agent,
            label: None,
            address: None,
            uses: Some(2),
        };
        let invited = create(&mut store, &config, &"ab".repeat(32), &spec, 1).expect("invite");
        let token = Invitation::parse(&invited.invitation)
            .expect("parses")
            .token;
        let id = invited.id;
        assert_eq!(
            enroll(&mut store, &token, false),
            Enrollment::Valid { id: id.clone() }
        );
        assert_eq!(
            enroll(&mut store, &token, true),
            Enrollment::Valid { id: id.clone() }
        );
        assert_eq!(
            enroll(&mut store, &token, false),
            Enrollment::Valid { id: id.clone() }
        );
        assert_eq!(
            enroll(&mut store, &token, false),
            Enrollment::Spent { id: id.clone() }
        );
        assert_eq!(enroll(&mut store, &token, true), Enrollment::Valid { id });
        assert_eq!(
            enroll(&mut store, &"0".repeat(64), false),
            Enrollment::NotInvited
        );
    }

    #[test]
    fn ui5_agent_and_peer_tokens_are_no_admin_credentials_and_a_wildcard_listen_needs_an_address() {
        let (_dir, mut store, mut config) = setup();
        let agent = InviteSpec {
            kind: TokenKind::Agent,
            label: None,
            address: None,
            uses: None,
        };
        let invited = create(&mut store, &config, &"ab".repeat(32), &agent, 1).expect("invite");
        let inv = Invitation::parse(&invited.invitation).expect("parses");
        assert_eq!(inv.servers.len(), 1);
        let m = Mutex::new(store);
        let header = format!("Bearer {}", inv.token);
        assert_eq!(grant("x", &m, &LastUsed::default(), Some(&header), 2), None);
        assert_eq!(
            list(&m.lock().expect("lock"), &LastUsed::default())
                .expect("list")
                .invitations[0]
                .uses_left,
            Some(1)
        );
        config.node.listen = "0.0.0.0:7400".into();
        let mut store = m.into_inner().expect("store");
        let op = InviteSpec {
            kind: TokenKind::Operator,
            ..agent
        };
        let err = create(&mut store, &config, &"ab".repeat(32), &op, 1).expect_err("wildcard");
        assert!(err.reason.contains("--address"), "{}", err.reason);
        let op = InviteSpec {
            address: Some("192.0.2.7".into()),
            ..op
        };
        let invited = create(&mut store, &config, &"ab".repeat(32), &op, 1).expect("address");
        let inv = Invitation::parse(&invited.invitation).expect("parses");
        assert_eq!(inv.servers[0].address, "192.0.2.7:7400");
    }
}
