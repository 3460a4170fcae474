//! `alert …` (PRODUCT.md §3, AL-1…AL-6): the acting server's alerts and their delivery per
//! channel. Channels (`alert channel …`) are not built yet.

use clap::Subcommand;
use understudy_api::{AlertQuery, Alerts, Request};

use crate::api::{print_json, Api, Failure};
use crate::output::{format_time_ms, table};
use crate::Target;

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
}

pub async fn run(target: &Target, cmd: AlertCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
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
