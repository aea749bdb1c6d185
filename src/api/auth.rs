//! Checking AK/SK signatures (`SDK-HMAC-SHA256`) on the way in.
//!
//! The server rebuilds the canonical request from what it received with
//! the one signing implementation it shares with its clients
//! (`crate::signing`: canonical forms, string to sign, HMAC), signs that
//! with the credential's SK and compares in constant time. Every failure is a 401
//! whose body says nothing about which project or resource exists.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

use super::error::{ApiError, Dcs};
use crate::catalog::{Catalog, Credential};
use crate::model::ProjectId;
use crate::signing::DATE_FORMAT;
pub use crate::signing::{
    canonical_query, canonical_uri, sign, string_to_sign, RequestSigner, ALGORITHM,
};

/// How far `X-Sdk-Date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct AuthHeader<'a> {
    access: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<AuthHeader<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let mut access = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Access" => access = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let signed_headers: Vec<&str> = signed?.split(';').filter(|h| !h.is_empty()).collect();
    Some(AuthHeader {
        access: access?,
        signed_headers,
        signature: signature?,
    })
}

fn unauthorized() -> ApiError {
    ApiError::new(Dcs::TokenInvalid)
}

/// Caches credentials so a signed request costs no database round trip,
/// and remembers unknown access keys for a moment, so an unknown AK costs
/// what a known one does: an AK found in neither costs exactly one query,
/// whether it exists or not, and every answer computes one HMAC. A
/// credential created elsewhere is seen within [`NEGATIVE_TTL`].
#[derive(Debug, Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<String, (Option<Credential>, Instant)>>,
    lookups: AtomicU64,
}

const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long an unknown AK is answered from memory.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(3);
const CACHE_MAX: usize = 10_000;

impl CredentialCache {
    async fn get(&self, catalog: &Catalog, ak: &str) -> Result<Option<Credential>, ApiError> {
        if let Ok(map) = self.entries.lock() {
            if let Some((c, at)) = map.get(ak) {
                let ttl = if c.is_some() { CACHE_TTL } else { NEGATIVE_TTL };
                if at.elapsed() < ttl {
                    return Ok(c.clone());
                }
            }
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = catalog.credential(ak).await?;
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(ak.to_owned(), (found.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// How many times an AK was looked up in the catalog (for tests).
    pub fn catalog_lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

/// What a signed request's headers present, checked before its body is
/// read: an `Authorization` header of our algorithm, a signed
/// `X-Sdk-Date` within [`MAX_SKEW`] of the server's clock.
#[derive(Debug)]
pub struct Presented {
    access: String,
    signature: String,
    date: String,
    signed_at: time::OffsetDateTime,
    signed: Vec<(String, String)>,
}

impl Presented {
    pub fn access(&self) -> &str {
        &self.access
    }

    /// When the signed date leaves the skew window: no server takes the
    /// signature after this.
    pub fn expires_at(&self) -> time::OffsetDateTime {
        self.signed_at + MAX_SKEW
    }
}

/// Checks the headers of a signed request: presence and shape of the
/// signature, the date signed and within the skew. Needs no body and no
/// catalog, so an unsigned request is refused before its body is read.
pub fn precheck(headers: &HeaderMap, now: time::OffsetDateTime) -> Result<Presented, ApiError> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(Dcs::TokenMissing))?;
    let auth = parse_authorization(auth).ok_or_else(unauthorized)?;
    let date = headers
        .get("x-sdk-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let signed_at = time::PrimitiveDateTime::parse(date, DATE_FORMAT)
        .map_err(|_| unauthorized())?
        .assume_utc();
    if (now - signed_at).unsigned_abs() > MAX_SKEW {
        return Err(ApiError::new(Dcs::TokenExpired));
    }
    // The date must be signed, or the window above means nothing.
    if !auth.signed_headers.contains(&"x-sdk-date") {
        return Err(unauthorized());
    }
    if headers
        .get("x-sdk-content-sha256")
        .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD")
    {
        return Err(unauthorized());
    }
    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(unauthorized());
        }
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        signed.push(((*name).to_owned(), value.trim().to_owned()));
    }
    Ok(Presented {
        access: auth.access.to_owned(),
        signature: auth.signature.to_owned(),
        date: date.to_owned(),
        signed_at,
        signed,
    })
}

/// Checks the signature over the whole request; returns the project its
/// credential owns.
pub async fn check_signature(
    catalog: &Catalog,
    cache: &CredentialCache,
    presented: &Presented,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<ProjectId, ApiError> {
    let cred = cache.get(catalog, &presented.access).await?;
    // Verify against a throwaway key when the AK is unknown, so the answer
    // takes the same time and says the same thing either way.
    let (sk, project) = match &cred {
        Some(c) => (c.sk.expose(), Some(c.project_id.clone())),
        None => ("\0unknown", None),
    };
    let expected = sign(
        sk,
        &string_to_sign(
            method,
            path,
            query,
            &presented.signed,
            body,
            &presented.date,
        ),
    );
    let ok: bool = expected
        .as_bytes()
        .ct_eq(presented.signature.as_bytes())
        .into();
    match (ok, project) {
        (true, Some(p)) => Ok(p),
        _ => Err(unauthorized()),
    }
}

/// Verifies a request's signature; returns the project its credential owns.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    catalog: &Catalog,
    cache: &CredentialCache,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: time::OffsetDateTime,
) -> Result<ProjectId, ApiError> {
    let presented = precheck(headers, now)?;
    check_signature(catalog, cache, &presented, method, path, query, body).await
}

/// Whether a request changes something, so that its signature may be used
/// once only. Reads change nothing and may be repeated within the window.
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a second use of a mutating request's signature, on every
/// replica sharing the catalog; purges expired signatures now and then.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    last_purge: AtomicI64,
}

/// How often a node purges expired signatures (one indexed range delete).
const PURGE_EVERY_MS: i64 = 60_000;

impl ReplayGuard {
    /// Records the signature of a verified request; `false` if it had
    /// been used already.
    pub async fn first_use(
        &self,
        catalog: &Catalog,
        presented: &Presented,
        now: time::OffsetDateTime,
    ) -> Result<bool, ApiError> {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let last = self.last_purge.load(Ordering::Relaxed);
        if now_ms - last >= PURGE_EVERY_MS
            && self
                .last_purge
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                match catalog.purge_used_signatures(now_ms).await {
                    Ok(n) => tracing::debug!(purged = n, "expired request signatures purged"),
                    Err(e) => tracing::warn!(error = %e, "cannot purge used signatures"),
                }
            });
        }
        let expires = (presented.expires_at().unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(catalog
            .remember_signature(&presented.access, &presented.signature, expires)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authorization() {
        let h = parse_authorization(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=ab12",
        )
        .unwrap();
        assert_eq!(
            h,
            AuthHeader {
                access: "AK1",
                signed_headers: vec!["host", "x-sdk-date"],
                signature: "ab12"
            }
        );
        assert!(parse_authorization("Basic abc").is_none());
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=A, Bogus=1").is_none());
    }
}
