//! Maps `/static/<path>` to a file inside the static directory, never outside it: `..` and `.`
//! segments (plain or percent-encoded), empty segments, backslashes and NUL are refused before the
//! file system is touched, and the canonical path (symlinks resolved) must still lie under the root.

use std::path::{Path, PathBuf};

/// The file `rest` names under `root` (which must be canonical), if it is a regular file inside it.
pub(crate) async fn resolve(root: &Path, rest: &str) -> Option<PathBuf> {
    let decoded = percent_decode(rest)?;
    let mut candidate = root.to_path_buf();
    for segment in decoded.split('/') {
        // An empty segment would make `//etc/passwd` absolute once joined; `.`/`..` walk around.
        let bad = segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains(['\\', '\0', ':']);
        if bad {
            return None;
        }
        candidate.push(segment);
    }
    // Canonicalising resolves symlinks, so a link pointing outside fails the prefix check.
    let canonical = tokio::fs::canonicalize(&candidate).await.ok()?;
    if !canonical.starts_with(root) {
        return None;
    }
    let metadata = tokio::fs::metadata(&canonical).await.ok()?;
    metadata.is_file().then_some(canonical)
}

/// Decodes `%XX` escapes; `None` for a malformed escape (`%2`, `%zz`) or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    // The crate keeps a malformed escape as written; a path holding one is refused instead.
    let malformed = text.match_indices('%').any(|(i, _)| {
        text.get(i + 1..i + 3)
            .is_none_or(|h| !h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A content type from the file extension; unknown files are opaque bytes.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_and_rejects_garbage() {
        assert_eq!(percent_decode("%2e%2E/x").as_deref(), Some("../x"));
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
