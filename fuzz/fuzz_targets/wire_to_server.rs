//! Every `ToServer` message, as decoded from one frame's JSON. A message that decodes is sent on
//! unchanged: encoding it and decoding it again gives the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_node::wire::ToServer;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<ToServer>(data) else {
        return;
    };
    let first = serde_json::to_vec(&message).expect("a decoded message encodes");
    let again: ToServer = serde_json::from_slice(&first).expect("an encoded message decodes");
    let second = serde_json::to_vec(&again).expect("encodes");
    assert_eq!(
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second),
        "the message changed on its way through"
    );
});
