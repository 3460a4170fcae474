//! Human output: aligned tables, JSON values as table cells, and times.

use serde_json::Value;

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render(header, rows, ""));
}

/// The table as text, every line starting with `indent`.
pub fn render(header: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(indent);
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                // Padded by hand: a format width over 65,535 (a 65,536-character name) panics.
                out.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as a table cell: strings bare, null and absent as `-`.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(other) => other.to_string(),
    }
}

/// `value[key]` as a cell.
pub fn field(value: &Value, key: &str) -> String {
    cell(value.get(key))
}

/// The elements of `value[key]` when it is an array.
pub fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A long fingerprint cut for a table (full ones are in `--json` and `cert show`).
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        let cut: String = s.chars().take(n).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_cell_does_not_panic_the_table() {
        let name = "x".repeat(65_536);
        let text = render(
            &["NAME", "STATE"],
            &[vec![name.clone(), "pending".into()]],
            "",
        );
        assert!(text.contains(&format!("{name}  pending")), "aligned");
        assert_eq!(
            render(&["A", "B"], &[vec!["ab".into(), "c".into()]], ""),
            "A   B\nab  c\n"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_time_ms(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_time_ms(1_700_000_000_000), "2023-11-14 22:13:20.000");
    }

    #[test]
    fn tables_align() {
        let text = render(
            &["NAME", "STATE"],
            &[
                vec!["a".into(), "ok".into()],
                vec!["long".into(), "-".into()],
            ],
            "",
        );
        assert_eq!(text, "NAME  STATE\na     ok\nlong  -\n");
    }
}
