//! Frames as a server reads them from an agent or a peer (and an agent from its server): a stream
//! of length-prefixed JSON documents. Every outcome is a frame, a clean end or an error; a length
//! over the limit is refused before anything is allocated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_node::frame::{read_frame, FrameError, MAX_FRAME};
use understudy_node::wire::{ToAgent, ToServer};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

async fn read_all<T: serde::de::DeserializeOwned>(mut input: &[u8]) {
    loop {
        let header = input
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        match read_frame::<T, _>(&mut input).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(FrameError::Oversized { len, max }) => {
                assert_eq!(Some(len as u32), header);
                assert!(len as usize > max && max == MAX_FRAME);
                return;
            }
            Err(FrameError::Malformed(_)) => {}
            Err(e) => {
                assert!(matches!(e, FrameError::Truncated), "{e:?}");
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        read_all::<ToServer>(data).await;
        read_all::<ToAgent>(data).await;
    });
});
