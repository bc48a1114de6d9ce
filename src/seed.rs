//! Determinism primitives: every random choice in TraceForge derives from `(seed, key)` through these
//! functions, never from a shared sequence, so arrival order and concurrency cannot change a result.
//!
//! The derivation is part of the golden-file contract:
//! `Pcg64::seed_from_u64(mix64(seed ^ mix64(fnv1a(key))))`. Keys are documented where they are built
//! (`fault/<rule>/<request-id>`, `load/target/<index>`, `id/request/<index>/<attempt>`, ...).

use rand::RngCore;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use uuid::Uuid;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over the key's bytes: tiny, stable across Rust releases (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

fn fnv1a_extend(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The SplitMix64 finaliser: spreads nearby inputs (seeds 1, 2, 3...) over the whole 64-bit space.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The RNG for one stable key under one scenario seed.
pub fn rng(seed: u64, key: &str) -> Pcg64 {
    rng_from_hash(seed, fnv1a(key.as_bytes()))
}

/// The same RNG as [`rng`] for the key made of `parts` joined with `/`, without building the
/// string: FNV-1a runs over the bytes in order, so hashing the pieces one after another equals
/// hashing their concatenation. For the per-request hot paths.
pub fn rng_parts(seed: u64, parts: &[&str]) -> Pcg64 {
    let mut hash = FNV_OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash = fnv1a_extend(hash, b"/");
        }
        hash = fnv1a_extend(hash, part.as_bytes());
    }
    rng_from_hash(seed, hash)
}

/// A number's decimal digits on the stack, for keys hashed with [`rng_parts`] without a `format!`.
pub struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub fn new(mut n: u64) -> Digits {
        let mut buf = [b'0'; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return Digits { buf, start };
            }
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

fn rng_from_hash(seed: u64, hash: u64) -> Pcg64 {
    Pcg64::seed_from_u64(mix64(seed ^ mix64(hash)))
}

/// A version-4 UUID built from seeded bytes, so ids are reproducible run after run.
pub fn uuid(seed: u64, key: &str) -> Uuid {
    let mut bytes = [0u8; 16];
    rng(seed, key).fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// [`uuid`] for the key made of `parts` joined with `/`, without building the string.
pub fn uuid_parts(seed: u64, parts: &[&str]) -> Uuid {
    let mut bytes = [0u8; 16];
    rng_parts(seed, parts).fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The request id the load generator sends for request `index`, attempt `attempt` (0-based).
pub fn request_id(seed: u64, index: u64, attempt: u32) -> String {
    let (i, a) = (Digits::new(index), Digits::new(u64::from(attempt)));
    let mut buf = uuid::Uuid::encode_buffer();
    // The hyphenated form `to_string` writes, without the formatting machinery.
    uuid_parts(seed, &["id", "request", i.as_str(), a.as_str()])
        .hyphenated()
        .encode_lower(&mut buf)
        .to_string()
}

/// The trace id the load generator sends for request `index` with `client_trace` on; kept across attempts.
/// Trace ids are 32 lowercase hex digits, the W3C trace-context form.
pub fn trace_id(seed: u64, index: u64) -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid_parts(seed, &["id", "trace", Digits::new(index).as_str()])
        .simple()
        .encode_lower(&mut buf)
        .to_string()
}

/// The parent span id of the `traceparent` the load generator sends for request `index`, attempt
/// `attempt` (16 lowercase hex digits, never all zero).
pub fn span_id(seed: u64, index: u64, attempt: u32) -> String {
    let mut hex = String::with_capacity(16);
    push_hex(&mut hex, &attempt_span(seed, index, attempt));
    hex
}

/// Appends `bytes` as lowercase hex digits, two per byte, in order (`{:016x}` of their big-endian
/// number for eight bytes).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// [`span_id`] as the 8 bytes of a span id.
pub fn attempt_span(seed: u64, index: u64, attempt: u32) -> [u8; 8] {
    let (i, a) = (Digits::new(index), Digits::new(u64::from(attempt)));
    span_bytes(seed, &["id", "span", i.as_str(), a.as_str()])
}

/// A span id for the key made of `parts`: the first 8 bytes of [`uuid_parts`], never all zero
/// (W3C forbids it; an all-zero draw becomes 1).
pub fn span_bytes(seed: u64, parts: &[&str]) -> [u8; 8] {
    let bytes = uuid_parts(seed, parts).into_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn same_key_same_stream_different_key_different_stream() {
        let a: u64 = rng(42, "fault/a/1").random();
        let b: u64 = rng(42, "fault/a/1").random();
        let c: u64 = rng(42, "fault/a/2").random();
        let d: u64 = rng(43, "fault/a/1").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn digits_spell_numbers_like_format_does() {
        for n in [0, 7, 10, 99, 12_345, u64::MAX] {
            assert_eq!(Digits::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn ids_keep_the_keys_they_always_had() {
        assert_eq!(request_id(42, 7, 1), uuid(42, "id/request/7/1").to_string());
        assert_eq!(trace_id(42, 7), uuid(42, "id/trace/7").simple().to_string());
        for (index, attempt) in [(0, 0), (7, 1), (123_456, 3)] {
            assert_eq!(
                span_id(42, index, attempt),
                format!(
                    "{:016x}",
                    u64::from_be_bytes(attempt_span(42, index, attempt))
                )
            );
        }
    }

    #[test]
    fn hashing_key_parts_equals_hashing_the_joined_key() {
        let a: u64 = rng(42, "fault/api-503/5f0c5a57-9d69").random();
        let b: u64 = rng_parts(42, &["fault", "api-503", "5f0c5a57-9d69"]).random();
        assert_eq!(a, b);
    }

    #[test]
    fn ids_are_stable_and_well_formed() {
        let id = request_id(42, 7, 0);
        assert_eq!(id, request_id(42, 7, 0));
        assert_ne!(id, request_id(42, 7, 1));
        assert_eq!(
            Uuid::parse_str(&id).map(|u| u.get_version_num()).ok(),
            Some(4)
        );
        let trace = trace_id(42, 7);
        assert_eq!(trace.len(), 32);
        assert!(
            trace
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
