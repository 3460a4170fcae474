//! Durations as written in config.toml, `--set` and the CLI (`500ms`, `1m30s`): parsed or
//! refused; what parses is written back in a form that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_node::config::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(text) {
        let written = format_duration(d);
        assert_eq!(
            parse_duration(&written),
            Ok(d),
            "{text:?} written as {written:?}"
        );
    }
});
