//! CK-4 (issue 18 item 2): the agent's Prometheus remote-write receiver, `POST /api/v1/write`
//! on its own port (answered by `admin.rs` before the admin API's authorization), authorized by
//! the push token (`push.token` in the data directory, 0600). The body (remote write 1.0:
//! snappy, protobuf — the forwarder's `prost` types) becomes one record per sample (kind
//! `metric`, the series' `__name__` and labels, the sample's time and value), appended to the
//! cache in one commit before the answer: 204 once durable, so a sender retries what it was
//! not told is kept. A full disk (or any store failure) answers 5xx, which a sender retries;
//! what cannot be taken (not snappy, not protobuf, a label a record may not carry) is 400,
//! which a sender drops.

use std::collections::BTreeMap;

use crate::forward::WriteRequest;
use crate::store::NewRecord;

/// The largest compressed body read.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// The largest body once decompressed (checked from snappy's header before decompressing).
pub const MAX_DECODED: usize = 128 * 1024 * 1024;

/// The request's samples as records, and how many NaN or infinite samples (Prometheus' stale
/// markers among them) were left out, since a record holds a finite number.
pub fn records_of(body: &[u8]) -> Result<(Vec<NewRecord>, usize), String> {
    let decoded = snap::raw::decompress_len(body).map_err(|e| format!("not snappy: {e}"))?;
    if decoded > MAX_DECODED {
        return Err(format!(
            "the body decompresses to {decoded} bytes, more than {MAX_DECODED}"
        ));
    }
    let request: WriteRequest = crate::forward::decode(body)?;
    let mut records = Vec::new();
    let mut skipped = 0;
    for series in &request.timeseries {
        let mut name = None;
        let mut labels = BTreeMap::new();
        for label in &series.labels {
            if label.name == "__name__" {
                name = Some(label.value.clone());
            } else {
                labels.insert(crate::checks::exported(&label.name), label.value.clone());
            }
        }
        let name = name
            .filter(|n| !n.is_empty())
            .ok_or("a series without __name__")?;
        understudy_api::check_labels(&labels)
            .map_err(|e| format!("series {}: {e}", crate::logsafe::text(&name)))?;
        for sample in &series.samples {
            if !sample.value.is_finite() {
                skipped += 1;
                continue;
            }
            records.push(NewRecord {
                name: name.clone(),
                value: sample.value,
                time_ms: sample.timestamp,
                pair: None,
                kind: "metric".into(),
                detail: None,
                labels: labels.clone(),
                pair_epoch: None,
            });
        }
    }
    Ok((records, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{encode, Label, Sample, TimeSeries};

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn ck4_each_pushed_sample_is_a_record_with_its_series_labels() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    label("__name__", "node_load1"),
                    label("agent", "spoofed"),
                    label("instance", "h1:9100"),
                ],
                samples: vec![
                    Sample {
                        value: 0.5,
                        timestamp: 1000,
                    },
                    Sample {
                        value: f64::NAN,
                        timestamp: 2000,
                    },
                    Sample {
                        value: 0.7,
                        timestamp: 3000,
                    },
                ],
            }],
        };
        let (records, skipped) = records_of(&encode(&request)).expect("decodes");
        assert_eq!(skipped, 1, "a stale marker is not recorded");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "node_load1");
        assert_eq!(records[1].time_ms, 3000);
        assert_eq!(records[0].labels["instance"], "h1:9100");
        assert_eq!(records[0].labels["exported_agent"], "spoofed");
        assert!(records
            .iter()
            .all(|r| r.kind == "metric" && r.pair.is_none()));
    }

    #[test]
    fn ck4_a_body_that_is_not_remote_write_or_too_big_or_unlabelled_is_refused() {
        assert!(records_of(b"plain text").is_err());
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff not protobuf")
            .expect("snappy");
        assert!(records_of(&not_protobuf)
            .expect_err("not protobuf")
            .contains("not a WriteRequest"));
        // A snappy header claiming 4 GiB: refused before anything is allocated.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(records_of(&bomb)
            .expect_err("bomb")
            .contains("decompresses to"));
        let nameless = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("job", "x")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
        };
        assert!(records_of(&encode(&nameless)).is_err());
        let long = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "m"), label("l", &"x".repeat(2000))],
                samples: vec![],
            }],
        };
        assert!(records_of(&encode(&long))
            .expect_err("long")
            .contains("series m"));
    }
}
