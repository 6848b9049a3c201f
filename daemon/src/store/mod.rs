//! The database: sqlx over SQLite (default, a file in the state dir, WAL) or PostgreSQL (`database_url`).
//! Both run the same SQL through sqlx's `Any` driver; the schema lives in `migrations/{sqlite,postgres}`,
//! embedded in the binary and applied at connect. Times are Unix seconds.

mod accounts;
mod batches;
mod energy;
mod job_runs;
mod ledger;
mod limits;
mod nodes;
mod quota;
mod sessions;
mod sqlite_fast;
mod usage;

pub use accounts::{KeyRecord, NewKey, UserRecord};
pub use batches::{BatchRecord, FileRecord, NewLine, PendingLine, ScheduleRecord};
pub use energy::EnergyFigure;
pub use ledger::RequestRecord;
pub use limits::LimitsOf;
pub use nodes::NodeRecord;
pub use quota::{Admission, Completion, UsageSnapshot};
pub use sessions::SessionRecord;
pub use usage::{GroupBy, UsageFilter, UsageGroup, UsageRow};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database_url '{0}' (use sqlite://PATH or postgres://…)")]
    BadUrl(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(
        "the database is at schema version {database}, and this hearth ({version}) knows versions up to {known}: \
         another node runs a newer hearth; upgrade this node to the same version before it joins"
    )]
    NewerSchema {
        database: i64,
        known: i64,
        version: &'static str,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The database cannot be reached right now (PostgreSQL restarting, a dropped connection, a full pool): worth
    /// retrying, and a 503 rather than a 500 for a client.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE classes 08 (connection exception) and 57 (operator intervention: shutting down, starting
            // up, terminated by an administrator).
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
            _ => false,
        }
    }
}

/// A database migrated by a newer hearth (another node upgraded first) is refused with the fix, before sqlx's
/// own "previously applied but missing" error.
async fn refuse_newer_schema(
    pool: &sqlx::AnyPool,
    migrator: &sqlx::migrate::Migrator,
) -> Result<()> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    // No table yet: a new database.
    let Ok(row) = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
    else {
        return Ok(());
    };
    let database: Option<i64> = sqlx::Row::try_get(&row, "v").unwrap_or(None);
    match database {
        Some(database) if database > known => Err(StoreError::NewerSchema {
            database,
            known,
            version: env!("CARGO_PKG_VERSION"),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: the in-thread connection of quota admission and reconciliation.
    fast: Option<Arc<sqlite_fast::FastSqlite>>,
}

/// The SQLite URL for a database file in the state directory.
pub fn sqlite_url(state_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        state_dir.join("hearth.db").display()
    )
}

fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        if backend == Backend::Sqlite {
            // The CLI may be the first to touch a fresh state directory. The file holds password and key
            // hashes: owner-only from the first byte (SQLite gives its -wal and -shm files the same mode).
            if let Some(file) = sqlite_file(url) {
                let io = |e| StoreError::Db(sqlx::Error::Io(e));
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(io)?;
            }
        }
        let mut opts = AnyConnectOptions::from_str(url)?;
        opts = sqlx::ConnectOptions::disable_statement_logging(opts);
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; the CLI and the daemon share the file.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        refuse_newer_schema(&pool, migrator).await?;
        let fast = match backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&pool).await?;
                match sqlite_file(url) {
                    Some(file) => Some(Arc::new(sqlite_fast::FastSqlite::open(
                        &file,
                        pool.clone(),
                    )?)),
                    None => None,
                }
            }
            Backend::Postgres => {
                POSTGRES_MIGRATIONS.run(&pool).await?;
                None
            }
        };
        Ok(Store {
            pool,
            backend,
            fast,
        })
    }

    /// The database server's clock (unix seconds), where it has one of its own (PostgreSQL).
    pub async fn database_clock(&self) -> Result<Option<i64>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let row = sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) AS t")
            .fetch_one(self.pool())
            .await?;
        Ok(Some(sqlx::Row::try_get(&row, "t")?))
    }

    /// The newest schema version this binary knows.
    pub fn known_schema(&self) -> i64 {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        m.iter().map(|m| m.version).max().unwrap_or(0)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Readiness: one round trip.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A unique-constraint violation, told apart from other errors so callers can answer 409.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
