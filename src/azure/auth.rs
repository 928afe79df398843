//! Credentials: which `azure_identity` credential to use, and a token cache
//! in front of it.
//!
//! `azure_identity` 1.x has no default chain (crates.md §1.2), so the CLI's
//! `--auth` picks one, `auto` choosing by environment. Tokens are cached and
//! refreshed five minutes before expiry (the Azure CLI credential does not
//! cache). `--auth none` sends a dummy token and is accepted only for
//! loopback endpoints, so it can never reach real Azure.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions};
use tokio::sync::Mutex;

use super::AzureConfig;
use crate::model::BearerToken;

/// How to authenticate to ARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Azure CLI login (`az account get-access-token`).
    Cli,
    /// Managed identity (`AZURE_CLIENT_ID` selects a user-assigned one).
    ManagedIdentity,
    /// Workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`).
    Workload,
    /// Service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ServicePrincipal,
    /// No credential: a fixed dummy token, loopback endpoints only.
    None,
}

impl AuthMode {
    /// Stable lower-case name (journaled; never a secret).
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Cli => "cli",
            AuthMode::ManagedIdentity => "msi",
            AuthMode::Workload => "workload",
            AuthMode::ServicePrincipal => "sp",
            AuthMode::None => "none",
        }
    }
}

/// Why credentials could not be set up (bad input: nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `--auth none` against a non-loopback endpoint.
    #[error(
        "--auth none is only allowed with a loopback --arm-endpoint (the emulator); {0} is not loopback"
    )]
    NoneNotLoopback(String),
    /// A required environment variable is missing.
    #[error("--auth {mode} needs the environment variable {var}")]
    MissingEnv {
        /// The mode.
        mode: &'static str,
        /// The variable.
        var: &'static str,
    },
    /// The credential could not be built.
    #[error("cannot set up --auth {mode} credentials: {message}")]
    Setup {
        /// The mode.
        mode: &'static str,
        /// What went wrong (redacted).
        message: String,
    },
}

/// Refresh a cached token this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Hands out bearer tokens for ARM, cached.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

enum Inner {
    Fixed(BearerToken),
    Credential {
        cred: Arc<dyn TokenCredential>,
        scope: String,
        cache: Mutex<Option<(BearerToken, tokio::time::Instant)>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Fixed(_) => f.write_str("TokenSource(fixed)"),
            Inner::Credential { scope, .. } => write!(f, "TokenSource({scope})"),
        }
    }
}

impl TokenSource {
    /// A fixed token (tests and `--auth none`).
    pub fn fixed(token: BearerToken) -> Self {
        TokenSource {
            inner: Arc::new(Inner::Fixed(token)),
        }
    }

    /// Wraps any credential (tests can pass a scripted one).
    pub fn from_credential(cred: Arc<dyn TokenCredential>, scope: &str) -> Self {
        TokenSource {
            inner: Arc::new(Inner::Credential {
                cred,
                scope: scope.to_string(),
                cache: Mutex::new(None),
            }),
        }
    }

    /// A valid token, from the cache when it has more than five minutes left.
    pub async fn token(&self) -> Result<BearerToken, super::AzureError> {
        match &*self.inner {
            Inner::Fixed(t) => Ok(t.clone()),
            Inner::Credential { cred, scope, cache } => {
                let mut guard = cache.lock().await;
                if let Some((tok, refresh_at)) = guard.as_ref()
                    && tokio::time::Instant::now() < *refresh_at
                {
                    return Ok(tok.clone());
                }
                let t = cred.get_token(&[scope.as_str()], None).await.map_err(|e| {
                    super::AzureError::Auth {
                        message: crate::model::redact(&e.to_string()),
                    }
                })?;
                let left = t.expires_on - time::OffsetDateTime::now_utc();
                let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                let refresh_at = tokio::time::Instant::now() + left.saturating_sub(REFRESH_BEFORE);
                let tok = BearerToken::new(t.token.secret());
                *guard = Some((tok.clone(), refresh_at));
                Ok(tok)
            }
        }
    }

    /// Forgets the cached token (after a 401), so the next call fetches anew.
    pub async fn invalidate(&self) {
        if let Inner::Credential { cache, .. } = &*self.inner {
            *cache.lock().await = None;
        }
    }
}

fn env(mode: AuthMode, var: &'static str) -> Result<String, AuthError> {
    std::env::var(var)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .ok_or(AuthError::MissingEnv {
            mode: mode.name(),
            var,
        })
}

fn client_options(cfg: &AzureConfig) -> ClientOptions {
    // Our own retry layer decides; azure_core's default (8 retries, 60 s)
    // would make a missing network look like a hang (crates.md §1.5).
    ClientOptions {
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(cfg.cloud.configuration())),
        ..Default::default()
    }
}

/// Builds the token source for `mode`. Fails without sending anything when
/// the mode cannot work (missing variables, `none` on a real endpoint).
pub async fn token_source(mode: AuthMode, cfg: &AzureConfig) -> Result<TokenSource, AuthError> {
    let setup = |e: azure_core::Error| AuthError::Setup {
        mode: mode.name(),
        message: crate::model::redact(&e.to_string()),
    };
    let scope = cfg.cloud.arm_scope();
    let cred: Arc<dyn TokenCredential> = match mode {
        AuthMode::None => {
            if !cfg.is_loopback() {
                return Err(AuthError::NoneNotLoopback(cfg.arm_endpoint.to_string()));
            }
            return Ok(TokenSource::fixed(BearerToken::new(
                "ade2eah-emulator-token",
            )));
        }
        AuthMode::Cli => azure_identity::AzureCliCredential::new(None).map_err(setup)?,
        AuthMode::ManagedIdentity => {
            let user_assigned_id = std::env::var("AZURE_CLIENT_ID")
                .ok()
                .filter(|s| !s.is_empty())
                .map(azure_identity::UserAssignedId::ClientId);
            let opts = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id,
                client_options: client_options(cfg),
            };
            azure_identity::ManagedIdentityCredential::new(Some(opts)).map_err(setup)?
        }
        AuthMode::Workload => {
            for var in [
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "AZURE_FEDERATED_TOKEN_FILE",
            ] {
                env(mode, var)?;
            }
            let mut opts = azure_identity::WorkloadIdentityCredentialOptions::default();
            opts.credential_options.client_options = client_options(cfg);
            azure_identity::WorkloadIdentityCredential::new(Some(opts)).map_err(setup)?
        }
        AuthMode::ServicePrincipal => {
            let tenant = env(mode, "AZURE_TENANT_ID")?;
            let client = env(mode, "AZURE_CLIENT_ID")?;
            let secret = env(mode, "AZURE_CLIENT_SECRET")?;
            let opts = azure_identity::ClientSecretCredentialOptions {
                client_options: client_options(cfg),
            };
            azure_identity::ClientSecretCredential::new(
                &tenant,
                client,
                azure_core::credentials::Secret::new(secret),
                Some(opts),
            )
            .map_err(setup)?
        }
    };
    Ok(TokenSource::from_credential(cred, scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::{AccessToken, Secret, TokenRequestOptions};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting(AtomicU32, i64);

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            Ok(AccessToken {
                token: Secret::new(format!("tok-{n}")),
                expires_on: time::OffsetDateTime::now_utc() + time::Duration::seconds(self.1),
            })
        }
    }

    #[tokio::test]
    async fn caches_until_five_minutes_before_expiry() {
        let long = Arc::new(Counting(AtomicU32::new(0), 3600));
        let ts = TokenSource::from_credential(long.clone(), "s");
        assert_eq!(ts.token().await.unwrap().expose_secret(), "tok-0");
        assert_eq!(ts.token().await.unwrap().expose_secret(), "tok-0");
        assert_eq!(long.0.load(Ordering::Relaxed), 1);
        let short = Arc::new(Counting(AtomicU32::new(0), 200));
        let ts = TokenSource::from_credential(short.clone(), "s");
        ts.token().await.unwrap();
        assert_eq!(
            ts.token().await.unwrap().expose_secret(),
            "tok-1",
            "a token expiring within 5 min is refreshed"
        );
        ts.invalidate().await;
        assert_eq!(ts.token().await.unwrap().expose_secret(), "tok-2");
    }

    #[tokio::test]
    async fn none_is_loopback_only_and_sp_needs_its_variables() {
        let real = AzureConfig::for_cloud(super::super::AzureCloud::Public);
        assert!(matches!(
            token_source(AuthMode::None, &real).await,
            Err(AuthError::NoneNotLoopback(_))
        ));
        let local = AzureConfig::new(
            url::Url::parse("http://127.0.0.1:9").unwrap(),
            super::super::AzureCloud::Public,
        );
        assert!(token_source(AuthMode::None, &local).await.is_ok());
        if std::env::var_os("AZURE_TENANT_ID").is_none() {
            assert!(matches!(
                token_source(AuthMode::ServicePrincipal, &real).await,
                Err(AuthError::MissingEnv { .. })
            ));
        }
    }
}
