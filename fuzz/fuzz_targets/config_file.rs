//! config.toml: any text is a configuration or an error with the line; an accepted
//! configuration is saved and loaded back unchanged. An error at the end of the text may name
//! the line after a final newline (TOML reports an unclosed array there).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use understudy_node::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/config.toml");
    match Config::from_text(text, path) {
        Ok(config) => {
            let saved = toml::to_string_pretty(&config).expect("an accepted configuration saves");
            let loaded = Config::from_text(&saved, path).expect("a saved configuration loads");
            assert_eq!(loaded, config, "saved as:\n{saved}");
        }
        Err(ConfigError::Parse { line, .. }) | Err(ConfigError::InvalidAt { line, .. }) => {
            assert!(
                line >= 1 && line <= text.matches('\n').count() + 1,
                "line {line}"
            );
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
