//! The database layer: one diesel connection type over SQLite and PostgreSQL, an r2d2 pool,
//! embedded migrations, and the only place that knows which backend is in use.
//!
//! Every query elsewhere is written once against [`DbConn`]. Blocking calls never run on an
//! actix worker: handlers go through [`Db::run`], which moves the work to the blocking pool
//! and keeps the tracing span.

pub mod ids;
pub mod schema;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use secrecy::ExposeSecret;

use crate::config::{Settings, SqliteSynchronous};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the PostgreSQL advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x6761_7465_686f_7573; // "gatehous"

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend is chosen from the URL scheme, never by trying each driver in turn.
    pub fn from_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err("expected a URL starting with sqlite:// or postgres://".into())
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("migrations failed: {0}")]
    Migration(String),
}

/// Opens connections of the configured backend with its session settings.
pub struct Manager {
    backend: Backend,
    target: String,
    sqlite_synchronous: SqliteSynchronous,
    /// The last connection error, so a pool time-out can say what really went wrong.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Manager {
    fn new(settings: &Settings) -> Result<Manager, DbError> {
        let url = settings.database_url.expose_secret();
        let backend = Backend::from_url(url).map_err(DbError::Unavailable)?;
        let target = match backend {
            Backend::Sqlite => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                if let Some(parent) = std::path::Path::new(path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent).map_err(|e| {
                            DbError::Unavailable(format!(
                                "cannot create directory {}: {e}",
                                parent.display()
                            ))
                        })?;
                    }
                }
                path.to_string()
            }
            Backend::Postgres => with_connect_timeout(url, settings.db_connect_timeout_secs),
        };
        Ok(Manager {
            backend,
            target,
            sqlite_synchronous: settings.sqlite_synchronous,
            last_error: Arc::new(Mutex::new(None)),
        })
    }

    fn open(&self) -> Result<DbConn, r2d2::Error> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // busy_timeout first: switching to WAL takes a lock other connections may hold.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; \
                     PRAGMA case_sensitive_like = ON;",
                    self.sqlite_synchronous.pragma_value()
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
            Backend::Postgres => PgConnection::establish(&self.target)
                .map(DbConn::Pg)
                .map_err(r2d2::Error::ConnectionError),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        let result = self.open();
        if let Err(e) = &result {
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
        result
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        <DbConn as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

fn with_connect_timeout(url: &str, secs: u64) -> String {
    if url.contains("connect_timeout=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={secs}")
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// The shared handle: a pool plus the backend it serves.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Db {
    /// Connects once directly (so a wrong password or host is reported as itself, within the
    /// connect time-out) and then builds the pool.
    pub fn connect(settings: &Settings) -> Result<Db, DbError> {
        // Initialise OpenSSL ourselves before libpq does: rust-openssl asks for no exit-time
        // cleanup, which otherwise races with threads still holding connections when the
        // process ends (seen as SIGSEGV/SIGABRT at exit).
        openssl::init();
        let manager = Manager::new(settings)?;
        let backend = manager.backend;
        let last_error = manager.last_error.clone();
        manager
            .open()
            .map_err(|e| DbError::Unavailable(format!("{} ({})", e, backend.name())))?;
        let pool = r2d2::Pool::builder()
            .max_size(settings.db_pool_size)
            // No background connects: a CLI process may exit while one runs (libpq + OpenSSL then
            // crash in their exit handlers). Connections open on demand.
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(settings.db_connect_timeout_secs))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(Db {
            pool,
            backend,
            last_error,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A pooled connection for synchronous callers (the CLI, start-up, tests).
    pub fn conn(&self) -> Result<PooledConn, DbError> {
        self.pool.get().map_err(|e| {
            let last = self
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            DbError::Unavailable(format!("{e}{last}"))
        })
    }

    /// Runs blocking database work off the async workers, in the caller's tracing span.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn = db.conn()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::Task(e.to_string())))?
    }

    /// Applies pending migrations; on PostgreSQL under an advisory lock so replicas don't race.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConn = &mut conn;
        if let DbConn::Pg(pg) = conn {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(pg)?;
        }
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(|e| DbError::Migration(e.to_string()));
        if let DbConn::Pg(pg) = conn {
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(pg)?;
        }
        result
    }

    /// Readiness: the database answers and no migration is pending.
    pub fn check_ready(conn: &mut DbConn) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1")?;
        let pending = conn
            .has_pending_migration(MIGRATIONS)
            .map_err(|e| DbError::Migration(e.to_string()))?;
        if pending {
            return Err(DbError::Migration("migrations pending".into()));
        }
        Ok(())
    }
}

/// A write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, so a transaction that
/// reads before it writes waits for the write lock (busy_timeout) instead of failing with
/// "database is locked" at its first write. Inside an open transaction it nests (savepoint).
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let in_tx = <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_err(E::from)?
        .is_some();
    match conn {
        DbConn::Sqlite(sqlite) if !in_tx => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")
                .map_err(E::from)?;
            match f(conn) {
                Ok(value) => {
                    <DbConn as Connection>::TransactionManager::commit_transaction(conn)
                        .map_err(E::from)?;
                    Ok(value)
                }
                Err(e) => {
                    // The caller's error is the one that matters; a failed rollback marks the
                    // connection broken and r2d2 discards it.
                    let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
                    Err(e)
                }
            }
        }
        _ => conn.transaction(f),
    }
}

/// Serialises writers that share `name` until the end of the current transaction. PostgreSQL
/// needs it (an advisory lock); SQLite's `BEGIN IMMEDIATE` write lock already serialises.
pub fn lock_named(conn: &mut DbConn, name: &str) -> diesel::QueryResult<()> {
    if let DbConn::Pg(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(pg)?;
    }
    Ok(())
}
