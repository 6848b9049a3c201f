//! Account operations shared by the CLI and the admin API: users, keys, the first admin.

use super::secrets::{self, SecretError};
use super::Role;
use crate::store::{now, KeyRecord, NewKey, Store, StoreError, UserRecord};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid user name '{0}': use 1-64 characters from a-z, 0-9, '.', '_', '-', '@'")]
    BadUserName(String),
    #[error("invalid role '{0}': use admin or member")]
    BadRole(String),
    #[error("the password must be at least 8 characters")]
    WeakPassword,
    #[error("invalid key name: at most 64 printable characters")]
    BadKeyName,
    #[error("invalid model name '{0}' in the key's model list")]
    BadModelName(String),
    #[error("user '{0}' not found")]
    NoSuchUser(String),
    #[error("key '{0}' not found or already revoked")]
    NoSuchKey(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b))
}

async fn hash_off_thread(secret: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || secrets::hash_secret(&secret))
        .await
        .map_err(|e| AccountError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(Into::into)
}

pub async fn add_user(
    store: &Store,
    name: &str,
    role: &str,
    password: Option<&str>,
) -> Result<UserRecord, AccountError> {
    if !valid_user_name(name) {
        return Err(AccountError::BadUserName(name.to_owned()));
    }
    let role = Role::parse(role).ok_or_else(|| AccountError::BadRole(role.to_owned()))?;
    let hash = match password {
        Some(p) if p.chars().count() < 8 => return Err(AccountError::WeakPassword),
        Some(p) => Some(hash_off_thread(p.to_owned()).await?),
        None => None,
    };
    let id = secrets::random_token(16)?;
    Ok(store
        .create_user(&id, name, role.as_str(), hash.as_deref())
        .await?)
}

pub async fn set_password(
    store: &Store,
    name: &str,
    password: &str,
) -> Result<UserRecord, AccountError> {
    if password.chars().count() < 8 {
        return Err(AccountError::WeakPassword);
    }
    let hash = hash_off_thread(password.to_owned()).await?;
    let mut user = update_user(store, name, None, None, Some(&hash)).await?;
    // A password someone chose is not the generated one in the first-start file.
    if user.must_change_password {
        store.set_must_change_password(&user.id, false).await?;
        user.must_change_password = false;
    }
    Ok(user)
}

pub async fn update_user(
    store: &Store,
    name: &str,
    disabled: Option<bool>,
    role: Option<&str>,
    password_hash: Option<&str>,
) -> Result<UserRecord, AccountError> {
    if let Some(r) = role {
        Role::parse(r).ok_or_else(|| AccountError::BadRole(r.to_owned()))?;
    }
    store
        .update_user(name, disabled, role, password_hash)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => AccountError::NoSuchUser(name.to_owned()),
            e => e.into(),
        })
}

pub struct KeySpec<'a> {
    pub user: &'a str,
    pub name: &'a str,
    pub models: Option<Vec<String>>,
    pub expires_in: Option<Duration>,
}

/// Creates a key; returns its record and the only copy of the plaintext key.
pub async fn create_key(
    store: &Store,
    spec: KeySpec<'_>,
) -> Result<(KeyRecord, String), AccountError> {
    let user = store
        .user_by_name(spec.user)
        .await?
        .ok_or_else(|| AccountError::NoSuchUser(spec.user.to_owned()))?;
    if spec.name.chars().count() > 64 || spec.name.chars().any(char::is_control) {
        return Err(AccountError::BadKeyName);
    }
    if let Some(models) = &spec.models {
        if let Some(bad) = models.iter().find(|m| !crate::models::valid_name(m)) {
            return Err(AccountError::BadModelName(bad.clone()));
        }
    }
    let (id, secret) = secrets::new_key()?;
    let hash = hash_off_thread(secret.clone()).await?;
    let rec = store
        .create_key(NewKey {
            id: &id,
            user_id: &user.id,
            name: spec.name,
            secret_hash: &hash,
            models: spec.models.as_deref(),
            expires_at: spec
                .expires_in
                .map(|d| now().saturating_add(d.as_secs() as i64)),
        })
        .await?;
    Ok((rec, secrets::format_key(&id, &secret)))
}

pub async fn revoke_key(store: &Store, id: &str) -> Result<(), AccountError> {
    if store.revoke_key(id).await? {
        Ok(())
    } else {
        Err(AccountError::NoSuchKey(id.to_owned()))
    }
}

pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// First start with no admin: creates `admin` with a random password written once to
/// `<state>/initial-admin-password` (0600). Returns the file when it was created.
pub async fn ensure_initial_admin(
    store: &Store,
    state_dir: &Path,
) -> Result<Option<PathBuf>, AccountError> {
    if store.count_admins().await? > 0 {
        return Ok(None);
    }
    let password = secrets::random_token(24)?;
    let path = state_dir.join(INITIAL_PASSWORD_FILE);
    let io = |source| AccountError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let name = if store.user_by_name("admin").await?.is_some() {
        // A member called `admin` exists (created before any admin): promote it rather than fail to start.
        update_user(store, "admin", Some(false), Some("admin"), None).await?;
        set_password(store, "admin", &password).await?;
        "admin"
    } else {
        match add_user(store, "admin", "admin", Some(&password)).await {
            Ok(_) => "admin",
            // Another node sharing the database created it first: nothing to do here.
            Err(AccountError::Store(StoreError::Conflict(_))) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    // The password sits in a file: the dashboard asks for a new one at the first sign-in.
    if let Some(u) = store.user_by_name(name).await? {
        store.set_must_change_password(&u.id, true).await?;
    }
    write_secret_file(&path, &format!("{password}\n")).map_err(io)?;
    tracing::warn!(
        user = name,
        file = %path.display(),
        "created the first admin; its password is in the file (read it, log in, change it, delete the file)"
    );
    Ok(Some(path))
}

fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
