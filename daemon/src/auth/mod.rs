//! Who is calling: API keys (`Authorization: Bearer hth_…`) resolved to a `Principal`.
//!
//! Every request reads the key and its owner from the store (one indexed query), so revocation, expiry and
//! disabling take effect at once — also when the CLI or another node made the change. What is cached is the
//! expensive part: a key whose secret already passed argon2id is remembered by the SHA-256 of its secret, so
//! the next request costs a hash and a lookup, not an argon2 run.

pub mod accounts;
mod key_cache;
pub mod login_limit;
pub mod networks;
pub mod secrets;
pub mod sessions;

use crate::store::{now, Store, StoreError};
use key_cache::KeyCache;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
    pub key_id: Option<String>,
    /// The key's model scope; None = any model.
    pub models: Option<Vec<String>>,
    /// Admitted without a key, by network (`[keyless]`): a member whatever the user's role, who may not
    /// manage keys.
    pub keyless: bool,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    pub fn may_use(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send 'Authorization: Bearer hth_…'")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    #[error("this API key has been revoked")]
    Revoked,
    #[error("this API key has expired")]
    Expired,
    #[error("this user is disabled")]
    Disabled,
    #[error("your session has ended; sign in again")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub struct Authenticator {
    store: Store,
    cache: KeyCache,
    /// When each key's `last_used_at` was last written, so auth writes at most once a minute per key.
    touched: Mutex<HashMap<String, i64>>,
    /// Sign-in attempts per user name and client address (`sessions`).
    logins: login_limit::LoginLimiter,
}

impl Authenticator {
    pub fn new(store: Store) -> Arc<Authenticator> {
        Arc::new(Authenticator {
            store,
            cache: KeyCache::new(10_000),
            touched: Mutex::new(HashMap::new()),
            logins: login_limit::LoginLimiter::default(),
        })
    }

    /// Resolves an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?.trim();
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        self.verify_key(key).await
    }

    pub async fn verify_key(&self, key: &str) -> Result<Principal, AuthError> {
        let (id, secret) = secrets::parse_key(key).ok_or(AuthError::Invalid)?;
        let (rec, user) = self
            .store
            .key_with_user(id)
            .await?
            .ok_or(AuthError::Invalid)?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !self.cache.verified(id, &rec.secret_hash, &digest) {
            let (secret, phc) = (secret.to_owned(), rec.secret_hash.clone());
            let ok = tokio::task::spawn_blocking(move || secrets::verify_secret(&secret, &phc))
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
            if !ok {
                return Err(AuthError::Invalid);
            }
            self.cache.insert(id, &rec.secret_hash, digest);
        }
        // Checked after the secret so that a stranger cannot probe which ids are revoked or expired.
        let t = now();
        if rec.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if rec.expires_at.is_some_and(|e| e <= t) {
            return Err(AuthError::Expired);
        }
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let role = Role::parse(&user.role).ok_or_else(|| AuthError::Internal("bad role".into()))?;
        self.touch(id, t);
        Ok(Principal {
            user_id: user.id,
            user_name: user.name,
            role,
            key_id: Some(rec.id),
            models: rec.models,
            keyless: false,
        })
    }

    /// Who a batch line runs as: its owner, through the key that created the batch (its model scope and limits),
    /// refused as that key would be now (revoked, expired, user disabled). Scheduled batches have no key.
    pub async fn principal_of(
        &self,
        user_id: &str,
        key_id: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let (key, user) = match key_id {
            Some(k) => {
                let (rec, user) = self
                    .store
                    .key_with_user(k)
                    .await?
                    .ok_or(AuthError::Revoked)?;
                if rec.revoked_at.is_some() {
                    return Err(AuthError::Revoked);
                }
                if rec.expires_at.is_some_and(|e| e <= now()) {
                    return Err(AuthError::Expired);
                }
                (Some(rec), user)
            }
            None => (
                None,
                self.store
                    .user_by_id(user_id)
                    .await?
                    .ok_or(AuthError::Invalid)?,
            ),
        };
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let role = Role::parse(&user.role).ok_or_else(|| AuthError::Internal("bad role".into()))?;
        Ok(Principal {
            user_id: user.id,
            user_name: user.name,
            role,
            key_id: key.as_ref().map(|k| k.id.clone()),
            models: key.and_then(|k| k.models),
            keyless: false,
        })
    }

    /// The principal of a request without a key from a keyless network: the configured user, as a member
    /// (never admin, whatever the user's role), with no key.
    pub async fn keyless_principal(&self, user_name: &str) -> Result<Principal, AuthError> {
        let user = self
            .store
            .user_by_name(user_name)
            .await?
            .ok_or(AuthError::Missing)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok(Principal {
            user_id: user.id,
            user_name: user.name,
            role: Role::Member,
            key_id: None,
            models: None,
            keyless: true,
        })
    }

    /// Forgets a key's verified secret (revocation; the store check alone already refuses it).
    pub fn forget(&self, key_id: &str) {
        self.cache.remove(key_id);
    }

    fn touch(&self, id: &str, t: i64) {
        let due = {
            let Ok(mut m) = self.touched.lock() else {
                return;
            };
            let due = m.get(id).is_none_or(|&last| t - last >= 60);
            if due {
                if m.len() > 100_000 {
                    m.clear();
                }
                m.insert(id.to_owned(), t);
            }
            due
        };
        if due {
            let store = self.store.clone();
            let id = id.to_owned();
            // Best effort, off the request path: a lost `last_used_at` write is not worth failing a request.
            tokio::spawn(async move {
                if let Err(e) = store.touch_key(&id, t).await {
                    tracing::debug!(error = %e, "could not record key use");
                }
            });
        }
    }
}
