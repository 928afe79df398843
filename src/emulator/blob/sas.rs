//! SAS grants of the blob store: granting and revoking access, and
//! authorising a request by its signature.

use base64::prelude::*;

use super::store::BlobStore;
use super::{BlobId, GrantInfo, SasAccess};

#[derive(Debug, Clone)]
pub(super) struct Grant {
    pub(super) blob: BlobId,
    pub(super) si: String,
    pub(super) access: SasAccess,
    pub(super) expires_at: f64,
    pub(super) revoked: bool,
}

/// Why a SAS request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccessError {
    /// No such blob (404 `BlobNotFound`).
    NotFound,
    /// Bad, revoked or expired signature (403 `AuthenticationFailed`), with
    /// Azure's `AuthenticationErrorDetail`.
    AuthFailed(String),
    /// The grant does not allow the operation (403 `AuthorizationPermissionMismatch`).
    PermissionMismatch,
}

impl BlobStore {
    /// Grants SAS access for `duration` simulated seconds and returns the
    /// full SAS URL (`{base}/{account}/{container}/abcd?sv=..&sr=b&si=..&sp=r|w&se=..&sig=..`).
    ///
    /// `se` is the RFC 3339 (UTC, whole seconds) wall-clock rendering of the
    /// simulated expiry (wall clock at store creation + simulated seconds).
    /// It is informational: authorisation uses the grant found by `sig`
    /// (random 48 bytes, base64) and its stored expiry, so editing `se` or
    /// `sp` in a URL changes nothing.
    pub fn grant(&self, id: &BlobId, access: SasAccess, duration: f64) -> Option<String> {
        let mut inner = self.lock();
        let container = inner.blobs.get(id)?.container.clone();
        let duration = if duration.is_finite() {
            duration.max(0.0)
        } else {
            0.0
        };
        let expires_at = self.clock.now() + duration;
        let si = uuid::Uuid::new_v4().to_string();
        let mut raw = Vec::with_capacity(48);
        for _ in 0..3 {
            raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        let sig = BASE64_STANDARD.encode(&raw);
        let sp = match access {
            SasAccess::Read => "r",
            SasAccess::Write => "w",
        };
        let se = self.rfc3339(expires_at);
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}/{}/{}/abcd?sv=2018-03-28&sr=b&si={}&sp={}&se={}&sig={}",
            inner.base,
            id.0,
            container,
            si,
            sp,
            enc(&se),
            enc(&sig)
        );
        inner.grants.insert(
            sig,
            Grant {
                blob: id.clone(),
                si,
                access,
                expires_at,
                revoked: false,
            },
        );
        Some(url)
    }

    /// Ends every grant on `id`; their URLs answer 403 from now on.
    pub fn revoke_all(&self, id: &BlobId) {
        let mut inner = self.lock();
        for g in inner.grants.values_mut() {
            if &g.blob == id {
                g.revoked = true;
            }
        }
    }

    /// True when `id` has an unexpired, unrevoked grant.
    pub fn has_active_grant(&self, id: &BlobId) -> bool {
        let now = self.clock.now();
        self.lock()
            .grants
            .values()
            .any(|g| &g.blob == id && !g.revoked && now < g.expires_at)
    }

    /// Every live grant.
    pub fn active_grants(&self) -> Vec<GrantInfo> {
        let now = self.clock.now();
        let inner = self.lock();
        let mut v: Vec<GrantInfo> = inner
            .grants
            .values()
            .filter(|g| !g.revoked && now < g.expires_at)
            .map(|g| GrantInfo {
                blob: g.blob.clone(),
                access: g.access,
                expires_at: g.expires_at,
            })
            .collect();
        v.sort_by(|a, b| {
            a.blob
                .cmp(&b.blob)
                .then(a.expires_at.total_cmp(&b.expires_at))
        });
        v
    }

    /// Checks a SAS (`sig`, `si` from the query) for blob `account` at
    /// `/{account}/{container}/{name}` and what the request does with it. A
    /// write grant also reads the properties and page ranges of its own
    /// blob (AzCopy reads them on the target); its data ([`Need::Data`], Get
    /// Blob or a copy source) only while
    /// [`super::StorageConfig::write_grant_reads_data`] holds.
    pub(crate) fn authorize(
        &self,
        account: &str,
        container: &str,
        name: &str,
        sig: Option<&str>,
        si: Option<&str>,
        need: Need,
    ) -> Result<BlobId, AccessError> {
        let id = BlobId(account.to_string());
        let inner = self.lock();
        let b = inner.blobs.get(&id).ok_or(AccessError::NotFound)?;
        if b.container != container || name != "abcd" {
            return Err(AccessError::NotFound);
        }
        let Some(sig) = sig.filter(|s| !s.is_empty()) else {
            return Err(AccessError::AuthFailed(
                "Signature fields not well formed.".into(),
            ));
        };
        let grant = inner
            .grants
            .get(sig)
            .or_else(|| inner.grants.get(&sig.replace(' ', "+")));
        let Some(g) = grant else {
            return Err(AccessError::AuthFailed("Signature did not match.".into()));
        };
        if g.blob != id || si.is_some_and(|s| s != g.si) || g.revoked {
            return Err(AccessError::AuthFailed("Signature did not match.".into()));
        }
        let now = self.clock.now();
        if now >= g.expires_at {
            return Err(AccessError::AuthFailed(format!(
                "Signature not valid in the specified time frame: Expiry [{}] - Current [{}]",
                self.http_date(g.expires_at),
                self.http_date(now)
            )));
        }
        let allowed = match (need, g.access) {
            (Need::Write, a) => a == SasAccess::Write,
            (Need::Meta, _) | (Need::Data, SasAccess::Read) => true,
            (Need::Data, SasAccess::Write) => self.config().write_grant_reads_data,
        };
        if !allowed {
            return Err(AccessError::PermissionMismatch);
        }
        Ok(id)
    }
}

/// What a request does with the blob it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Properties or page ranges.
    Meta,
    /// Its bytes.
    Data,
    /// Writes.
    Write,
}
