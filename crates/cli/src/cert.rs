//! `cert show` and `cert generate` (CT-1). Through the admin API when the node runs (it takes a
//! new certificate into use at once); on the data directory's files when it does not.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Value};
use understudy_api::{CertRequest, Request};
use understudy_node::tls::{self, CERT_FILE, KEY_FILE};

use crate::api::{print_json, Api, Failure, Unreachable};
use crate::{CertCommand, Target};

pub async fn run(target: &Target, cmd: CertCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
        CertCommand::Show { json } => {
            let info = match api.try_request(&Request::Cert).await {
                Ok(answer) => answer?,
                Err(Unreachable(failure)) => match &api.data_dir {
                    Some(dir) => on_disk(dir)?,
                    None => return Err(failure),
                },
            };
            if json {
                print_json(&info);
            } else {
                print_human(&info);
            }
            Ok(())
        }
        CertCommand::Generate { ips, dns } => {
            let request = Request::GenerateCert(CertRequest {
                ips: ips.iter().map(IpAddr::to_string).collect(),
                dns: dns.clone(),
            });
            let info = match api.try_request(&request).await {
                Ok(answer) => answer?,
                Err(Unreachable(failure)) => {
                    match &api.data_dir {
                        Some(dir) => {
                            let info = generate_on_disk(dir, &ips, &dns)?;
                            println!("the node is not running: it will use this certificate when it starts");
                            info
                        }
                        None => return Err(failure),
                    }
                }
            };
            println!("generated a new certificate");
            print_human(&info);
            Ok(())
        }
    }
}

fn as_json(info: &tls::CertInfo) -> Value {
    json!({ "fingerprint": info.fingerprint, "sans": info.sans, "not_after": info.not_after })
}

/// The certificate on disk, without creating one.
pub fn on_disk(dir: &Path) -> Result<Value, Failure> {
    if !dir.join(CERT_FILE).exists() || !dir.join(KEY_FILE).exists() {
        return Err(Failure::refused(format!(
            "{}: no certificate here (create the node with `understudy init`, or run `understudy cert generate`)",
            dir.display()
        )));
    }
    let info = tls::load_or_generate(dir).map_err(|e| Failure::refused(e.to_string()))?;
    Ok(as_json(&info))
}

fn generate_on_disk(dir: &Path, ips: &[IpAddr], dns: &[String]) -> Result<Value, Failure> {
    let info =
        tls::generate_certificate(dir, ips, dns).map_err(|e| Failure::refused(e.to_string()))?;
    Ok(as_json(&info))
}

fn print_human(info: &Value) {
    let text = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    println!("fingerprint: {}", text("fingerprint"));
    let sans: Vec<String> = info
        .get("sans")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    println!("names:       {}", sans.join(", "));
    println!("not after:   {}", text("not_after"));
}
