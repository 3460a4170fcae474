//! CK-4 (issue 18 item 2): the agent's Prometheus remote-write receiver, `POST /api/v1/write`
//! on its own port (answered by `admin.rs` before the admin API's authorization), authorized by
//! the push token (`push.token` in the data directory, 0600). The body (remote write 1.0:
//! snappy, protobuf — the forwarder's `prost` types) becomes one record per sample (kind
//! `metric`, the series' `__name__` and labels, the sample's time and value), appended to the
//! cache in one commit before the answer: 204 once durable, so a sender retries what it was
//! not told is kept. A full disk (or any store failure) answers 5xx, which a sender retries;
//! what cannot be taken (not snappy, not protobuf, a label a record may not carry) is 400,
//! which a sender drops; a push beyond the limits below is 413, which a sender drops too.
//!
//! What a push costs in memory is bounded before it is decoded, whatever its bytes: a few bytes
//! on the wire can be a label or a sample (two bytes each when empty), each a struct once
//! decoded and each sample a record carrying its series' labels, so the counts are read from
//! the wire first ([`shape`]) and the records' size is reckoned before they are made.

use std::collections::BTreeMap;

use crate::forward::WriteRequest;
use crate::store::NewRecord;

/// The largest compressed body read.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// The largest body once decompressed (checked from snappy's header before decompressing).
pub const MAX_DECODED: usize = 128 * 1024 * 1024;
/// The most samples (and the most series) one push may carry: Prometheus sends at most 2,000
/// a push by default and vmagent 10,000 rows a block, so this leaves room and bounds the
/// records one push becomes (one commit).
pub const MAX_SAMPLES: usize = 100_000;
/// The most labels one push may carry, over all its series.
pub const MAX_LABELS: usize = 1_000_000;
/// The most bytes the records of one push may hold (each sample's name and labels, as the
/// cache stores them): a series with long labels and many samples is refused rather than
/// copied into every record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Why a push is not taken, with the HTTP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// 413: beyond a limit of this receiver.
    TooLarge(String),
    /// 400: not a remote-write request this agent can take.
    Bad(String),
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::TooLarge(_) => 413,
            Refused::Bad(_) => 400,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Refused::TooLarge(why) | Refused::Bad(why) => why,
        }
    }
}

/// A WriteRequest's series, labels and samples, counted on the wire (protobuf field 1
/// `timeseries`; in each, field 1 `labels` and field 2 `samples`) without decoding any.
pub fn shape(raw: &[u8]) -> Result<(usize, usize, usize), String> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
    let bad = |e: prost::DecodeError| format!("not a WriteRequest: {e}");
    let (mut series, mut labels, mut samples) = (0, 0, 0);
    let mut buf = raw;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(bad)?;
        if tag != 1 || wire != WireType::LengthDelimited {
            skip_field(wire, tag, &mut buf, DecodeContext::default()).map_err(bad)?;
            continue;
        }
        let len = decode_varint(&mut buf).map_err(bad)? as usize;
        if len > buf.len() {
            return Err("not a WriteRequest: a series runs past the end".into());
        }
        let (mut inner, rest) = buf.split_at(len);
        buf = rest;
        series += 1;
        while !inner.is_empty() {
            let (tag, wire) = decode_key(&mut inner).map_err(bad)?;
            match (tag, wire) {
                (1, WireType::LengthDelimited) => labels += 1,
                (2, WireType::LengthDelimited) => samples += 1,
                _ => {}
            }
            skip_field(wire, tag, &mut inner, DecodeContext::default()).map_err(bad)?;
        }
    }
    Ok((series, labels, samples))
}

/// The request's samples as records, and how many NaN or infinite samples (Prometheus' stale
/// markers among them) were left out, since a record holds a finite number.
pub fn records_of(body: &[u8]) -> Result<(Vec<NewRecord>, usize), Refused> {
    let decoded =
        snap::raw::decompress_len(body).map_err(|e| Refused::Bad(format!("not snappy: {e}")))?;
    if decoded > MAX_DECODED {
        return Err(Refused::TooLarge(format!(
            "the body decompresses to {decoded} bytes, more than {MAX_DECODED}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Refused::Bad(format!("not snappy: {e}")))?;
    let (series, labels, samples) = shape(&raw).map_err(Refused::Bad)?;
    if samples > MAX_SAMPLES || series > MAX_SAMPLES || labels > MAX_LABELS {
        return Err(Refused::TooLarge(format!(
            "{samples} samples in {series} series with {labels} labels, more than a push may \
             carry ({MAX_SAMPLES} samples, {MAX_SAMPLES} series, {MAX_LABELS} labels)"
        )));
    }
    let request: WriteRequest = {
        use prost::Message;
        WriteRequest::decode(raw.as_slice())
            .map_err(|e| Refused::Bad(format!("not a WriteRequest: {e}")))?
    };
    drop(raw);
    let record_bytes: usize = request
        .timeseries
        .iter()
        .map(|s| {
            let labels: usize = s.labels.iter().map(|l| l.name.len() + l.value.len()).sum();
            s.samples.len() * labels
        })
        .sum();
    if record_bytes > MAX_RECORD_BYTES {
        return Err(Refused::TooLarge(format!(
            "its samples would be {record_bytes} bytes of records with their labels, more \
             than the {MAX_RECORD_BYTES} a push may become"
        )));
    }
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
            .ok_or_else(|| Refused::Bad("a series without __name__".into()))?;
        understudy_api::check_labels(&labels)
            .map_err(|e| Refused::Bad(format!("series {}: {e}", crate::logsafe::text(&name))))?;
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
        assert_eq!(
            records_of(b"plain text").map(|_| ()).unwrap_err().status(),
            400
        );
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff not protobuf")
            .expect("snappy");
        assert!(records_of(&not_protobuf)
            .expect_err("not protobuf")
            .reason()
            .contains("not a WriteRequest"));
        // A snappy header claiming 4 GiB: refused before anything is allocated.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let refused = records_of(&bomb).expect_err("bomb");
        assert_eq!(refused.status(), 413);
        assert!(refused.reason().contains("decompresses to"), "{refused:?}");
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
            .reason()
            .contains("series m"));
    }

    /// A protobuf length-delimited field: its key, its length, its bytes.
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    fn compressed(raw: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
    }

    /// What a push may carry is bounded before it is decoded: a small body that decompresses to
    /// millions of empty labels (two bytes each on the wire, a struct each once decoded) or
    /// more samples than [`MAX_SAMPLES`] is refused 413 with the count, and a series whose
    /// labels every one of its samples would copy is refused by the records' size.
    #[test]
    fn ck4_a_push_beyond_the_receivers_limits_is_refused_413_before_it_is_decoded() {
        let series = |labels: &[Vec<u8>], samples: usize| {
            let mut inner: Vec<u8> = labels.concat();
            let sample = field(2, &[]);
            for _ in 0..samples {
                inner.extend_from_slice(&sample);
            }
            field(1, &inner)
        };
        // 5 million empty labels: 10 MB decompressed, a few hundred KB sent.
        let empty_label = field(1, &[]);
        let bomb = compressed(&series(&vec![empty_label; 5_000_000], 1));
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        assert_eq!(
            shape(&snap::raw::Decoder::new().decompress_vec(&bomb).unwrap()),
            Ok((1, 5_000_000, 1))
        );
        let refused = records_of(&bomb).expect_err("a label bomb");
        assert_eq!(refused.status(), 413, "{refused:?}");
        assert!(refused.reason().contains("5000000 labels"), "{refused:?}");

        let name = field(1, &[field(1, b"__name__"), field(2, b"m")].concat());
        let many = compressed(&series(std::slice::from_ref(&name), MAX_SAMPLES + 1));
        let refused = records_of(&many).expect_err("too many samples");
        assert_eq!(refused.status(), 413, "{refused:?}");
        assert!(refused.reason().contains("100001 samples"), "{refused:?}");

        let wide: Vec<Vec<u8>> = std::iter::once(name.clone())
            .chain((0..32).map(|i| {
                field(
                    1,
                    &[
                        field(1, format!("l{i}").as_bytes()),
                        field(2, &[b'v'; 1000]),
                    ]
                    .concat(),
                )
            }))
            .collect();
        let refused = records_of(&compressed(&series(&wide, 3_000))).expect_err("wide");
        assert_eq!(refused.status(), 413, "{refused:?}");
        assert!(refused.reason().contains("bytes of records"), "{refused:?}");
        // Within every limit: taken.
        let (records, _) = records_of(&compressed(&series(&wide, 100))).expect("within limits");
        assert_eq!(records.len(), 100);
        let (records, _) = records_of(&compressed(&series(
            std::slice::from_ref(&name),
            MAX_SAMPLES,
        )))
        .expect("the most samples a push may carry");
        assert_eq!(records.len(), MAX_SAMPLES);
    }
}
