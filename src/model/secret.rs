//! Secret-bearing values that cannot be printed or persisted by accident.
//!
//! Contract:
//! - [`SasUrl`] and [`BearerToken`] implement `Debug` and `Display` with the
//!   secret part masked, and implement neither `Serialize` nor `Deserialize`, so
//!   putting one into the journal, a report or a `tracing` field as a value is a
//!   compile error or prints a mask.
//! - The only way to the raw text is the explicitly named `expose_secret()`, used
//!   at the HTTP boundary and nowhere else.
//! - [`redact`] scrubs free text (error bodies, reqwest messages) of SAS
//!   signatures and bearer tokens before it reaches a log line or an error.

use std::fmt;

/// A shared access signature URL for a managed disk or snapshot blob.
#[derive(Clone, PartialEq, Eq)]
pub struct SasUrl(url::Url);

impl SasUrl {
    /// Wraps a URL received from `beginGetAccess`. Fails if it is not a URL.
    pub fn parse(s: &str) -> Result<Self, url::ParseError> {
        url::Url::parse(s).map(SasUrl)
    }

    /// The full URL including its signature. Call only where it goes on the wire.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with the query string removed: safe to log, names the blob.
    pub fn without_query(&self) -> String {
        let mut u = self.0.clone();
        u.set_query(None);
        u.to_string()
    }

    /// The parsed URL, for building request URLs with extra query parameters.
    /// The result still carries the signature: treat it like `expose_secret`.
    pub fn expose_url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Debug for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasUrl({}?<redacted>)", self.without_query())
    }
}

impl fmt::Display for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?<redacted>", self.without_query())
    }
}

/// An OAuth bearer token for Azure Resource Manager.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into())
    }

    /// The raw token. Call only where it goes into an `Authorization` header.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted token>")
    }
}

/// Removes SAS signatures (`sig=...`), other SAS credentials (`skoid`, `sktid`)
/// and bearer tokens from free text. Idempotent; leaves everything else intact.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // Find the earliest secret marker.
        let lower = rest.to_ascii_lowercase();
        let sig = ["sig=", "skoid=", "sktid=", "skt=", "ske=", "sks=", "skv="]
            .iter()
            .filter_map(|m| find_param(&lower, m).map(|i| (i, m.len())))
            .min();
        let bearer = lower.find("bearer ").map(|i| (i, "bearer ".len()));
        let next = match (sig, bearer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some((at, mlen)) = next else {
            out.push_str(rest);
            break;
        };
        let value_start = at + mlen;
        out.push_str(&rest[..value_start]);
        let value_len = rest[value_start..]
            .find(|c: char| {
                matches!(
                    c,
                    '&' | '"' | '\'' | ' ' | '\n' | '\r' | '\t' | '<' | '>' | ')' | ',' | ';' | '}'
                )
            })
            .unwrap_or(rest.len() - value_start);
        if value_len > 0 {
            out.push_str("REDACTED");
        }
        rest = &rest[value_start + value_len..];
    }
    out
}

/// Finds `marker` as a query parameter name: at the start or after `?`/`&`.
fn find_param(lower: &str, marker: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = lower[from..].find(marker) {
        let at = from + i;
        if at == 0 || matches!(lower.as_bytes()[at - 1], b'?' | b'&' | b';' | b' ' | b'"') {
            return Some(at);
        }
        from = at + marker.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAS: &str = "https://md-impexp-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sr=b&si=1b&sig=AbCdEf%2B123%3D";

    #[test]
    fn sas_url_never_prints_its_signature() {
        let s = SasUrl::parse(SAS).unwrap();
        assert!(!format!("{s}").contains("sig="));
        assert!(!format!("{s:?}").contains("AbCdEf"));
        assert!(format!("{s}").contains("md-impexp-x.blob.core.windows.net/c/abcd"));
        assert_eq!(s.expose_secret(), SAS);
    }

    #[test]
    fn bearer_token_never_prints() {
        let t = BearerToken::new("eyJhbGciOi.secret.part");
        assert!(!format!("{t} {t:?}").contains("eyJ"));
    }

    #[test]
    fn redact_scrubs_signatures_and_tokens() {
        let text = format!(
            "error sending request for url ({SAS}): Authorization: Bearer eyJabc.def.ghi failed"
        );
        let r = redact(&text);
        assert!(!r.contains("AbCdEf"), "{r}");
        assert!(!r.contains("eyJabc"), "{r}");
        assert!(r.contains("sig=REDACTED"));
        assert!(r.contains("sv=2018-03-28"));
        assert_eq!(redact(&r), r, "idempotent");
        assert_eq!(redact("design=1&signal=2"), "design=1&signal=2");
    }
}
