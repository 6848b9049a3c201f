//! Dashboard sessions: rows only. Secrets, cookies and lifetimes live in `auth::sessions`.

use super::{Result, Store, UserRecord};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

impl Store {
    pub async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.last_seen_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A session with its user, in one round trip: what every dashboard request reads.
    pub async fn session_with_user(
        &self,
        id_hash: &str,
    ) -> Result<Option<(SessionRecord, UserRecord)>> {
        let row = sqlx::query(
            "SELECT s.id_hash, s.user_id, s.csrf, s.created_at, s.expires_at, s.last_seen_at, \
             u.name, u.role, u.disabled, u.created_at AS u_created_at, u.must_change_password \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = SessionRecord {
            id_hash: row.try_get("id_hash")?,
            user_id: row.try_get("user_id")?,
            csrf: row.try_get("csrf")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        };
        let user = UserRecord {
            id: session.user_id.clone(),
            name: row.try_get("name")?,
            role: row.try_get("role")?,
            disabled: row.try_get::<i64, _>("disabled")? != 0,
            created_at: row.try_get("u_created_at")?,
            must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
            password_hash: None,
        };
        Ok(Some((session, user)))
    }

    /// Slides a session's idle deadline (never past its absolute end, which the caller computes).
    pub async fn touch_session(&self, id_hash: &str, seen: i64, expires_at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id_hash = $3")
            .bind(seen)
            .bind(expires_at)
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends every session of a user but one (a password change keeps the session that made it).
    pub async fn delete_user_sessions(&self, user_id: &str, except: Option<&str>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(except.unwrap_or(""))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn purge_expired_sessions(&self, at: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(at)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
