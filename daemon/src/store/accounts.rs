//! Users and API keys: rows only. Hashing, key formats and policy live in `auth`.

use super::{is_unique_violation, now, Result, Store, StoreError};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// `admin` or `member`.
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    /// Set for the first admin (its password was written to a file): the dashboard asks for a new one first.
    pub must_change_password: bool,
    #[serde(skip)]
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    pub name: String,
    /// Models this key may use; `None` = every model the user may use.
    pub models: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    #[serde(skip)]
    pub secret_hash: String,
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub secret_hash: &'a str,
    pub models: Option<&'a [String]>,
    pub expires_at: Option<i64>,
}

const USER_COLS: &str = "id, name, role, password_hash, disabled, created_at, must_change_password";
const KEY_COLS: &str = "k.id, k.user_id, u.name AS user_name, k.name, k.secret_hash, k.models, \
     k.created_at, k.expires_at, k.revoked_at, k.last_used_at";

fn user_from(row: &sqlx::any::AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
    })
}

fn key_from(row: &sqlx::any::AnyRow) -> Result<KeyRecord> {
    let models: Option<String> = row.try_get("models")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("user_name")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        models: models.map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    pub async fn create_user(
        &self,
        id: &str,
        name: &str,
        role: &str,
        password_hash: Option<&str>,
    ) -> Result<UserRecord> {
        let created = now();
        sqlx::query(
            "INSERT INTO users (id, name, role, password_hash, disabled, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(created)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("user '{name}'"))
            } else {
                e.into()
            }
        })?;
        self.user_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user '{name}'")))
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_from).collect()
    }

    pub async fn count_admins(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Updates whichever of disabled / role / password hash is given; returns the new row.
    pub async fn update_user(
        &self,
        name: &str,
        disabled: Option<bool>,
        role: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<UserRecord> {
        let mut tx = self.pool().begin().await?;
        let mut changed = 0;
        if let Some(d) = disabled {
            changed += sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
                .bind(d as i64)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if let Some(r) = role {
            changed += sqlx::query("UPDATE users SET role = $1 WHERE name = $2")
                .bind(r)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if let Some(h) = password_hash {
            changed += sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
                .bind(h)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        let user = self
            .user_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user '{name}'")))?;
        let _ = changed;
        Ok(user)
    }

    pub async fn create_key(&self, k: NewKey<'_>) -> Result<KeyRecord> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, secret_hash, models, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(k.id)
        .bind(k.user_id)
        .bind(k.name)
        .bind(k.secret_hash)
        .bind(k.models.map(|m| m.join(",")))
        .bind(now())
        .bind(k.expires_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("key '{}'", k.id))
            } else {
                e.into()
            }
        })?;
        self.key(k.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key '{}'", k.id)))
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_from).transpose()
    }

    /// A key with its owner, in one round trip: what authentication reads on every request.
    pub async fn key_with_user(&self, id: &str) -> Result<Option<(KeyRecord, UserRecord)>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS}, u.role AS u_role, u.disabled AS u_disabled, u.created_at AS u_created_at, \
             u.must_change_password AS u_must_change FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key_from(&row)?;
        let user = UserRecord {
            id: key.user_id.clone(),
            name: key.user_name.clone(),
            role: row.try_get("u_role")?,
            disabled: row.try_get::<i64, _>("u_disabled")? != 0,
            created_at: row.try_get("u_created_at")?,
            must_change_password: row.try_get::<i64, _>("u_must_change")? != 0,
            password_hash: None,
        };
        Ok(Some((key, user)))
    }

    pub async fn list_keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>> {
        let q = match user {
            Some(_) => format!(
                "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE u.name = $1 ORDER BY k.created_at, k.id"
            ),
            None => format!(
                "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 ORDER BY u.name, k.created_at, k.id"
            ),
        };
        let mut query = sqlx::query(&q);
        if let Some(u) = user {
            query = query.bind(u);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(key_from).collect()
    }

    /// Revokes a key; false when it does not exist or was already revoked.
    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets or clears the forced password change.
    pub async fn set_must_change_password(&self, user_id: &str, on: bool) -> Result<()> {
        sqlx::query("UPDATE users SET must_change_password = $1 WHERE id = $2")
            .bind(on as i64)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records that a key was used (at most once a minute per key, so auth stays read-only).
    pub async fn touch_key(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(at)
        .bind(id)
        .bind(at - 60)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
