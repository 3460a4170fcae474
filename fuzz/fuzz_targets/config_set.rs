//! `--set SECTION.KEY=VALUE`: applied and still valid, or refused with nothing changed; an
//! applied setting survives saving and loading.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use understudy_node::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(assignment) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/config.toml");
    let mut config = Config::new("fuzz", Path::new("/fuzz"));
    config.node.id = "0b0e2c2e-6d5d-4d57-9f0c-6a4c1f8f3f10".into();
    let before = config.clone();
    match config.apply_set(assignment) {
        Ok(()) => {
            assert_eq!(config.validate(), Ok(()));
            let saved = toml::to_string_pretty(&config).expect("an accepted configuration saves");
            let loaded = Config::from_text(&saved, path).expect("a saved configuration loads");
            assert_eq!(loaded, config, "saved as:\n{saved}");
        }
        Err(_) => assert_eq!(config, before, "a refused --set changes nothing"),
    }
});
