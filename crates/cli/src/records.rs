//! `send` (records handed to the local agent, AG-2) and `records` (what this server has stored).

use clap::Args;
use serde_json::Value;
use understudy_api::{NewRecord, RecordQuery, Request};

use crate::api::{print_json, Api, Failure};
use crate::output::{field, format_time_ms, items, table};
use crate::Target;

/// One `NAME=VALUE` of `send`: a name without spaces and a finite number.
pub fn parse_assignment(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (for example cpu=0.5)"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "`{s}` has no name before `=` (for example cpu=0.5)"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("the name `{name}` has white space in it"));
    }
    let number: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("the value of `{name}` is `{value}`, which is not a number"))?;
    if !number.is_finite() {
        return Err(format!(
            "the value of `{name}` is `{value}`, which is not a finite number"
        ));
    }
    Ok((name.to_string(), number))
}

/// One `--label NAME=VALUE` of `send` (the node checks the name and the sizes).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (for example host=web-1)"))?;
    Ok((name.trim().to_string(), value.to_string()))
}

pub async fn send(
    target: &Target,
    records: &[(String, f64)],
    labels: &[(String, String)],
) -> Result<(), Failure> {
    let labels: std::collections::BTreeMap<String, String> = labels.iter().cloned().collect();
    let api = Api::connect(target)?;
    let request = Request::Send {
        records: records
            .iter()
            .map(|(name, value)| NewRecord {
                name: name.clone(),
                value: *value,
                time_ms: None,
                pair: None,
                kind: None,
                detail: None,
                labels: labels.clone(),
            })
            .collect(),
    };
    let answer = api.request(&request).await?;
    let n = records.len();
    let plural = if n == 1 { "" } else { "s" };
    match (answer.get("first_seq"), answer.get("last_seq")) {
        (Some(first), Some(last)) if !first.is_null() => {
            println!("handed {n} record{plural} to the agent (seq {first}..{last})")
        }
        _ => println!("handed {n} record{plural} to the agent"),
    }
    Ok(())
}

#[derive(Args)]
pub struct RecordsArgs {
    /// Print the admin API's JSON: {records:[{agent, seq, pair, name, value, time_ms, kind, detail,
    /// taken_for, labels}]}; `taken_for` is the agent's home server when this server stored the
    /// record as a standby of another site (AG-2), else null; `labels` (an object of strings) is
    /// left out when the record has none
    #[arg(long)]
    json: bool,
    /// Only this agent's records
    #[arg(long, value_name = "A")]
    agent: Option<String>,
    /// Only the records stored under this pair's alias
    #[arg(long, value_name = "P")]
    pair: Option<String>,
    /// At most this many (the newest)
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

pub async fn list(target: &Target, args: &RecordsArgs) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let answer = api
        .request(&Request::Records(RecordQuery {
            agent: args.agent.clone(),
            pair: args.pair.clone(),
            kind: None,
            limit: args.limit.map(|n| n as usize),
        }))
        .await?;
    if args.json {
        print_json(&answer);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items(&answer, "records")
        .iter()
        .map(|r| {
            vec![
                r.get("time_ms")
                    .and_then(Value::as_i64)
                    .map(format_time_ms)
                    .unwrap_or_else(|| "-".into()),
                field(r, "agent"),
                field(r, "seq"),
                field(r, "pair"),
                with_labels(field(r, "name"), r.get("labels")),
                field(r, "value"),
                field(r, "kind"),
                field(r, "detail"),
                field(r, "taken_for"),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no records");
    } else {
        table(
            &[
                "TIME",
                "AGENT",
                "SEQ",
                "PAIR",
                "NAME",
                "VALUE",
                "KIND",
                "DETAIL",
                "TAKEN FOR",
            ],
            &rows,
        );
    }
    Ok(())
}

/// A record's name with its labels the way Prometheus writes a series: `name{k="v",…}`.
fn with_labels(name: String, labels: Option<&Value>) -> String {
    let Some(labels) = labels.and_then(Value::as_object).filter(|l| !l.is_empty()) else {
        return name;
    };
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map(|s| format!("{s:?}")).unwrap_or_default()
            )
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ck4_a_records_labels_are_shown_after_its_name() {
        let labels = serde_json::json!({"instance": "h:9100", "job": "node"});
        assert_eq!(
            with_labels("up".into(), Some(&labels)),
            "up{instance=\"h:9100\",job=\"node\"}"
        );
        assert_eq!(with_labels("up".into(), None), "up");
        assert_eq!(parse_label("host=a=b"), Ok(("host".into(), "a=b".into())));
        assert!(parse_label("host").is_err());
    }

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("cpu=0.5"), Ok(("cpu".into(), 0.5)));
        assert_eq!(parse_assignment("a=-3"), Ok(("a".into(), -3.0)));
        for bad in [
            "cpu", "=1", "cpu=", "cpu=high", "cpu=NaN", "cpu=inf", "a b=1",
        ] {
            assert!(parse_assignment(bad).is_err(), "{bad}");
        }
    }
}
