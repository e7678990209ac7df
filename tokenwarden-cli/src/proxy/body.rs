//! Request bodies: buffered (and so replayable) up to [`REPLAY_LIMIT`], streamed
//! beyond.

use axum::body::{Body, HttpBody as _};
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt as _};

/// The largest request body kept to be replayed after a rejected token: 1 MiB.
pub(super) const REPLAY_LIMIT: usize = 1 << 20;

/// A request body, ready to go upstream.
pub(super) enum Outgoing {
    /// Read whole: can be sent again.
    Buffered(Bytes),
    /// Larger than [`REPLAY_LIMIT`] (or of unknown length and longer): sent once,
    /// as it arrives.
    Streaming(reqwest::Body),
}

impl Outgoing {
    /// Reads `body` whole if it is at most [`REPLAY_LIMIT`] bytes long; else reads
    /// no more than the limit and streams the rest after what was read.
    pub(super) async fn read(body: Body) -> Result<Self, axum::Error> {
        Self::read_up_to(body, REPLAY_LIMIT).await
    }

    async fn read_up_to(body: Body, limit: usize) -> Result<Self, axum::Error> {
        // The declared length (`Content-Length`), when the client gave one.
        let declared = body.size_hint().upper();
        if declared == Some(0) {
            return Ok(Outgoing::Buffered(Bytes::new()));
        }
        let mut rest = body.into_data_stream();
        if declared.is_some_and(|length| length > limit as u64) {
            return Ok(Outgoing::Streaming(reqwest::Body::wrap_stream(rest)));
        }
        let mut read = Vec::new();
        let mut length = 0;
        while let Some(chunk) = rest.next().await {
            let chunk = chunk?;
            length += chunk.len();
            read.push(chunk);
            if length > limit {
                let read = stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
                return Ok(Outgoing::Streaming(reqwest::Body::wrap_stream(
                    read.chain(rest),
                )));
            }
        }
        Ok(Outgoing::Buffered(match read.len() {
            0 => Bytes::new(),
            1 => read.pop().unwrap_or_default(),
            _ => read
                .iter()
                .fold(BytesMut::with_capacity(length), |mut all, chunk| {
                    all.extend_from_slice(chunk);
                    all
                })
                .freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Body::from_stream(stream::iter(chunks))
    }

    async fn all(outgoing: Outgoing) -> (bool, Bytes) {
        match outgoing {
            Outgoing::Buffered(bytes) => (true, bytes),
            Outgoing::Streaming(body) => (false, body.collect().await.unwrap().to_bytes()),
        }
    }

    #[tokio::test]
    async fn buffers_up_to_the_limit_and_streams_beyond() {
        let read = |body, limit| async move {
            all(Outgoing::read_up_to(body, limit).await.unwrap()).await
        };
        assert_eq!(read(Body::empty(), 4).await, (true, Bytes::new()));
        assert_eq!(
            read(Body::from("abcd"), 4).await,
            (true, Bytes::from("abcd"))
        );
        assert_eq!(
            read(Body::from("abcde"), 4).await,
            (false, Bytes::from("abcde"))
        );
        let (buffered, bytes) = read(chunked(&[b"ab", b"cd"]), 4).await;
        assert_eq!((buffered, bytes), (true, Bytes::from("abcd")));
        let (buffered, bytes) = read(chunked(&[b"ab", b"cd", b"e", b"fg"]), 4).await;
        assert_eq!((buffered, bytes), (false, Bytes::from("abcdefg")));
    }
}
