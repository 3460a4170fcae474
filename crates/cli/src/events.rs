//! `events`: the event log (UI-1), oldest first, optionally followed as it grows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::Value;
use understudy_node::config::parse_duration;

use understudy_api::{EventQuery, Request};

use crate::api::{print_json, Api, Failure, Unreachable};
use crate::output::{field, format_time_ms, items};
use crate::Target;

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

#[derive(Args)]
pub struct EventsArgs {
    /// Print JSON: `{events:[...]}`, or with --follow one event per line
    #[arg(long)]
    json: bool,
    /// Keep printing new events as they happen (until interrupted)
    #[arg(long)]
    follow: bool,
    /// Only newer events: a duration ago (5m, 90s, 1h) or an event id (#123: the events after
    /// event 123)
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<Since>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Since {
    Id(u64),
    Ago(Duration),
}

fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Some(id) = s.strip_prefix('#') {
        return id
            .parse()
            .map(Since::Id)
            .map_err(|_| format!("`{s}` is not an event id (write it like #123)"));
    }
    parse_duration(s).map(Since::Ago).map_err(|_| {
        format!("`{s}` is neither a duration ago (like 5m, 90s, 1h) nor an event id (like #123)")
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn run(target: &Target, args: &EventsArgs) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let first = match &args.since {
        None => EventQuery::default(),
        Some(Since::Id(id)) => EventQuery {
            since: *id,
            ..EventQuery::default()
        },
        Some(Since::Ago(ago)) => EventQuery {
            since_ms: now_ms().saturating_sub(ago.as_millis() as i64).max(0),
            ..EventQuery::default()
        },
    };
    let answer = api.request(&Request::Events(first.clone())).await?;
    if !args.follow {
        if args.json {
            print_json(&answer);
        } else {
            let events = items(&answer, "events");
            if events.is_empty() {
                println!("no events");
            }
            events.iter().for_each(print_human);
        }
        return Ok(());
    }

    let mut last_id = print_batch(
        &answer,
        args.json,
        args.since.as_ref().and_then(|s| match s {
            Since::Id(id) => Some(*id),
            Since::Ago(_) => None,
        }),
    );
    let mut lost = false;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        // Until the first event is seen, ask again with the starting point the user gave.
        let next = match last_id {
            Some(since) => EventQuery {
                since,
                ..EventQuery::default()
            },
            None => first.clone(),
        };
        match api.try_request(&Request::Events(next)).await {
            Ok(answer) => {
                let answer = answer?;
                if lost {
                    eprintln!("understudy: the node answers again");
                    lost = false;
                }
                last_id = print_batch(&answer, args.json, last_id);
            }
            // Like `tail -f`: a node that restarts is followed again when it is back.
            Err(Unreachable(failure)) => {
                if !lost {
                    eprintln!("understudy: {}; retrying", failure.message);
                    lost = true;
                }
            }
        }
    }
}

/// Prints the events newer than `last_id` and returns the newest id seen.
fn print_batch(answer: &Value, json: bool, mut last_id: Option<u64>) -> Option<u64> {
    for event in items(answer, "events") {
        let id = event.get("id").and_then(Value::as_u64);
        if let (Some(id), Some(last)) = (id, last_id) {
            if id <= last {
                continue;
            }
        }
        if json {
            println!("{event}");
        } else {
            print_human(event);
        }
        if id.is_some() {
            last_id = id.max(last_id);
        }
    }
    last_id
}

fn print_human(event: &Value) {
    let time = event
        .get("time_ms")
        .and_then(Value::as_i64)
        .map(format_time_ms)
        .unwrap_or_else(|| "-".into());
    println!(
        "#{:<5} {time}  {:<16} {:<12} {}",
        field(event, "id"),
        field(event, "code"),
        field(event, "subject"),
        field(event, "sentence"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_an_id_or_a_duration() {
        assert_eq!(parse_since("#123"), Ok(Since::Id(123)));
        assert_eq!(parse_since("5m"), Ok(Since::Ago(Duration::from_secs(300))));
        assert!(parse_since("#x").is_err());
        assert!(parse_since("yesterday").is_err());
    }
}
