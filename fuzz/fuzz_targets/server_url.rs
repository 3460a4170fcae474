//! `https://HOST:PORT[#FINGERPRINT]` as given to `init --server`, `agent.servers` and
//! `failover.peer`: parsed or refused; a parsed URL is written back in a form that parses to the
//! same server, and its address is one a socket can be asked to connect to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_node::config::{normalize_fingerprint, ServerUrl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fp) = normalize_fingerprint(text) {
        assert_eq!(normalize_fingerprint(&fp), Ok(fp.clone()));
    }
    let Ok(url) = ServerUrl::parse(text) else {
        return;
    };
    let written = url.to_string();
    assert_eq!(
        ServerUrl::parse(&written).as_ref(),
        Ok(&url),
        "{text:?} written as {written:?}"
    );
    assert!(url.port != 0);
    assert!(!url.host.is_empty());
});
