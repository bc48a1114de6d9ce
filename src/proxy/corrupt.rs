//! The `corrupt` fault: a forwarded response body with bytes replaced ([`CorruptBody`], streamed),
//! or a JSON body made invalid ([`apply`] buffers it first).
//!
//! Bytes mode. The body is cut into blocks of [`BLOCK`] bytes, counted from its first byte; block
//! `b` draws which of its bytes change, and to what, from its own stream
//! `seed::rng_parts(seed, ["corrupt", <rule>, <request key>, <b>])`. So byte `k` of a body
//! depends only on (seed, rule, request, `k`): the upstream's chunk sizes never change the
//! result. Each byte changes with probability `rate` (drawn as geometric gaps between changed
//! bytes, so a low rate costs few draws), XORed with a nonzero random byte, so a changed byte
//! always differs from the original. The length, and so `Content-Length`, are kept.
//!
//! JSON mode. A response whose `content-type` is JSON (`application/json` or `+json`), with no
//! `content-encoding` and a body of at most [`JSON_LIMIT`] bytes that parses as JSON, is buffered
//! and broken one of two ways, drawn from `["corrupt", <rule>, <request key>, "json"]`:
//! - `cut`: the body ends inside a string value (at a character boundary after its opening
//!   quote): syntactically invalid, as when a server dies mid-write behind a buffering proxy.
//! - `wrong_type`: one string value becomes a number, or one number becomes a string (`42` ->
//!   `"42"`): still JSON, but not what the schema promised.
//!
//! Which value is drawn too. `Content-Length` is set to the new length. Any other body (not
//! JSON, compressed, too large, not parseable, or without a string or number value) falls back
//! to bytes mode, from the same streams as a `bytes` rule would use.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use rand::Rng;

use super::metrics::Metrics;
use super::{BoxError, ProxyBody};
use crate::seed;
use crate::spec::CorruptMode;

/// The bytes of a body that share one random stream in bytes mode.
pub(crate) const BLOCK: u64 = 4096;

/// The largest body JSON mode buffers; a larger one is corrupted byte by byte instead.
pub(crate) const JSON_LIMIT: usize = 1024 * 1024;

/// Which of one block's bytes change: `(offset in the block, XOR mask)`, in offset order.
fn block_changes(seed: u64, rule: &str, key: &str, block: u64, rate: f64) -> Vec<(u16, u8)> {
    let mut rng = seed::rng_parts(seed, &["corrupt", rule, key, &block.to_string()]);
    let mut out = Vec::new();
    if rate >= 1.0 {
        for offset in 0..BLOCK as u16 {
            out.push((offset, rng.random_range(1..=255u8)));
        }
        return out;
    }
    // The number of unchanged bytes before the next changed one is geometric: P(gap >= k) is
    // (1 - rate)^k, which is what a coin per byte gives.
    let log_keep = (1.0 - rate).ln();
    let mut at = 0u64;
    loop {
        let u: f64 = rng.random();
        let gap = ((1.0 - u).ln() / log_keep).floor();
        // Also stops on NaN (a rate of 0 or less, which validation refuses).
        if gap.is_nan() || gap >= BLOCK as f64 {
            break;
        }
        at += gap as u64;
        if at >= BLOCK {
            break;
        }
        out.push((at as u16, rng.random_range(1..=255u8)));
        at += 1;
    }
    out
}

/// Bytes-mode corruption of one body, applied chunk by chunk in order.
#[derive(Debug)]
pub(crate) struct Corruptor {
    seed: u64,
    rule: Arc<str>,
    key: Arc<str>,
    rate: f64,
    /// Body bytes seen so far.
    offset: u64,
    /// The block last drawn, and its changes.
    block: Option<(u64, Vec<(u16, u8)>)>,
}

impl Corruptor {
    pub(crate) fn new(seed: u64, rule: Arc<str>, key: Arc<str>, rate: f64) -> Self {
        Corruptor {
            seed,
            rule,
            key,
            rate,
            offset: 0,
            block: None,
        }
    }

    /// The next `chunk` of the body, corrupted.
    pub(crate) fn apply(&mut self, chunk: Bytes) -> Bytes {
        let start = self.offset;
        let end = start + chunk.len() as u64;
        self.offset = end;
        let mut out: Option<BytesMut> = None;
        let mut block = start / BLOCK;
        while block * BLOCK < end {
            if self.block.as_ref().is_none_or(|(b, _)| *b != block) {
                let changes = block_changes(self.seed, &self.rule, &self.key, block, self.rate);
                self.block = Some((block, changes));
            }
            if let Some((_, changes)) = &self.block {
                for &(offset, mask) in changes {
                    let at = block * BLOCK + u64::from(offset);
                    if at < start || at >= end {
                        continue;
                    }
                    let buf = out.get_or_insert_with(|| BytesMut::from(&chunk[..]));
                    buf[(at - start) as usize] ^= mask;
                }
            }
            block += 1;
        }
        out.map_or(chunk, BytesMut::freeze)
    }
}

/// A streamed body in bytes mode: every data frame corrupted in order, trailers untouched.
pub(crate) struct CorruptBody {
    inner: ProxyBody,
    corruptor: Corruptor,
}

impl Body for CorruptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => Poll::Ready(Some(Ok(Frame::data(this.corruptor.apply(chunk))))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How JSON mode broke a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBreak {
    /// Cut off inside a string value.
    Cut,
    /// A string value became a number, or a number a string.
    WrongType,
}

/// A value token of a JSON text: its byte range (a string's includes its quotes).
#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    string: bool,
}

/// The string and number values of a valid JSON text, in order (object keys left out).
fn values(text: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(text.len());
                i = end;
                let mut next = i;
                while next < text.len() && text[next].is_ascii_whitespace() {
                    next += 1;
                }
                if text.get(next) != Some(&b':') {
                    out.push(Token {
                        start,
                        end,
                        string: true,
                    });
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                out.push(Token {
                    start,
                    end: i,
                    string: false,
                });
            }
            _ => i += 1,
        }
    }
    out
}

/// Breaks a JSON text, drawing from `rng`; `None` when it is not JSON or has no string or number
/// value to break.
pub fn break_json(text: &[u8], rng: &mut impl Rng) -> Option<(Vec<u8>, JsonBreak)> {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).ok()?;
    let tokens = values(text);
    let strings: Vec<Token> = tokens.iter().copied().filter(|t| t.string).collect();
    let mut ways = Vec::new();
    if !strings.is_empty() {
        ways.push(JsonBreak::Cut);
    }
    if !tokens.is_empty() {
        ways.push(JsonBreak::WrongType);
    }
    if ways.is_empty() {
        return None;
    }
    let way = ways[rng.random_range(0..ways.len())];
    match way {
        JsonBreak::Cut => {
            let token = strings[rng.random_range(0..strings.len())];
            // After the opening quote, up to (not past) the closing one.
            let mut cut = rng.random_range(token.start + 1..token.end);
            // At a character boundary: a cut-off string, not a cut-off character.
            while cut > token.start + 1 && (text[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            Some((text[..cut].to_vec(), way))
        }
        JsonBreak::WrongType => {
            let token = tokens[rng.random_range(0..tokens.len())];
            let replacement = if token.string {
                rng.random_range(0..100_000u32).to_string().into_bytes()
            } else {
                let mut quoted = b"\"".to_vec();
                quoted.extend_from_slice(&text[token.start..token.end]);
                quoted.push(b'"');
                quoted
            };
            let mut out = Vec::with_capacity(text.len() + 2);
            out.extend_from_slice(&text[..token.start]);
            out.extend_from_slice(&replacement);
            out.extend_from_slice(&text[token.end..]);
            Some((out, way))
        }
    }
}

/// Whether a response is one JSON mode can read: a JSON content type, not compressed.
fn is_plain_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    json && !encoded
}

/// A body read so far, and what is left of it.
struct Buffered {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    /// The body after the frames read; `None` once it ended (or failed).
    rest: Option<ProxyBody>,
}

/// Reads `body` whole, or until it passes `limit` bytes or fails.
async fn buffer(mut body: ProxyBody, limit: usize) -> Buffered {
    let mut frames = VecDeque::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            None => return Buffered { frames, rest: None },
            Some(Err(e)) => {
                frames.push_back(Err(e));
                return Buffered { frames, rest: None };
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    size = size.saturating_add(data.len());
                }
                frames.push_back(Ok(frame));
                if size > limit {
                    return Buffered {
                        frames,
                        rest: Some(body),
                    };
                }
            }
        }
    }
}

impl Buffered {
    /// The whole body, when it was read to its end without an error or trailers.
    fn whole(&self) -> Option<Vec<u8>> {
        if self.rest.is_some() {
            return None;
        }
        let mut out = Vec::new();
        for frame in &self.frames {
            out.extend_from_slice(frame.as_ref().ok()?.data_ref()?);
        }
        Some(out)
    }
}

/// The frames of a [`Buffered`] body again, then the rest of it.
struct Replay {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    rest: Option<ProxyBody>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

/// Applies one `corrupt` rule to a forwarded response: `rule`'s streams, keyed on the request's
/// `key` (its request id, or a named proxy's call key).
pub(crate) async fn apply(
    response: Response<ProxyBody>,
    seed: u64,
    rule: &Arc<str>,
    key: &Arc<str>,
    mode: CorruptMode,
    rate: f64,
    metrics: &Metrics,
) -> Response<ProxyBody> {
    let bytes = |body: ProxyBody| {
        CorruptBody {
            inner: body,
            corruptor: Corruptor::new(seed, rule.clone(), key.clone(), rate),
        }
        .boxed()
    };
    let declared_small = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|n| n <= JSON_LIMIT as u64);
    if mode == CorruptMode::Bytes || !is_plain_json(response.headers()) || !declared_small {
        metrics.body_corrupted(rule, "bytes");
        return response.map(bytes);
    }
    let (mut parts, body) = response.into_parts();
    let buffered = buffer(body, JSON_LIMIT).await;
    if let Some(text) = buffered.whole() {
        let mut rng = seed::rng_parts(seed, &["corrupt", rule, key, "json"]);
        if let Some((broken, way)) = break_json(&text, &mut rng) {
            tracing::debug!(rule = %rule, ?way, "JSON body broken");
            metrics.body_corrupted(rule, "json");
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(broken.len()));
            let body = Full::new(Bytes::from(broken))
                .map_err(|never| match never {})
                .boxed();
            return Response::from_parts(parts, body);
        }
    }
    metrics.body_corrupted(rule, "bytes");
    let replay = Replay {
        frames: buffered.frames,
        rest: buffered.rest,
    }
    .boxed();
    Response::from_parts(parts, bytes(replay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt_in_chunks(body: &[u8], chunk: usize, rate: f64) -> Vec<u8> {
        let mut c = Corruptor::new(7, Arc::from("rule"), Arc::from("req-1"), rate);
        body.chunks(chunk)
            .flat_map(|part| c.apply(Bytes::copy_from_slice(part)).to_vec())
            .collect()
    }

    #[test]
    fn bytes_mode_is_the_same_for_any_chunking_and_near_the_rate() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let whole = corrupt_in_chunks(&body, body.len(), 0.01);
        for chunk in [1, 7, 4096, 5000, 65536] {
            assert_eq!(
                corrupt_in_chunks(&body, chunk, 0.01),
                whole,
                "chunks of {chunk}"
            );
        }
        assert_eq!(whole.len(), body.len());
        let changed = whole.iter().zip(&body).filter(|(a, b)| a != b).count();
        assert!((800..=1200).contains(&changed), "{changed} of 100000 at 1%");
        let all = corrupt_in_chunks(&body, 333, 1.0);
        assert!(all.iter().zip(&body).all(|(a, b)| a != b));
    }

    #[test]
    fn json_breaks_both_ways_and_only_values() {
        let text = br#"{"name": "caf\u00e9 \"x\"", "count": 12, "tags": ["a\u00e9b"], "ok": true}"#;
        let mut seen = Vec::new();
        for i in 0..64 {
            let mut rng = seed::rng_parts(1, &["test", &i.to_string()]);
            let (broken, way) = break_json(text, &mut rng).unwrap_or_else(|| panic!("no break"));
            let parsed = serde_json::from_slice::<serde_json::Value>(&broken);
            match way {
                JsonBreak::Cut => {
                    assert!(parsed.is_err(), "{}", String::from_utf8_lossy(&broken));
                    assert!(text.starts_with(&broken));
                }
                JsonBreak::WrongType => {
                    let value = parsed.unwrap_or_else(|e| panic!("{e}"));
                    // Keys never change.
                    let keys: Vec<&String> = value
                        .as_object()
                        .map(|o| o.keys().collect())
                        .unwrap_or_default();
                    assert_eq!(keys, ["count", "name", "ok", "tags"]);
                }
            }
            seen.push(way);
        }
        assert!(seen.contains(&JsonBreak::Cut) && seen.contains(&JsonBreak::WrongType));
        let mut rng = seed::rng_parts(1, &["test"]);
        assert!(break_json(b"[true, null, {}]", &mut rng).is_none());
        assert!(break_json(b"not json", &mut rng).is_none());
    }
}
