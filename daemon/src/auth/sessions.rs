//! Dashboard sessions: a user name and password buy an opaque cookie secret (HttpOnly, SameSite=Strict) and a
//! CSRF token. The store keeps the secret's SHA-256 only, so a leaked database opens no session. A session ends
//! after `IDLE` without use or `ABSOLUTE` after sign-in, at sign-out, when its user is disabled, and — except
//! for the session that made it — when the password changes.

use super::login_limit::LoginLimiter;
use super::{secrets, AuthError, Authenticator, Principal, Role};
use crate::store::{now, SessionRecord, Store, StoreError, UserRecord};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

pub const COOKIE: &str = "hearth_session";
/// The header a session's state-changing requests carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const IDLE: i64 = 12 * 3600;
pub const ABSOLUTE: i64 = 7 * 86400;
/// Sliding the idle deadline costs a write; do it at most this often per session.
const TOUCH_EVERY: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("too many failed sign-in attempts; try again in {} s", .0.as_secs().max(1))]
    Limited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A new session: the cookie value (shown to the browser once) and what the page needs.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
    pub user: UserRecord,
}

/// The caller of a request that came with a session cookie.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub principal: Principal,
    pub csrf: String,
    pub id_hash: String,
    pub must_change_password: bool,
}

fn digest_hex(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

/// A hash to verify against when the user does not exist, so that a wrong name costs as long as a wrong
/// password and sign-in does not reveal which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| secrets::hash_secret("hearth-decoy-password").unwrap_or_default())
}

async fn verify_off_thread(password: String, phc: String) -> Result<bool, LoginError> {
    tokio::task::spawn_blocking(move || secrets::verify_secret(&password, &phc))
        .await
        .map_err(|e| LoginError::Internal(e.to_string()))
}

impl Authenticator {
    pub fn logins(&self) -> &LoginLimiter {
        &self.logins
    }

    /// Checks a user name and password and opens a session. Disabled users and users without a password
    /// get the same answer as a wrong password.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<NewSession, LoginError> {
        self.logins.check(name, ip).map_err(LoginError::Limited)?;
        let user = self.store.user_by_name(name).await?;
        let phc = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| decoy_hash().to_owned());
        let ok = verify_off_thread(password.to_owned(), phc).await?;
        let user = match user {
            Some(u) if ok && !u.disabled && u.password_hash.is_some() => u,
            _ => {
                self.logins.failed(name, ip);
                return Err(LoginError::BadCredentials);
            }
        };
        let internal = |e: secrets::SecretError| LoginError::Internal(e.to_string());
        let cookie = secrets::random_token(43).map_err(internal)?;
        let csrf = secrets::random_token(32).map_err(internal)?;
        let t = now();
        self.store
            .create_session(&SessionRecord {
                id_hash: digest_hex(&cookie),
                user_id: user.id.clone(),
                csrf: csrf.clone(),
                created_at: t,
                expires_at: t + IDLE.min(ABSOLUTE),
                last_seen_at: t,
            })
            .await?;
        // Expired rows would otherwise stay forever; sign-in is rare enough to pay for the sweep.
        if let Err(e) = self.store.purge_expired_sessions(t).await {
            tracing::debug!(error = %e, "could not purge expired sessions");
        }
        Ok(NewSession { cookie, csrf, user })
    }

    /// Checks a user's current password under the same brakes as sign-in (a password change asks for it).
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), LoginError> {
        self.logins.check(name, ip).map_err(LoginError::Limited)?;
        let phc = self
            .store
            .user_by_name(name)
            .await?
            .and_then(|u| u.password_hash)
            .unwrap_or_else(|| decoy_hash().to_owned());
        if verify_off_thread(password.to_owned(), phc).await? {
            Ok(())
        } else {
            self.logins.failed(name, ip);
            Err(LoginError::BadCredentials)
        }
    }

    /// Resolves a session cookie.
    pub async fn verify_session(&self, cookie: &str) -> Result<SessionCaller, AuthError> {
        let id_hash = digest_hex(cookie);
        let (session, user) = self
            .store
            .session_with_user(&id_hash)
            .await?
            .ok_or(AuthError::SessionEnded)?;
        let t = now();
        if session.expires_at <= t || session.created_at + ABSOLUTE <= t {
            let _ = self.store.delete_session(&id_hash).await;
            return Err(AuthError::SessionEnded);
        }
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let role = Role::parse(&user.role).ok_or_else(|| AuthError::Internal("bad role".into()))?;
        if t - session.last_seen_at >= TOUCH_EVERY {
            let until = (t + IDLE).min(session.created_at + ABSOLUTE);
            if let Err(e) = self.store.touch_session(&id_hash, t, until).await {
                tracing::debug!(error = %e, "could not extend a session");
            }
        }
        Ok(SessionCaller {
            principal: Principal {
                user_id: user.id,
                user_name: user.name,
                role,
                key_id: None,
                models: None,
                keyless: false,
            },
            csrf: session.csrf,
            id_hash,
            must_change_password: user.must_change_password,
        })
    }

    pub async fn logout(&self, id_hash: &str) -> Result<(), StoreError> {
        self.store.delete_session(id_hash).await
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let same = |a: &str, b: &str| secrets::same_secret(a.as_bytes(), b.as_bytes());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_stored_form_is_a_digest_not_the_secret() {
        let d = digest_hex("secret");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("secret"));
        assert_eq!(d, digest_hex("secret"));
    }
}
