//! HTTP URLs as users write them: `upstream.url`, `traceforge proxy --upstream` (and
//! `UPSTREAM_BASE_URL`) and `traceforge load --url` all go through [`parse_http_url`], so one
//! address is accepted or refused the same way everywhere. Credentials in a URL are refused and
//! never echoed back: messages show them as `***`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use hyper::Uri;

/// Why a URL cannot be used, ready for a located diagnostic or a one-line flag error. The
/// message never holds the URL's user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub message: String,
    /// A few words for under the caret.
    pub label: &'static str,
    /// What would be valid.
    pub help: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

/// Parses a plain-HTTP URL with a host and, when given, a port from 1 to 65535. A path and query
/// are kept. `https`, user info (`user:password@`) and invalid ports are refused.
pub fn parse_http_url(text: &str) -> Result<Uri, UrlError> {
    parse(text, Schemes::Http)
}

/// [`parse_http_url`] for an upstream the proxy forwards to: it may also be `https://`.
pub fn parse_upstream_url(text: &str) -> Result<Uri, UrlError> {
    parse(text, Schemes::Upstream)
}

/// [`parse_upstream_url`] for `traceforge load --url`, which may also be `ws://` or `wss://`
/// (a WebSocket target).
pub fn parse_load_url(text: &str) -> Result<Uri, UrlError> {
    parse(text, Schemes::Load)
}

/// The schemes a URL may have.
#[derive(Clone, Copy, PartialEq)]
enum Schemes {
    Http,
    Upstream,
    Load,
}

fn parse(text: &str, schemes: Schemes) -> Result<Uri, UrlError> {
    let https = schemes != Schemes::Http;
    let shown = redact(text);
    if userinfo(text).is_some() {
        return Err(UrlError {
            message: format!("`{shown}` carries a user name or password"),
            label: "credentials in the URL",
            help: "remove the part before `@`: TraceForge does not send credentials from a URL, \
                   and they would end up in the Host header and in logs"
                .into(),
        });
    }
    let not_a_url = || UrlError {
        message: match schemes {
            Schemes::Http => format!("`{shown}` is not an http:// URL with a host"),
            Schemes::Upstream => format!("`{shown}` is not an http:// or https:// URL with a host"),
            Schemes::Load => {
                format!("`{shown}` is not an http://, https://, ws:// or wss:// URL with a host")
            }
        },
        label: "not a URL",
        help: "write it like \"http://127.0.0.1:8081\"".into(),
    };
    let uri: Uri = text.parse().map_err(|_| not_a_url())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if https => {}
        Some("ws" | "wss") if schemes == Schemes::Load => {}
        Some("https") => {
            return Err(UrlError {
                message: format!("`{shown}`: https is not supported"),
                label: "https",
                help: "use a plain-HTTP address of the service (http://host:port)".into(),
            });
        }
        _ => return Err(not_a_url()),
    }
    let Some(authority) = uri.authority() else {
        return Err(not_a_url());
    };
    if authority.host().is_empty() {
        return Err(not_a_url());
    }
    // `http::Uri` accepts any text after the host's colon (`:99999`, `:`, `:+80`) and then reports
    // no port, so a client would quietly connect to port 80: check the text itself.
    if let Some(port) = port_text(authority.as_str()) {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Err(UrlError {
                message: format!("`{shown}` has an invalid port `{port}`"),
                label: "invalid port",
                help: "ports run from 1 to 65535".into(),
            });
        }
    }
    Ok(uri)
}

/// The text after the host's `:`, if there is one (`[::1]:80` -> `80`; `[::1]` -> none).
fn port_text(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => &rest[rest.find(']').map_or(rest.len(), |i| i + 1)..],
        None => authority,
    };
    after_host.rfind(':').map(|i| &after_host[i + 1..])
}

/// `text` with the user info of its URL replaced by `***`: `http://***@host/`.
pub fn redact(text: &str) -> Cow<'_, str> {
    match userinfo(text) {
        Some(range) => format!("{}***{}", &text[..range.start], &text[range.end..]).into(),
        None => text.into(),
    }
}

/// The byte range of the user info in a URL (before the authority's last `@`).
fn userinfo(text: &str) -> Option<Range<usize>> {
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some(start..start + at)
}

/// `text` (a scenario file, an override) with the user info of every `scheme://user@host` in it
/// replaced by as many `*` bytes, so error snippets can show its lines without the credentials
/// and every byte offset into it still holds.
pub fn mask_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return text.into();
    }
    let mut out = text.as_bytes().to_vec();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out[start..start + at].fill(b'*');
        }
        from = start;
    }
    // Only ASCII replaced whole characters (a multi-byte one becomes several `*`): still UTF-8.
    String::from_utf8(out).map_or_else(|_| text.into(), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> UrlError {
        match parse_http_url(text) {
            Ok(uri) => panic!("{text} was accepted as {uri}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_http_urls_pass_with_their_path() {
        for text in [
            "http://127.0.0.1:8081",
            "http://localhost:1/api?x=1",
            "http://[::1]:65535/",
            "http://[::1]",
            "http://example.com",
        ] {
            let uri = parse_http_url(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(uri.scheme_str(), Some("http"));
        }
    }

    #[test]
    fn upstreams_may_be_https() {
        for text in [
            "https://127.0.0.1:8443",
            "https://example.com/base",
            "http://h:1",
        ] {
            assert!(parse_upstream_url(text).is_ok(), "{text}");
        }
        assert_eq!(
            parse_upstream_url("ftp://x").err().map(|e| e.message),
            Some("`ftp://x` is not an http:// or https:// URL with a host".to_string())
        );
        assert!(parse_upstream_url("https://u:p@h").is_err());
        assert!(parse_upstream_url("https://h:0").is_err());
        assert!(parse_upstream_url("ws://h:1").is_err());
    }

    #[test]
    fn the_load_generator_also_takes_websocket_urls() {
        for text in [
            "ws://127.0.0.1:1/ws/echo",
            "wss://h/x",
            "https://h",
            "http://h",
        ] {
            assert!(parse_load_url(text).is_ok(), "{text}");
        }
        assert_eq!(
            parse_load_url("ftp://x").err().map(|e| e.message),
            Some("`ftp://x` is not an http://, https://, ws:// or wss:// URL with a host".into())
        );
        assert!(parse_load_url("ws://u:p@h").is_err());
        assert!(parse_load_url("wss://h:99999").is_err());
    }

    #[test]
    fn credentials_are_refused_and_never_shown() {
        let e = refused("http://admin:hunter2@db.internal:8080/x");
        assert_eq!(
            e.message,
            "`http://***@db.internal:8080/x` carries a user name or password"
        );
        assert!(!e.to_string().contains("hunter2"));
        assert!(!refused("http://token@host").to_string().contains("token"));
        // Even when the rest is not a URL at all.
        assert!(!refused("http://u:pw d@h").to_string().contains("pw d"));
    }

    #[test]
    fn invalid_ports_are_refused() {
        for (text, port) in [
            ("http://host:99999", "99999"),
            ("http://host:65536/x", "65536"),
            ("http://host:0", "0"),
            ("http://host:", ""),
            ("http://host:+80", "+80"),
            ("http://[::1]:8080x", "8080x"),
        ] {
            let e = refused(text);
            assert_eq!(
                e.message,
                format!("`{text}` has an invalid port `{port}`"),
                "{text}"
            );
            assert_eq!(e.help, "ports run from 1 to 65535");
        }
    }

    #[test]
    fn other_schemes_and_missing_hosts_are_refused() {
        assert_eq!(refused("https://x").label, "https");
        for text in [
            "ftp://x",
            "localhost:8081",
            "/path",
            "http://",
            "http://:80",
            "",
        ] {
            assert_eq!(refused(text).label, "not a URL", "{text}");
        }
    }

    #[test]
    fn masking_keeps_every_offset() {
        let text = "url = \"http://me:secret@h:1/\"\nother = \"http://h/a@b\"\n";
        let masked = mask_credentials(text);
        assert_eq!(masked.len(), text.len());
        assert_eq!(
            masked,
            "url = \"http://*********@h:1/\"\nother = \"http://h/a@b\"\n"
        );
        assert_eq!(mask_credentials("x = 1"), "x = 1");
        assert_eq!(mask_credentials("http://ü@h").len(), "http://ü@h".len());
    }
}
