//! `alert …` (PRODUCT.md §3, AL-1…AL-6): the acting server's alerts and their delivery per
//! channel, and the channels they go to (AL-4).

use clap::{Args, Subcommand};
use serde_json::Value;
use understudy_api::{
    AlertQuery, Alerts, ChannelEdit, ChannelSpec, Channels, KeptSetting, Request, Severity,
};

use crate::api::{print_done, print_json, Api, Failure};
use crate::output::{format_time_ms, table};
use crate::Target;

// Parsed once per run: a variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum AlertCommand {
    /// Alerts, oldest first, with their delivery per channel
    List {
        /// Print the admin API's JSON: {alerts:[{id, event_id, time_ms, code, severity, subject,
        /// sentence, deliveries:[{channel, state: pending|sent|failed, attempts, last_error}]}]}
        #[arg(long)]
        json: bool,
        /// Only alerts with a delivery still pending
        #[arg(long)]
        pending: bool,
        /// At most this many (the newest; default 100)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// The channels alerts are sent to (AL-4): site configuration, replicated to the STANDBY
    #[command(subcommand)]
    Channel(ChannelCommand),
}

/// A channel's settings, as `channel add` and `channel edit` take them.
#[derive(Args)]
pub struct ChannelFlags {
    /// webhook and ntfy: the URL to POST to
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// email: a recipient (repeatable)
    #[arg(long, value_name = "ADDR")]
    to: Vec<String>,
    /// email: the sender (default understudy@localhost)
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// email: smtp://[USER:PASSWORD@]HOST[:PORT] (STARTTLS), smtps://… (TLS) or
    /// smtp://HOST:PORT?tls=none
    #[arg(long, value_name = "URL")]
    smtp: Option<String>,
    /// webhook: sign each body, header X-Understudy-Signature: sha256=<hex HMAC-SHA256>
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// ntfy: access token (not `--token`: that is every command's admin token for --node)
    #[arg(id = "access_token", long = "access-token", value_name = "T")]
    token: Option<String>,
    /// webhook, ntfy, email: a file of PEM certificate authorities trusted for this channel's
    /// TLS besides the system's (a receiver with a private CA); its content is stored with
    /// the channel
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// command: the program, then each argument (repeatable); the message JSON on stdin
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    argv: Vec<String>,
    /// How long one delivery may take (default 10s)
    #[arg(long, value_name = "D", value_parser = crate::parse_duration_arg)]
    timeout: Option<std::time::Duration>,
    /// Only these codes (e.g. CHECK_DOWN,CHECK_UP)
    #[arg(long, value_name = "CODE,...", value_delimiter = ',')]
    codes: Vec<String>,
    /// Only alerts at least this severe
    #[arg(long, value_name = "info|warning|critical")]
    min_severity: Option<Severity>,
}

impl ChannelFlags {
    /// The channel these flags describe (the `--ca` file read here).
    fn spec(self, name: String, kind: String) -> Result<ChannelSpec, Failure> {
        let ca = match self.ca {
            Some(file) => Some(
                std::fs::read_to_string(&file)
                    .map_err(|e| Failure::usage(format!("reading --ca {}: {e}", file.display())))?,
            ),
            None => None,
        };
        Ok(ChannelSpec {
            name,
            kind,
            url: self.url,
            to: self.to,
            from: self.from,
            smtp: self.smtp,
            secret: self.secret,
            token: self.token,
            ca,
            argv: self.argv,
            timeout: self.timeout,
            codes: self.codes,
            min_severity: self.min_severity,
        })
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Add a channel (refused with the reason when a setting is bad; nothing is stored then)
    Add {
        name: String,
        /// webhook, ntfy, email, command, or desktop (the tray app of the acting server, AL-7)
        #[arg(long, value_name = "KIND")]
        kind: String,
        #[command(flatten)]
        settings: ChannelFlags,
    },
    /// Change a channel: the settings given (add's flags) replace its settings, except that a
    /// secret, access token or --ca left out is kept (--clear-… removes it), an SMTP password
    /// written "set" (as listed) is kept, and --kind may be left out (it does not change). Its
    /// queued alerts stay and go out with the new settings. Checked like add: a bad setting is
    /// refused and nothing changes
    Edit {
        name: String,
        /// The channel's kind (it cannot change; default: the stored one)
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        #[command(flatten)]
        settings: ChannelFlags,
        /// Remove the stored webhook secret (the body goes unsigned)
        #[arg(long, conflicts_with = "secret")]
        clear_secret: bool,
        /// Remove the stored ntfy access token
        #[arg(long, conflicts_with = "access_token")]
        clear_access_token: bool,
        /// Remove the stored certificate authorities (only the system's are trusted)
        #[arg(long, conflicts_with = "ca")]
        clear_ca: bool,
    },
    /// List the channels (secrets shown as "set")
    List {
        /// Print the admin API's JSON: {channels:[{name, kind, url, to, from, smtp, secret,
        /// token, ca, argv, timeout, codes, min_severity}]}
        #[arg(long)]
        json: bool,
    },
    /// Remove a channel
    Remove { name: String },
    /// Send a test message to a channel now
    Test { name: String },
}

/// PRODUCT.md §4: bad channel settings are refused (exit 1), not bad usage.
fn refused_not_usage(answer: Result<Value, Failure>) -> Result<Value, Failure> {
    answer.map_err(|f| match f.code {
        2 => Failure::refused(f.message),
        _ => f,
    })
}

async fn channel(api: &Api, cmd: ChannelCommand) -> Result<(), Failure> {
    match cmd {
        ChannelCommand::Add {
            name,
            kind,
            settings,
        } => {
            let request = Request::PutChannel(settings.spec(name.clone(), kind)?);
            print_done(
                refused_not_usage(api.request(&request).await)?,
                &format!("alert channel {name} added"),
            );
        }
        ChannelCommand::Edit {
            name,
            kind,
            settings,
            clear_secret,
            clear_access_token,
            clear_ca,
        } => {
            let clear = [
                (clear_secret, KeptSetting::Secret),
                (clear_access_token, KeptSetting::Token),
                (clear_ca, KeptSetting::Ca),
            ]
            .into_iter()
            .filter_map(|(given, setting)| given.then_some(setting))
            .collect();
            let request = Request::EditChannel(ChannelEdit {
                channel: settings.spec(name.clone(), kind.unwrap_or_default())?,
                clear,
            });
            print_done(
                refused_not_usage(api.request(&request).await)?,
                &format!("alert channel {name} changed"),
            );
        }
        ChannelCommand::List { json } => {
            if json {
                print_json(&api.request(&Request::Channels).await?);
                return Ok(());
            }
            let answer: Channels = api.fetch(&Request::Channels).await?;
            let rows: Vec<Vec<String>> = answer
                .channels
                .iter()
                .map(|c| {
                    let to = match c.kind.as_str() {
                        "email" => format!(
                            "{} via {}",
                            c.to.join(", "),
                            c.smtp.clone().unwrap_or_default()
                        ),
                        "command" => c.argv.join(" "),
                        "desktop" => "the acting server's tray app".into(),
                        _ => c.url.clone().unwrap_or_default(),
                    };
                    let mut filter = Vec::new();
                    if !c.codes.is_empty() {
                        filter.push(c.codes.join(","));
                    }
                    if let Some(s) = c.min_severity {
                        filter.push(format!(">= {}", s.as_str()));
                    }
                    let secret = match (&c.secret, &c.token) {
                        (Some(_), _) => "secret set",
                        (_, Some(_)) => "token set",
                        _ => "-",
                    };
                    vec![
                        c.name.clone(),
                        c.kind.clone(),
                        to,
                        if filter.is_empty() {
                            "all".into()
                        } else {
                            filter.join(" ")
                        },
                        secret.into(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no alert channels");
            } else {
                table(&["NAME", "KIND", "TO", "FILTER", "SECRET"], &rows);
            }
        }
        ChannelCommand::Remove { name } => {
            let answer = api
                .request(&Request::RemoveChannel { name: name.clone() })
                .await?;
            print_done(answer, &format!("alert channel {name} removed"));
        }
        ChannelCommand::Test { name } => {
            let answer = api
                .request(&Request::TestChannel { name: name.clone() })
                .await?;
            print_done(answer, &format!("test message sent to {name}"));
        }
    }
    Ok(())
}

pub async fn run(target: &Target, cmd: AlertCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
        AlertCommand::Channel(cmd) => channel(&api, cmd).await,
        AlertCommand::List {
            json,
            pending,
            limit,
        } => {
            let request = Request::Alerts(AlertQuery { pending, limit });
            if json {
                print_json(&api.request(&request).await?);
                return Ok(());
            }
            let answer: Alerts = api.fetch(&request).await?;
            let rows: Vec<Vec<String>> = answer
                .alerts
                .iter()
                .map(|a| {
                    let deliveries: Vec<String> = a
                        .deliveries
                        .iter()
                        .map(|d| format!("{} {} ({})", d.channel, d.state, d.attempts))
                        .collect();
                    vec![
                        format_time_ms(a.time_ms),
                        a.code.clone(),
                        format!("{:?}", a.severity).to_lowercase(),
                        a.subject.clone(),
                        a.sentence.clone(),
                        if deliveries.is_empty() {
                            "-".into()
                        } else {
                            deliveries.join(", ")
                        },
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no alerts");
            } else {
                table(
                    &[
                        "TIME",
                        "CODE",
                        "SEVERITY",
                        "SUBJECT",
                        "SENTENCE",
                        "DELIVERIES",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
    }
}
