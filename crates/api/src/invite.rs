//! UI-5 and `understudy invite` (PRODUCT.md §3): who may ask what ([`Permission`], decided per
//! request by [`crate::Request::needs`]), the kinds of token an invitation carries
//! ([`TokenKind`]), the one-line invitation itself ([`Invitation`], `understudy://join/1?…`) and
//! the typed views of `invite` and `invite list`.
//!
//! An invitation is a URL so that it is one line, can be read by a person and is versioned in
//! its path: `understudy://join/1?site=S&kind=operator&server=<URL>&server=<URL>&token=<hex>`,
//! each server as `https://HOST:PORT#SHA256` (the form `agent.servers` and `failover.peer`
//! take), values percent-encoded.

use serde::{Deserialize, Serialize};

use crate::request::{encode, split_query};

/// What a credential allows on the admin API, weakest first: a request is answered when the
/// credential's permission is at least what the request [`needs`](crate::Request::needs).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Status, events, records, series, metrics, lists.
    Read,
    /// Read, and the operator actions: force failover, revert, recall, accept/reject agents,
    /// `ha standby`.
    Operate,
    /// Everything: roles, certificates, tokens and invitations, site configuration, settings.
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::Admin => "admin",
        }
    }
}

/// What an invitation's token is for.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A desktop or script watching and operating the site ([`Permission::Operate`]).
    Operator,
    /// `invite --admin`: full rights on the admin API ([`Permission::Admin`]).
    Admin,
    /// `invite --agent`: an enrollment credential for agents (not an admin credential).
    Agent,
    /// `invite --peer`: the standby server's way to join (not an admin credential).
    Peer,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Operator,
        TokenKind::Admin,
        TokenKind::Agent,
        TokenKind::Peer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Operator => "operator",
            TokenKind::Admin => "admin",
            TokenKind::Agent => "agent",
            TokenKind::Peer => "peer",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What a bearer of this kind may do on the admin API; `None`: it is no admin credential.
    pub fn grants(self) -> Option<Permission> {
        match self {
            TokenKind::Operator => Some(Permission::Operate),
            TokenKind::Admin => Some(Permission::Admin),
            TokenKind::Agent | TokenKind::Peer => None,
        }
    }
}

/// `invite`: a new token of `kind` with an optional label; `address` is the host the
/// invitation names for this server when its `listen` address is not one a client can dial
/// (`0.0.0.0`).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InviteSpec {
    pub kind: TokenKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `--agent --uses N`: enrollments this token allows (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
}

/// The answer to `invite`: the one line to hand over (its secret is shown this once) and the
/// id `invite revoke` takes.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invited {
    pub id: String,
    pub invitation: String,
}

/// One token as `invite list` shows it: never its secret.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: String,
    #[serde(default)]
    pub label: String,
    pub kind: TokenKind,
    pub created_ms: i64,
    /// When a request last presented it to the server answering this list (each server keeps
    /// its own; `None`: never there).
    #[serde(default)]
    pub last_used_ms: Option<i64>,
    /// Agent tokens: enrollments left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

/// `GET /api/invitations`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Invitations {
    pub invitations: Vec<InvitationView>,
}

/// `init --join` with a `--peer` invitation: the joining server asks the inviting one to take
/// it as its hot-standby peer (`url` is `https://HOST:PORT#FINGERPRINT`, pinned from then on).
/// Allowed with that invitation's token (once) or the admin token.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerJoin {
    pub name: String,
    pub url: String,
}

/// The invitation format this version writes and reads.
pub const INVITATION_VERSION: u32 = 1;
const PREFIX: &str = "understudy://join/";

/// One server of the site as an invitation names it: `https://HOST:PORT` and its certificate's
/// SHA-256 fingerprint (64 hex digits), pinned by whoever joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitedServer {
    pub address: String,
    pub fingerprint: String,
}

impl InvitedServer {
    /// `https://HOST:PORT#FINGERPRINT`.
    pub fn url(&self) -> String {
        format!("https://{}#{}", self.address, self.fingerprint)
    }

    fn parse(url: &str) -> Result<InvitedServer, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("server {url:?} is not https://HOST:PORT#FINGERPRINT"))?;
        let (address, fingerprint) = rest
            .split_once('#')
            .ok_or_else(|| format!("server {url:?} carries no certificate fingerprint"))?;
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok || address.contains(['/', '?', '@', ' ']) {
            return Err(format!(
                "server {url:?} is not https://HOST:PORT#FINGERPRINT"
            ));
        }
        if !is_hex64(fingerprint) {
            return Err(format!(
                "server {address}: the fingerprint is not 64 hex digits (the invitation is cut short or altered)"
            ));
        }
        Ok(InvitedServer {
            address: address.to_string(),
            fingerprint: fingerprint.to_ascii_lowercase(),
        })
    }
}

/// A one-line invitation (UI-5, §3 `understudy invite`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// The name of the server that made it.
    pub site: String,
    pub kind: TokenKind,
    /// The server that made it first, then its hot-standby peer.
    pub servers: Vec<InvitedServer>,
    /// 64 hex digits (256 random bits); the server keeps only its SHA-256.
    pub token: String,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl Invitation {
    /// The one line: `understudy://join/1?site=…&kind=…&server=…&token=…`. The token comes last,
    /// so a line cut short loses it and is refused whole.
    pub fn encode(&self) -> String {
        let mut q = vec![
            format!("site={}", encode(&self.site)),
            format!("kind={}", self.kind.as_str()),
        ];
        for s in &self.servers {
            q.push(format!("server={}", encode(&s.url())));
        }
        q.push(format!("token={}", self.token));
        format!("{PREFIX}{INVITATION_VERSION}?{}", q.join("&"))
    }

    /// Reads an invitation, refusing (with the reason, PRODUCT.md §4) anything that is not a
    /// whole invitation of this version: another prefix, another version, a line cut short, a
    /// server without a fingerprint, a token that is not 64 hex digits.
    pub fn parse(text: &str) -> Result<Invitation, String> {
        let text = text.trim();
        let rest = text.strip_prefix(PREFIX).ok_or_else(|| {
            "not an invitation: it does not start with understudy://join/ (copy the whole line `understudy invite` printed)".to_string()
        })?;
        let (version, query) = rest.split_once('?').unwrap_or((rest, ""));
        match version.parse::<u32>() {
            Ok(INVITATION_VERSION) => {}
            Ok(v) => {
                return Err(format!(
                    "invitation version {v}: this understudy reads version {INVITATION_VERSION} (upgrade the one that is older)"
                ))
            }
            Err(_) => return Err(format!("not an invitation: version {version:?} is not a number")),
        }
        let (_, params) = split_query(&format!("?{query}"));
        let one = |key: &str| -> Result<String, String> {
            let mut values = params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            match (values.next(), values.next()) {
                (Some(v), None) if !v.is_empty() => Ok(v.clone()),
                (Some(_), Some(_)) => Err(format!("the invitation names {key} twice")),
                _ => Err(format!(
                    "the invitation has no {key}: it is cut short (copy the whole line)"
                )),
            }
        };
        if let Some((k, _)) = params
            .iter()
            .find(|(k, _)| !["site", "kind", "server", "token"].contains(&k.as_str()))
        {
            return Err(format!("the invitation has an unknown part {k:?}"));
        }
        let site = one("site")?;
        let kind = one("kind")?;
        let kind = TokenKind::parse(&kind).ok_or_else(|| {
            format!("the invitation's kind {kind:?} is not one this version knows")
        })?;
        let servers = params
            .iter()
            .filter(|(k, _)| k == "server")
            .map(|(_, v)| InvitedServer::parse(v))
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err("the invitation names no server".into());
        }
        if servers.len() > 2 {
            return Err("the invitation names more than two servers".into());
        }
        let token = one("token")?;
        if !is_hex64(&token) {
            return Err(
                "the invitation's token is not 64 hex digits: it is cut short or altered".into(),
            );
        }
        Ok(Invitation {
            site,
            kind,
            servers,
            token: token.to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Invitation {
        Invitation {
            site: "s 1".into(),
            kind: TokenKind::Operator,
            servers: vec![
                InvitedServer {
                    address: "10.0.0.1:7400".into(),
                    fingerprint: "ab".repeat(32),
                },
                InvitedServer {
                    address: "[fd00::2]:7400".into(),
                    fingerprint: "cd".repeat(32),
                },
            ],
            token: "0f".repeat(32),
        }
    }

    #[test]
    fn ui5_an_invitation_is_one_line_and_reads_back() {
        let text = example().encode();
        assert!(text.starts_with("understudy://join/1?"), "{text}");
        assert!(!text.contains(char::is_whitespace), "{text}");
        assert_eq!(Invitation::parse(&text), Ok(example()));
        assert_eq!(Invitation::parse(&format!("  {text}\n")), Ok(example()));
    }

    /// §4: a truncated line, another version, garbage, a server without its fingerprint — each
    /// refused with the reason.
    #[test]
    fn ui5_bad_invitations_are_refused_with_the_reason() {
        let text = example().encode();
        for cut in [10, 25, text.len() / 2, text.len() - 1] {
            let err = Invitation::parse(&text[..cut]).expect_err("cut short");
            assert!(!err.is_empty(), "{cut}");
        }
        let err = Invitation::parse(&text[..text.len() - 1]).expect_err("cut short");
        assert!(err.contains("cut short"), "{err}");
        let err = Invitation::parse(&text[..text.len() - 70]).expect_err("cut short");
        assert!(err.contains("cut short"), "{err}");
        let v2 = text.replace("/join/1?", "/join/2?");
        assert!(Invitation::parse(&v2)
            .expect_err("v2")
            .contains("version 2"));
        for garbage in [
            "",
            "hello",
            "understudy://join/x?token=1",
            "https://10.0.0.1:7400",
        ] {
            assert!(Invitation::parse(garbage).is_err(), "{garbage}");
        }
        let no_fp = text.replace(&format!("%23{}", "ab".repeat(32)), "");
        assert!(Invitation::parse(&no_fp)
            .expect_err("no fp")
            .contains("fingerprint"));
        let kind = text.replace("kind=operator", "kind=root");
        assert!(Invitation::parse(&kind).expect_err("kind").contains("root"));
    }

    #[test]
    fn ui5_only_operator_and_admin_tokens_are_admin_credentials() {
        assert_eq!(TokenKind::Operator.grants(), Some(Permission::Operate));
        assert_eq!(TokenKind::Admin.grants(), Some(Permission::Admin));
        assert_eq!(TokenKind::Agent.grants(), None);
        assert_eq!(TokenKind::Peer.grants(), None);
        assert!(Permission::Read < Permission::Operate && Permission::Operate < Permission::Admin);
    }
}
