//! The wire framing of the agent–server and server–server links: a 4-byte big-endian length, then
//! that many bytes of JSON. A frame larger than [`MAX_FRAME`] is refused before anything is
//! allocated for it, so a bad or hostile peer cannot make the node hold more than that (§4).

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload either side sends or accepts.
pub const MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is larger than the {max}-byte limit")]
    Oversized { len: u64, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("connection ended in the middle of a frame")]
    Truncated,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` is a clean end of stream (the peer closed between frames).
pub async fn read_frame<T, R>(r: &mut R) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_max(r, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes (a first frame from an unauthenticated peer is held
/// to much less than [`MAX_FRAME`]); a longer one is refused before its payload is read.
pub async fn read_frame_max<T, R>(r: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match r.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(header);
    if len as usize > max.min(MAX_FRAME) {
        return Err(FrameError::Oversized {
            len: u64::from(len),
            max: max.min(MAX_FRAME),
        });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Reads frames from one stream, keeping a partly received frame between calls, so that
/// [`FrameReader::read`] may be cancelled (a `tokio::select!` branch that lost) without losing
/// bytes: a plain [`read_frame`] dropped halfway through a frame would leave the stream in the
/// middle of it, and the next read would take payload bytes for a length.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// Like [`read_frame`], and cancel-safe.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(header) = self.buf.get(..4) {
                let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                if len as usize > MAX_FRAME {
                    return Err(FrameError::Oversized {
                        len: u64::from(len),
                        max: MAX_FRAME,
                    });
                }
                let end = 4 + len as usize;
                if self.buf.len() >= end {
                    let parsed = serde_json::from_slice(&self.buf[4..end])
                        .map(Some)
                        .map_err(|e| FrameError::Malformed(e.to_string()));
                    self.buf.drain(..end);
                    return parsed;
                }
            }
            // `read` is cancel-safe: bytes are either in `buf` or still in the stream.
            let mut chunk = [0u8; 16 * 1024];
            match self.inner.read(&mut chunk).await? {
                0 if self.buf.is_empty() => return Ok(None),
                0 => return Err(FrameError::Truncated),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Writes one frame and flushes it.
pub async fn write_frame<T, W>(w: &mut W, message: &T) -> Result<(), FrameError>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin,
{
    // Header and payload in one buffer: one write, one TLS record, no small-packet delay.
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::Oversized {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hello {
        agent: String,
        seq: u64,
    }

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let (mut a, mut b) = socket_pair().await;
        let sent = [
            Hello {
                agent: "a1".into(),
                seq: 1,
            },
            Hello {
                agent: "ä2 ✓".into(),
                seq: u64::MAX,
            },
        ];
        for m in &sent {
            write_frame(&mut a, m).await.expect("write");
        }
        drop(a);
        for m in &sent {
            assert_eq!(
                read_frame::<Hello, _>(&mut b).await.expect("read").as_ref(),
                Some(m)
            );
        }
        assert_eq!(read_frame::<Hello, _>(&mut b).await.expect("eof"), None);
    }

    #[tokio::test]
    async fn oversized_length_is_refused_without_reading_it() {
        let (mut a, mut b) = socket_pair().await;
        // Claims 4 GiB and sends nothing more: a reader that allocated or waited would hang or die.
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        match read_frame::<Hello, _>(&mut b).await {
            Err(FrameError::Oversized { len, max }) => {
                assert_eq!((len, max), (u64::from(u32::MAX), MAX_FRAME));
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        let too_big = "x".repeat(MAX_FRAME + 1);
        let err = write_frame(&mut a, &too_big)
            .await
            .expect_err("too big to send");
        assert!(
            err.to_string()
                .contains("larger than the 1048576-byte limit"),
            "{err}"
        );
    }

    /// A frame read that loses a `select!` halfway through (the server side of an agent link
    /// answers a heartbeat while a large records frame arrives) resumes where it stopped.
    #[tokio::test]
    async fn frame_reader_survives_cancellation_mid_frame() {
        let (mut a, b) = socket_pair().await;
        let mut reader = FrameReader::new(b);
        let sent = Hello {
            agent: "a".repeat(1000),
            seq: 7,
        };
        let mut bytes = Vec::new();
        let payload = serde_json::to_vec(&sent).expect("json");
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let (head, tail) = bytes.split_at(600);
        a.write_all(head).await.expect("write");
        let cancelled = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            reader.read::<Hello>(),
        )
        .await;
        assert!(cancelled.is_err(), "half a frame is not a frame");
        a.write_all(tail).await.expect("write");
        write_frame(&mut a, &sent).await.expect("write");
        drop(a);
        assert_eq!(reader.read::<Hello>().await.expect("read"), Some(sent));
        assert!(reader.read::<Hello>().await.expect("second").is_some());
        assert_eq!(reader.read::<Hello>().await.expect("eof"), None);
    }

    #[tokio::test]
    async fn garbage_and_truncated_frames_are_refused() {
        let (mut a, mut b) = socket_pair().await;
        let garbage = b"{not json";
        a.write_all(&(garbage.len() as u32).to_be_bytes())
            .await
            .expect("write");
        a.write_all(garbage).await.expect("write");
        let err = read_frame::<Hello, _>(&mut b).await.expect_err("garbage");
        assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");

        // Valid JSON of the wrong shape is malformed too.
        write_frame(&mut a, &serde_json::json!({"agent": 5}))
            .await
            .expect("write");
        let err = read_frame::<Hello, _>(&mut b)
            .await
            .expect_err("wrong shape");
        assert!(err.to_string().starts_with("malformed frame:"), "{err}");

        a.write_all(&10u32.to_be_bytes()).await.expect("write");
        a.write_all(b"{\"a\"").await.expect("write");
        drop(a);
        let err = read_frame::<Hello, _>(&mut b).await.expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated), "{err:?}");
    }
}
