//! Durations at the JSON edge: written like PRODUCT.md (`500ms`, `5s`, `2m`), read back from the
//! same text (units `ms`, `s`, `m`, `h`, `d`, combinable: `1m30s`; a bare `0` is zero).

use std::time::Duration;

/// `500ms`, `5s`, `2m`, `1h`, `30d`; zero is `0s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, per) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// The inverse of [`format`], with the reason when the text is not a duration.
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad = || format!("`{s}` is not a duration (write it like 500ms, 5s, 2m or 1h)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{s}` has no unit (write it like 500ms, 5s, 2m or 1h)"))?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let millis = number.checked_mul(millis_per).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(bad)?;
    }
    // A sum of parts may exceed what one part can say; refuse it so that every accepted
    // duration is written back as text that parses (found by the `duration` fuzz target).
    if total.as_millis() > u128::from(u64::MAX) {
        return Err(bad());
    }
    Ok(total)
}

/// serde adapter: `#[serde(with = "understudy_api::duration::text")]`.
pub mod text {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
            Raw::Number(0) => Ok(Duration::ZERO),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "`{n}` has no unit (write it like 500ms, 5s, 2m or 1h)"
            ))),
        }
    }
}

/// serde adapter for `Option<Duration>`: absent or null is `None`.
pub mod opt_text {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::text")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sum_too_large_to_write_back_is_refused() {
        // Found by the `duration` fuzz target: two parts that each fit summed to a value whose
        // one-part form overflowed when read back.
        assert!(super::parse("18446744031315184s18446744031315184s").is_err());
        let max = super::parse("18446744073709551615ms").expect("u64::MAX ms is a duration");
        assert_eq!(super::parse(&super::format(max)), Ok(max));
    }

    use super::*;

    #[test]
    fn durations_are_written_like_product_md_and_read_back() {
        for (d, text) in [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_secs(36 * 3600), "36h"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d));
        }
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("5 parsecs").is_err());
    }
}
