//! Storage backends: one `Db` enum over SQLite and PostgreSQL, with connections, write transactions and migrations.
//!
//! Every store function in the crate is written once. It takes `&mut impl Connection` (a pooled
//! read connection or a write transaction) and runs its SQL through [`dispatch!`], which expands
//! the same statement once per backend. SQL is portable (`$N` placeholders, `RETURNING`,
//! `ON CONFLICT`); where dialects really differ, the store function matches on [`Exec`] itself.
//!
//! ## The SQLite write path and group commit
//! SQLite has one writer at a time, so all writes go through a pool of exactly one connection
//! and begin with `BEGIN IMMEDIATE`; reads use a separate pool. [`Db::begin_write`] is the only
//! way to start a write, and [`Tx::commit`] the only way to finish one. With group commit (the
//! default, `sqlite.group_commit`), that pair hands each logical write a `SAVEPOINT` inside a
//! shared batch transaction on one dedicated writer connection, and `commit` releases the
//! savepoint and waits for the batch's single `COMMIT` (see [`group`]); no caller knows.

pub mod group;
mod migrate;

pub use migrate::{migrate, migration_names, migrations_fingerprint};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{
    ConnectOptions, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool,
    Transaction,
};

use self::group::{GroupCommit, GroupTx};
use crate::config::Settings;

/// Runs one expression against whichever backend `$conn` is on.
///
/// `$conn` is anything implementing [`Connection`]; inside the body `$exec` is a
/// `&mut SqliteConnection` or a `&mut PgConnection`, so the same `sqlx::query(..)` chain is
/// compiled once for each backend. This is the crate's one dispatch helper.
#[macro_export]
macro_rules! dispatch {
    ($conn:expr, |$exec:ident| $body:expr) => {
        match $crate::db::Connection::exec($conn) {
            $crate::db::Exec::Sqlite($exec) => $body,
            $crate::db::Exec::Postgres($exec) => $body,
        }
    };
}

/// Which database engine a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Chooses the backend from the URL scheme: `sqlite:` or `postgres:`/`postgresql:`.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The shared commit of a SQLite write batch failed; the write was not made durable.
    #[error("group commit: {0}")]
    GroupCommit(String),
}

impl DbError {
    /// True when the statement broke a unique constraint (a duplicate code, name or key).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }

    /// True when the statement broke a foreign-key constraint (a parent that does not exist).
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(e)) if e.is_foreign_key_violation())
    }
}

/// The database: a SQLite writer and reader pool (and the group-commit writer, when on), or one
/// PostgreSQL pool.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { writer: SqlitePool, reader: SqlitePool, group: Option<Arc<GroupCommit>> },
    Postgres(PgPool),
}

impl Db {
    /// Opens the database named by `settings.database_url`, creating a SQLite file if missing.
    pub async fn connect(settings: &Settings) -> Result<Self, DbError> {
        let url = settings.database_url.expose();
        match Backend::from_url(url)? {
            Backend::Sqlite => {
                // A new database file may live in a folder that does not exist yet.
                if let Some(parent) = settings.database_url.sqlite_path().and_then(|p| p.parent())
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
                }
                let busy = Duration::from_millis(settings.sqlite.busy_timeout_ms);
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(busy)
                    .foreign_keys(true);
                // One writer: SQLite serialises writers anyway, and queueing them here keeps
                // `SQLITE_BUSY` away from requests and leaves room for group commit.
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .acquire_timeout(busy)
                    .connect_with(options.clone())
                    .await?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(settings.sqlite.read_connections.max(1))
                    .acquire_timeout(busy)
                    .connect_with(options.clone())
                    .await?;
                // With group commit, writes use a connection of their own outside the pool (the
                // pool's one connection then only runs migrations); SQLite's lock and the busy
                // timeout keep the two from writing at once.
                let group = if settings.sqlite.group_commit {
                    Some(GroupCommit::start(options.connect().await?))
                } else {
                    None
                };
                Ok(Db::Sqlite { writer, reader, group })
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(settings.postgres.max_connections.max(1))
                    .acquire_timeout(Duration::from_millis(settings.postgres.acquire_timeout_ms))
                    .connect_with(options)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// The group-commit counters, when SQLite group commit is on.
    pub fn group_commit(&self) -> Option<&Arc<GroupCommit>> {
        match self {
            Db::Sqlite { group, .. } => group.as_ref(),
            Db::Postgres(_) => None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A pooled connection for reads (never used for writes on SQLite).
    pub async fn read(&self) -> Result<Conn, DbError> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Conn::Sqlite(reader.acquire().await?),
            Db::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// Starts a write transaction; see the module doc for the group-commit seam.
    pub async fn begin_write(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite { group: Some(group), .. } => Tx::SqliteGroup(group.begin().await?),
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Starts a read-only transaction whose reads all see one snapshot (a deferred transaction
    /// on the SQLite reader pool; `REPEATABLE READ READ ONLY` on PostgreSQL), for checks such
    /// as `perks verify` that compare tables while the server keeps writing. Drop it to end it.
    pub async fn read_snapshot(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Tx::Sqlite(reader.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
            ),
        })
    }

    /// Checks that the database answers (used by `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.read().await?;
        dispatch!(&mut conn, |e| sqlx::query("SELECT 1")
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes every pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match self {
            Db::Sqlite { writer, reader, .. } => {
                reader.close().await;
                writer.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// A pooled connection of either backend.
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A transaction of either backend: a write ([`Db::begin_write`]) or a read snapshot
/// ([`Db::read_snapshot`]). Dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    /// A SQLite write sharing its commit with others ([`group`]).
    SqliteGroup(GroupTx),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Makes the transaction's writes durable (`synchronous=FULL` on SQLite); with group commit,
    /// returns once the shared commit that holds them has.
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::SqliteGroup(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// A borrowed raw connection, handed to the body of [`dispatch!`].
pub enum Exec<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Something SQL can run on: a pooled connection or an open transaction.
pub trait Connection: Send {
    fn exec(&mut self) -> Exec<'_>;
}

impl Connection for Conn {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Postgres(c) => Exec::Postgres(c),
        }
    }
}

impl Connection for Tx {
    fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::SqliteGroup(t) => Exec::Sqlite(t.conn()),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }
}

/// Milliseconds since the Unix epoch, UTC: the one way instants are stored.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
