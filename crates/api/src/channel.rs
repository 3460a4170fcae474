//! Alert channels (AL-4): where the acting server sends alerts, as an operator defines them
//! (`alert channel add`), as the node stores and replicates them, and as every view lists them
//! (secrets shown as "set", never their value).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use understudy_engine::EventCode;

use crate::event::Severity;
use crate::refusal::Refusal;

/// The kinds of channel.
pub const CHANNEL_KINDS: &[&str] = &["webhook", "ntfy", "email", "command", "desktop"];

/// How long one delivery to a channel may take when the channel says nothing
/// (`--timeout`): a hanging receiver or command is given up after it and retried.
pub const CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// `alert channel add` (AL-4): a channel as given and as stored (with its secrets).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// (Absent: refused by [`ChannelSpec::validate`]; an edit takes it from its path.)
    #[serde(default)]
    pub name: String,
    /// `webhook`, `ntfy`, `email`, `command`, or `desktop` (AL-7: a notification on the
    /// desktop of the acting server's tray app). (Absent: refused by `add`; an edit keeps the
    /// stored kind.)
    #[serde(default)]
    pub kind: String,
    /// webhook and ntfy: where to POST (`http://` or `https://`).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// email: the recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// email: the sender (default `understudy@localhost`).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// email: `smtp://[USER:PASSWORD@]HOST[:PORT]` with STARTTLS (port 587),
    /// `smtps://…` with TLS from the start (465), or `smtp://…?tls=none` in the clear (25).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// webhook: the HMAC-SHA256 key of `X-Understudy-Signature`.
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// ntfy: the access token (`Authorization: Bearer`).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// webhook, ntfy and email: certificate authorities (PEM) trusted for this channel's TLS
    /// besides the system's, for a receiver with a private CA (`--ca FILE`: the file's content,
    /// kept and replicated with the channel, so the STANDBY needs no copy of the file).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// command: the program and its arguments; the message JSON on its stdin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// How long one delivery may take (default [`CHANNEL_TIMEOUT`]).
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    #[serde(
        default,
        with = "crate::duration::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Filter: only these event codes (empty: every code that alerts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// Filter: only alerts at least this severe.
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// `GET /api/alerts/channels` (`alert channel list --json`): each channel as
/// [`ChannelSpec::view`] shows it (secrets "set", the SMTP password "set", the timeout given).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Channels {
    pub channels: Vec<ChannelSpec>,
}

const SET: &str = "set";

/// A setting `alert channel edit` keeps when it is left out, and so can only remove when told
/// (`clear`): the two secrets, which no view shows again, and the `--ca` file's content.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeptSetting {
    /// The webhook's HMAC key.
    Secret,
    /// The ntfy access token.
    Token,
    /// The certificate authorities of `--ca`.
    Ca,
}

/// `alert channel edit` (`PUT /api/alerts/channels/{name}`): the channel's new settings. They
/// replace the stored ones, validated exactly like `add`, except what an operator cannot read
/// back to give again: a `secret`, `token` or `ca` left out (absent or empty) keeps the stored
/// one unless named in `clear`; an SMTP URL whose password is "set" (as the list shows it)
/// keeps the stored password; a `kind` left out keeps the stored kind (it cannot change). The
/// name is the channel's: an edit does not rename.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelEdit {
    #[serde(flatten)]
    pub channel: ChannelSpec,
    /// Stored settings to remove rather than keep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clear: Vec<KeptSetting>,
}

impl ChannelEdit {
    /// The channel as it will be stored: these settings over `stored`'s kept ones, validated.
    /// The reason when refused; nothing is changed then.
    pub fn apply(&self, stored: &ChannelSpec) -> Result<ChannelSpec, Refusal> {
        let given = &self.channel;
        let refuse = |why: String| Refusal::invalid(format!("channel {}: {why}", stored.name));
        if !given.name.is_empty() && given.name != stored.name {
            return Err(refuse(format!(
                "an edit does not rename a channel (to {:?}): add the new one and remove this one",
                given.name
            )));
        }
        let kind = if given.kind.is_empty() {
            stored.kind.clone()
        } else if given.kind != stored.kind {
            return Err(refuse(format!(
                "a {} channel stays a {} channel (not {}): add a new channel and remove this one",
                stored.kind, stored.kind, given.kind
            )));
        } else {
            given.kind.clone()
        };
        let keep = |setting: KeptSetting, new: &Option<String>, old: &Option<String>| {
            if self.clear.contains(&setting) {
                None
            } else if new.as_deref().is_some_and(|v| !v.is_empty()) {
                new.clone()
            } else {
                old.clone()
            }
        };
        let smtp = match (&given.smtp, &stored.smtp) {
            (Some(url), old) if smtp_password(url) == Some(SET) => {
                match old.as_deref().and_then(smtp_password) {
                    Some(password) => Some(with_smtp_password(url, password)),
                    None => {
                        return Err(refuse(
                            "the SMTP password \"set\" stands for the stored one, and this channel has none: give the password".into(),
                        ))
                    }
                }
            }
            (given, _) => given.clone(),
        };
        let spec = ChannelSpec {
            name: stored.name.clone(),
            kind,
            smtp,
            secret: keep(KeptSetting::Secret, &given.secret, &stored.secret),
            token: keep(KeptSetting::Token, &given.token, &stored.token),
            ca: keep(KeptSetting::Ca, &given.ca, &stored.ca),
            ..given.clone()
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// An SMTP URL's login split as [`SmtpUrl::parse`] reads it: `(scheme://, user, password as
/// written (percent-encoded), @host…)`.
fn smtp_login(url: &str) -> Option<(&str, &str, &str, &str)> {
    let at_rest = url.find("://")? + 3;
    let (scheme, rest) = url.split_at(at_rest);
    let before_query = rest.split('?').next().unwrap_or(rest);
    let at = before_query.rfind('@')?;
    let (userinfo, after) = rest.split_at(at);
    let (user, password) = userinfo.split_once(':')?;
    Some((scheme, user, password, after))
}

fn smtp_password(url: &str) -> Option<&str> {
    smtp_login(url).map(|(_, _, password, _)| password)
}

/// `url` with `password` (as written) in place of its login's password.
fn with_smtp_password(url: &str, password: &str) -> String {
    match smtp_login(url) {
        Some((scheme, user, _, after)) => format!("{scheme}{user}:{password}{after}"),
        None => url.to_string(),
    }
}

/// The parts of an SMTP URL (`ChannelSpec::smtp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Login and password (AUTH PLAIN), if given.
    pub login: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// In the clear (`?tls=none`; for a relay on the same machine).
    None,
}

impl SmtpUrl {
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        let bad = |why: &str| format!("bad SMTP URL {}: {why}", redact_password(url));
        let (implicit, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(bad("expected smtp://HOST[:PORT] or smtps://HOST[:PORT]"));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.trim_end_matches('/');
        let (login, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (user, pass) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("a login is USER:PASSWORD@"))?;
                (Some((percent_decode(user), percent_decode(pass))), hp)
            }
            None => (None, rest),
        };
        let tls = match (implicit, query) {
            (true, "") => SmtpTls::Implicit,
            (false, "") | (false, "tls=starttls") => SmtpTls::StartTls,
            (false, "tls=none") => SmtpTls::None,
            _ => {
                return Err(bad(
                    "the only option is ?tls=starttls or ?tls=none (smtp://)",
                ))
            }
        };
        let default_port = match tls {
            SmtpTls::Implicit => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        };
        let (host, port) = split_host_port(hostport, default_port).map_err(|w| bad(&w))?;
        if login.is_some() && tls == SmtpTls::None {
            return Err(bad(
                "a password is not sent in the clear: use STARTTLS or smtps://",
            ));
        }
        Ok(SmtpUrl {
            host,
            port,
            tls,
            login,
        })
    }
}

/// `HOST[:PORT]` or `[V6]:PORT`.
fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("an IPv6 address is [ADDR]")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err("no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// An `http://` or `https://` URL: `(https, host, port, path and query)`.
pub fn parse_http_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let bad = |why: &str| format!("bad URL {url}: {why}");
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("expected http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(bad(
            "a login in the URL is not supported (use --secret or --access-token)",
        ));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("spaces are not allowed"));
    }
    let (host, port) =
        split_host_port(authority, if https { 443 } else { 80 }).map_err(|w| bad(&w))?;
    Ok((https, host, port, path))
}

fn redact_password(url: &str) -> String {
    with_smtp_password(url, SET)
}

fn percent_decode(s: &str) -> String {
    let (_, q) = crate::request::split_query(&format!("?x={}", s.replace('+', "%2B")));
    q.into_iter().next().map(|(_, v)| v).unwrap_or_default()
}

/// An email address as SMTP takes it: `local@domain`, nothing that could end a command.
fn valid_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !a.contains(|c: char| c.is_whitespace() || c.is_control() || "<>,;".contains(c))
        }
        None => false,
    }
}

impl ChannelSpec {
    /// The timeout of one delivery.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(CHANNEL_TIMEOUT)
    }

    /// AL-4's filter: whether an alert with `code` and `severity` goes to this channel.
    pub fn accepts(&self, code: &str, severity: Severity) -> bool {
        (self.codes.is_empty() || self.codes.iter().any(|c| c == code))
            && self.min_severity.is_none_or(|min| severity >= min)
    }

    /// PRODUCT.md §4 "bad channel settings": the reason a channel is refused, if it is.
    pub fn validate(&self) -> Result<(), Refusal> {
        let refuse = |why: String| Refusal::invalid(format!("channel {}: {why}", self.name));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Refusal::invalid(format!(
                "channel name {:?}: 1 to 64 letters, digits, '.', '_' or '-'",
                self.name
            )));
        }
        let unwanted = |what: &str, given: bool| -> Result<(), Refusal> {
            if given {
                Err(refuse(format!(
                    "--{what} does not apply to a {} channel",
                    self.kind
                )))
            } else {
                Ok(())
            }
        };
        match self.kind.as_str() {
            "webhook" | "ntfy" => {
                let Some(url) = &self.url else {
                    return Err(refuse(format!("a {} channel needs --url", self.kind)));
                };
                parse_http_url(url).map_err(refuse)?;
                unwanted("to", !self.to.is_empty())?;
                unwanted("from", self.from.is_some())?;
                unwanted("smtp", self.smtp.is_some())?;
                unwanted("argv", !self.argv.is_empty())?;
                if self.kind == "webhook" {
                    unwanted("access-token", self.token.is_some())?;
                } else {
                    unwanted("secret", self.secret.is_some())?;
                }
            }
            "email" => {
                if self.to.is_empty() {
                    return Err(refuse("an email channel needs --to ADDR".into()));
                }
                for a in self.to.iter().chain(&self.from) {
                    if !valid_address(a) {
                        return Err(refuse(format!("{a:?} is not an email address")));
                    }
                }
                let Some(smtp) = &self.smtp else {
                    return Err(refuse("an email channel needs --smtp URL".into()));
                };
                SmtpUrl::parse(smtp).map_err(refuse)?;
                unwanted("url", self.url.is_some())?;
                unwanted("secret", self.secret.is_some())?;
                unwanted("access-token", self.token.is_some())?;
                unwanted("argv", !self.argv.is_empty())?;
            }
            "command" => {
                if self.argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(refuse(
                        "a command channel needs --argv PROGRAM [--argv ARG]…".into(),
                    ));
                }
                unwanted("url", self.url.is_some())?;
                unwanted("to", !self.to.is_empty())?;
                unwanted("smtp", self.smtp.is_some())?;
                unwanted("secret", self.secret.is_some())?;
                unwanted("access-token", self.token.is_some())?;
                unwanted("ca", self.ca.is_some())?;
            }
            "desktop" => {
                unwanted("ca", self.ca.is_some())?;
                unwanted("url", self.url.is_some())?;
                unwanted("to", !self.to.is_empty())?;
                unwanted("from", self.from.is_some())?;
                unwanted("smtp", self.smtp.is_some())?;
                unwanted("secret", self.secret.is_some())?;
                unwanted("access-token", self.token.is_some())?;
                unwanted("argv", !self.argv.is_empty())?;
            }
            "" => {
                return Err(refuse(
                    "a channel needs --kind webhook|ntfy|email|command|desktop".into(),
                ))
            }
            other => {
                return Err(refuse(format!(
                    "unknown kind {other}: expected webhook, ntfy, email, command or desktop"
                )))
            }
        }
        if let Some(ca) = &self.ca {
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                return Err(refuse(
                    "--ca must be a file of PEM certificates (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(refuse("--timeout must be more than 0".into()));
        }
        for code in &self.codes {
            match EventCode::parse(code) {
                Some(c) if c.notify() => {}
                Some(_) => return Err(refuse(format!("code {code} never alerts (AL-1)"))),
                None => return Err(refuse(format!("unknown code {code}"))),
            }
        }
        Ok(())
    }

    /// The channel as listed: secrets (and an SMTP password) "set", the timeout given.
    pub fn view(&self) -> ChannelSpec {
        let set = |s: &Option<String>| s.as_ref().map(|_| SET.to_string());
        ChannelSpec {
            smtp: self.smtp.as_deref().map(redact_password),
            secret: set(&self.secret),
            token: set(&self.token),
            timeout: Some(self.timeout()),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> ChannelSpec {
        ChannelSpec {
            name: "hook".into(),
            kind: "webhook".into(),
            url: Some(url.into()),
            ..ChannelSpec::default()
        }
    }

    #[test]
    fn al4_bad_channel_settings_are_refused_with_the_reason() {
        let reason = |c: ChannelSpec| c.validate().unwrap_err().reason;
        assert!(webhook("http://127.0.0.1:9/x").validate().is_ok());
        assert!(reason(webhook("ftp://x")).contains("expected http:// or https://"));
        assert!(reason(webhook("http://:80/")).contains("no host"));
        assert!(reason(webhook("http://h:99999/")).contains("not a number from 1 to 65535"));
        let mut c = webhook("http://h/");
        c.url = None;
        assert!(reason(c).contains("needs --url"));
        let mut c = webhook("http://h/");
        c.kind = "pager".into();
        assert!(reason(c).contains("unknown kind pager"));
        let mut c = webhook("http://h/");
        c.codes = vec!["CHECK_DOWN".into(), "NOPE".into()];
        assert!(reason(c).contains("unknown code NOPE"));
        let mut c = webhook("http://h/");
        c.name = "a b".into();
        assert!(reason(c).contains("channel name"));
        let mail = |to: &str, smtp: &str| ChannelSpec {
            name: "mail".into(),
            kind: "email".into(),
            to: vec![to.into()],
            smtp: Some(smtp.into()),
            ..ChannelSpec::default()
        };
        assert!(mail("ops@example.org", "smtp://127.0.0.1:25?tls=none")
            .validate()
            .is_ok());
        assert!(reason(mail("ops", "smtp://h")).contains("is not an email address"));
        assert!(reason(mail("a@b\r\nRCPT TO:<x@y>", "smtp://h")).contains("not an email"));
        assert!(reason(mail("a@b", "http://h")).contains("bad SMTP URL"));
        let r = reason(mail("a@b", "smtp://u:hunter2@h?tls=none"));
        assert!(
            r.contains("not sent in the clear") && !r.contains("hunter2"),
            "{r}"
        );
    }

    #[test]
    fn al4_an_edit_replaces_the_settings_and_keeps_the_secrets_it_leaves_out() {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let stored = ChannelSpec {
            secret: Some("s3cret".into()),
            ca: Some(ca.into()),
            codes: vec!["CHECK_DOWN".into()],
            ..webhook("http://127.0.0.1:9/old")
        };
        let edit = |channel: ChannelSpec, clear: Vec<KeptSetting>| ChannelEdit { channel, clear };
        // A new URL; the secret and the CA left out are kept, the filter given (none) replaces.
        let given = ChannelSpec {
            kind: String::new(),
            ..webhook("http://127.0.0.1:9/new")
        };
        let got = edit(given.clone(), vec![]).apply(&stored).expect("applied");
        assert_eq!(got.url.as_deref(), Some("http://127.0.0.1:9/new"));
        assert_eq!(got.kind, "webhook");
        assert_eq!(got.secret.as_deref(), Some("s3cret"));
        assert_eq!(got.ca.as_deref(), Some(ca));
        assert!(got.codes.is_empty());
        // An empty secret (a form's empty field) keeps it too; a new one replaces it.
        let empty = ChannelSpec {
            secret: Some(String::new()),
            ..given.clone()
        };
        let got = edit(empty, vec![]).apply(&stored).expect("applied");
        assert_eq!(got.secret.as_deref(), Some("s3cret"));
        let new = ChannelSpec {
            secret: Some("n3w".into()),
            ..given.clone()
        };
        let got = edit(new, vec![]).apply(&stored).expect("applied");
        assert_eq!(got.secret.as_deref(), Some("n3w"));
        // Cleared when told.
        let got = edit(given.clone(), vec![KeptSetting::Secret, KeptSetting::Ca])
            .apply(&stored)
            .expect("applied");
        assert_eq!((got.secret, got.ca), (None, None));
        // Refused, with the reason, like add: a bad URL, another kind, another name.
        let reason = |e: ChannelEdit| e.apply(&stored).unwrap_err().reason;
        assert!(reason(edit(webhook("ftp://x"), vec![])).contains("expected http://"));
        let ntfy = ChannelSpec {
            kind: "ntfy".into(),
            ..given.clone()
        };
        assert!(reason(edit(ntfy, vec![])).contains("a webhook channel stays a webhook channel"));
        let renamed = ChannelSpec {
            name: "other".into(),
            ..given
        };
        assert!(reason(edit(renamed, vec![])).contains("does not rename"));
    }

    #[test]
    fn al4_an_edit_keeps_the_smtp_password_shown_as_set() {
        let mail = |smtp: &str| ChannelSpec {
            name: "mail".into(),
            kind: "email".into(),
            to: vec!["ops@example.org".into()],
            smtp: Some(smtp.into()),
            ..ChannelSpec::default()
        };
        let stored = mail("smtps://ops:hun%40ter2@mail.example.org");
        let shown = stored.view().smtp.expect("smtp");
        assert_eq!(shown, "smtps://ops:set@mail.example.org");
        let apply = |smtp: &str| {
            ChannelEdit {
                channel: mail(smtp),
                clear: vec![],
            }
            .apply(&stored)
        };
        let got = apply("smtps://ops:set@mail2.example.org:2465").expect("applied");
        assert_eq!(
            got.smtp.as_deref(),
            Some("smtps://ops:hun%40ter2@mail2.example.org:2465")
        );
        let url = SmtpUrl::parse(got.smtp.as_deref().unwrap_or_default()).expect("parsed");
        assert_eq!(url.login, Some(("ops".into(), "hun@ter2".into())));
        let got = apply("smtps://ops:n3w@mail.example.org").expect("applied");
        assert_eq!(
            got.smtp.as_deref(),
            Some("smtps://ops:n3w@mail.example.org")
        );
        let got = apply("smtps://mail.example.org").expect("applied");
        assert_eq!(got.smtp.as_deref(), Some("smtps://mail.example.org"));
        let no_login = mail("smtps://mail.example.org");
        let r = ChannelEdit {
            channel: mail("smtps://ops:set@mail.example.org"),
            clear: vec![],
        }
        .apply(&no_login)
        .unwrap_err();
        assert!(r.reason.contains("has none"), "{}", r.reason);
    }

    #[test]
    fn al4_the_filter_takes_codes_and_a_minimum_severity() {
        let mut c = webhook("http://h/");
        assert!(c.accepts("FAILOVER", Severity::Info));
        c.min_severity = Some(Severity::Warning);
        assert!(!c.accepts("FAILOVER", Severity::Info));
        assert!(c.accepts("CHECK_DOWN", Severity::Critical));
        c.codes = vec!["CHECK_UP".into()];
        assert!(!c.accepts("CHECK_DOWN", Severity::Critical));
        assert!(c.accepts("CHECK_UP", Severity::Warning));
    }

    #[test]
    fn al4_secrets_are_listed_as_set() {
        let mut c = webhook("http://h/");
        c.secret = Some("s3cret".into());
        let v = serde_json::to_string(&c.view()).unwrap();
        assert!(
            v.contains(r#""secret":"set""#) && !v.contains("s3cret"),
            "{v}"
        );
        let mail = ChannelSpec {
            smtp: Some("smtps://ops:hunter2@mail.example.org".into()),
            ..ChannelSpec::default()
        };
        let v = mail.view();
        assert_eq!(v.smtp.as_deref(), Some("smtps://ops:set@mail.example.org"));
        let u = SmtpUrl::parse("smtps://ops:hun%40ter2@mail.example.org").unwrap();
        assert_eq!(u.port, 465);
        assert_eq!(u.tls, SmtpTls::Implicit);
        assert_eq!(u.login, Some(("ops".into(), "hun@ter2".into())));
    }
}
