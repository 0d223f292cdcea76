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

/// Runs a diesel statement on the concrete connection inside a [`DbConn`]. The two-backend
/// connection rebuilds a statement's SQL text on every execution to find it in its cache
/// (about a fifth of the database writer's time on SCIM creates); the concrete connections
/// key their caches by the statement's type. For statements on hot write paths.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Pg($c) => $body,
        }
    };
}

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
                     PRAGMA case_sensitive_like = ON; \
                     PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};",
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
    /// SQLite: the group-commit writer, started on the first [`Db::write`].
    writer: Arc<std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<WriteJob>>>>,
    /// Opens connections outside the pool (the writer's and the checkpointer's own), so
    /// they never take a pooled connection from request handlers.
    opener: Arc<Manager>,
}

/// A write for the group-commit thread: runs on its connection (inside the batch's open
/// transaction, so its own `write_tx` is a savepoint) and returns how to deliver its result
/// once the batch's fate is known (`true` = committed).
type WriteJob = Box<dyn FnOnce(&mut DbConn) -> Box<dyn FnOnce(bool) + Send> + Send>;

/// Most writes one commit carries.
const MAX_BATCH: usize = 64;

/// WAL size (in frames, 4 KiB pages by default) past which the checkpointer restarts the log.
const WAL_RESTART_FRAMES: i64 = 16384;

/// Size past which the WAL file is trimmed when the log restarts (`journal_size_limit`), well
/// above what it reaches between restarts (about 70–100 MB): the file is then reused from its
/// start instead of being cut back and grown again at every restart. Cutting it to 64 MB each
/// time made the writer free and re-allocate its blocks, and on a filesystem mounted with
/// `discard` the freeing is a synchronous TRIM: writes stalled 100–800 ms every few seconds
/// under load. Only a file a one-off huge transaction grew past this is trimmed.
const WAL_SIZE_LIMIT: i64 = 256 * 1024 * 1024;

/// Longest a WAL restart holds writes back while waiting for readers of the old log.
const RESTART_WAIT_MS: u64 = 100;

#[derive(diesel::QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    busy: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

/// Copies committed WAL frames into the database file a few times a second, off the write
/// path (PASSIVE: never blocks the writer or readers). Ends when the writer does.
///
/// A passive checkpoint alone never lets the log start over while writes keep coming (every
/// commit appends past what was copied), so under sustained writes the WAL file would grow
/// without bound (1.6 GB after minutes of SCIM creates). Past [`WAL_RESTART_FRAMES`] it holds
/// the writer lock between two commits for a RESTART checkpoint, which copies what the
/// passive one has not (a few milliseconds of commits) and waits for readers of the old log,
/// so the next commit writes the log from the start of the file (see [`WAL_SIZE_LIMIT`]).
/// The writer waits only for that short step, never for the bulk of the copying or its sync;
/// a reader that outlasts [`RESTART_WAIT_MS`] makes it give up and try again 5 s later.
fn checkpoint_loop(db: Db, alive: std::sync::Weak<()>) {
    let mut conn: Option<DbConn> = None;
    // After a RESTART that had to give up on a long reader, wait before holding writes again.
    let mut next_restart = std::time::Instant::now();
    while alive.upgrade().is_some() {
        std::thread::sleep(Duration::from_millis(250));
        if conn.is_none() {
            conn = db.opener.open().ok();
            if let Some(c) = conn.as_mut() {
                // Only RESTART waits on this (PASSIVE never does): how long writes may be held
                // while readers of the old log finish. A longer read wins and the restart
                // is tried again later.
                let _ = c.batch_execute(&format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}"));
            }
        }
        let Some(DbConn::Sqlite(c)) = conn.as_mut() else {
            continue;
        };
        let passive =
            diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result::<Checkpointed>(c);
        let restart = match passive {
            Ok(done)
                if done.log >= WAL_RESTART_FRAMES && std::time::Instant::now() >= next_restart =>
            {
                let _writer = SQLITE_WRITER.try_lock_for(Duration::from_secs(5));
                let restarted = diesel::sql_query("PRAGMA wal_checkpoint(RESTART)")
                    .get_result::<Checkpointed>(c);
                if matches!(&restarted, Ok(r) if r.busy != 0) {
                    next_restart = std::time::Instant::now() + Duration::from_secs(5);
                }
                restarted.map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = restart {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            conn = None;
        }
    }
}

/// The group-commit loop (SQLite). Takes whatever writes are queued (up to [`MAX_BATCH`]),
/// runs each in its own savepoint inside one `BEGIN IMMEDIATE … COMMIT`, and only then
/// answers them: a caller is never told about a write that did not commit. A failed commit
/// answers every write of the batch with an error (nothing of it was written). One connection
/// does all the writing, so its page cache stays valid between transactions.
fn writer_loop(db: Db, rx: std::sync::mpsc::Receiver<WriteJob>) {
    let alive = Arc::new(());
    {
        let (db, alive) = (db.clone(), Arc::downgrade(&alive));
        let _ = std::thread::Builder::new()
            .name("gatehouse-checkpoint".into())
            .spawn(move || checkpoint_loop(db, alive));
    }
    let mut conn: Option<DbConn> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            conn = db.opener.open().ok();
            if let Some(c) = conn.as_mut() {
                // Checkpoints run on their own thread (see `checkpoint_loop`), never inside
                // a commit that writes are waiting for. The savepoints of a batch keep their
                // undo pages in memory: past 64 KiB SQLite otherwise spills them to a
                // temporary file created and deleted by every busy batch (a third of the
                // writer's time in file system calls under a burst of creates).
                let _ =
                    c.batch_execute("PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY");
            }
        }
        let Some(c) = conn.as_mut() else {
            // No connection of its own: each write commits alone on a pooled connection (a
            // write that gets none is dropped, and its caller answered with an error).
            for job in jobs {
                if let Ok(mut c) = db.conn() {
                    job(&mut c)(true);
                }
            }
            continue;
        };
        let mut writer_lock = SQLITE_WRITER.try_lock_for(Duration::from_secs(5));
        let batched = match c {
            DbConn::Sqlite(sqlite) => {
                AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE").is_ok()
            }
            DbConn::Pg(_) => false,
        };
        if !batched {
            // Each write then opens (and locks for) its own transaction.
            writer_lock = None;
        }
        let mut deliveries = Vec::with_capacity(jobs.len());
        for job in jobs {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut *c)));
            match ran {
                Ok(deliver) => deliveries.push(deliver),
                Err(_) => tracing::error!("a database write panicked; its caller gets an error"),
            }
        }
        let committed =
            !batched || <DbConn as Connection>::TransactionManager::commit_transaction(c).is_ok();
        if !committed {
            tracing::error!("group commit failed: the batch's writes are answered with an error");
            let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(c);
        }
        drop(writer_lock);
        if <DbConn as Connection>::TransactionManager::is_broken_transaction_manager(c) {
            conn = None;
        }
        for deliver in deliveries {
            deliver(committed);
        }
    }
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
        let opener = Arc::new(Manager::new(settings)?);
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
            // A SQLite connection is a file handle: it cannot go stale, so no `SELECT 1` on
            // every check-out (a PostgreSQL one can, after a server restart).
            .test_on_check_out(backend == Backend::Postgres)
            .connection_timeout(Duration::from_secs(settings.db_connect_timeout_secs))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(Db {
            pool,
            backend,
            last_error,
            writer: Arc::new(std::sync::OnceLock::new()),
            opener,
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

    /// Runs a short read (a lookup by a unique key: one index probe) on the calling async
    /// worker when a pooled connection is free at once, saving [`Db::run`]'s two thread
    /// switches, which cost more than the lookup itself; otherwise like `run`. Only for work
    /// whose cost is bounded: it holds the worker's other requests while it runs. SQLite only
    /// (a PostgreSQL round trip waits on the network).
    pub async fn run_short<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let conn = match self.backend {
            Backend::Sqlite => self.pool.try_get(),
            Backend::Postgres => None,
        };
        match conn {
            // A panic answers this request with an error, as on `run`'s thread, instead of
            // taking the worker and its other connections down.
            Some(mut conn) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn)))
                    .unwrap_or_else(|_| {
                        Err(E::from(DbError::Task("a database read panicked".into())))
                    })
            }
            None => self.run(f).await,
        }
    }

    /// Runs `f` in a write transaction off the async workers. On SQLite, writes queue for one
    /// writer thread that commits them in groups (see [`writer_loop`]): each still succeeds or
    /// fails on its own, and its result arrives only after its commit. On PostgreSQL each write
    /// is its own transaction on a pooled connection.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        self.queue_write(f, true).await
    }

    /// [`Db::write`] for a write whose only change is its last statement (e.g. recording an
    /// audit event: reads, then one INSERT): a failure leaves nothing behind, so in a group
    /// commit it needs no savepoint of its own (two statements SQLite parses on every use:
    /// as much writer time as the event's INSERT).
    pub async fn write_single<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        self.queue_write(f, false).await
    }

    async fn queue_write<T, E, F>(&self, f: F, savepoint: bool) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<diesel::result::Error> + Send + 'static,
    {
        let sender = match self.backend {
            Backend::Postgres => None,
            Backend::Sqlite => self
                .writer
                .get_or_init(|| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<WriteJob>(1024);
                    let db = self.clone();
                    std::thread::Builder::new()
                        .name("gatehouse-writer".into())
                        .spawn(move || writer_loop(db, rx))
                        .ok()
                        .map(|_| tx)
                })
                .clone(),
        };
        let Some(sender) = sender else {
            return self.run(move |conn| write_tx(conn, f)).await;
        };
        let (done, result) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let span = tracing::Span::current();
        let job: WriteJob = Box::new(move |conn: &mut DbConn| {
            let outcome = {
                let _entered = span.enter();
                // Without a savepoint only inside the batch's open transaction (a failed BEGIN
                // makes the batch run unbatched: then this is a transaction of its own).
                if !savepoint && in_transaction(conn) {
                    f(conn)
                } else {
                    write_tx(conn, f)
                }
            };
            Box::new(move |committed: bool| {
                let outcome = match outcome {
                    Ok(_) if !committed => Err(E::from(DbError::Unavailable(
                        "the write could not be committed; retry".into(),
                    ))),
                    other => other,
                };
                let _ = done.send(outcome);
            })
        });
        // The queue is bounded: when it is full, wait for room off the async workers.
        let queued = match sender.try_send(job) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || sender.send(job).is_ok())
                    .await
                    .unwrap_or(false)
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        };
        if !queued {
            return Err(E::from(DbError::Unavailable(
                "the writer thread stopped".into(),
            )));
        }
        result
            .await
            .map_err(|_| E::from(DbError::Task("the write was dropped".into())))?
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
        let result = result.and_then(|applied| {
            install_user_counts(conn)?;
            Ok(applied)
        });
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
const SQLITE_USER_COUNT_TRIGGERS: &str = "
DROP TRIGGER IF EXISTS users_count_insert;
DROP TRIGGER IF EXISTS users_count_delete;
DROP TRIGGER IF EXISTS users_count_update;
CREATE TRIGGER users_count_insert AFTER INSERT ON users
WHEN NEW.is_break_glass = FALSE BEGIN
    INSERT INTO scim_user_counts (org_id, n, generation) VALUES (NEW.org_id, 1, 0)
    ON CONFLICT (org_id) DO UPDATE SET n = n + 1,
        generation = generation + EXISTS (
            SELECT 1 FROM users u
            WHERE u.org_id = NEW.org_id AND u.is_break_glass = FALSE
              AND (u.created_at, u.id) > (NEW.created_at, NEW.id));
END;
CREATE TRIGGER users_count_delete AFTER DELETE ON users
WHEN OLD.is_break_glass = FALSE BEGIN
    UPDATE scim_user_counts SET n = n - 1, generation = generation + 1
        WHERE org_id = OLD.org_id;
END;
CREATE TRIGGER users_count_update AFTER UPDATE OF is_break_glass, org_id ON users
BEGIN
    UPDATE scim_user_counts SET n = n - 1, generation = generation + 1
        WHERE org_id = OLD.org_id AND OLD.is_break_glass = FALSE;
    INSERT INTO scim_user_counts (org_id, n, generation) SELECT NEW.org_id, 1, 0
        WHERE NEW.is_break_glass = FALSE
    ON CONFLICT (org_id) DO UPDATE SET n = n + 1, generation = generation + 1;
END;";

/// PostgreSQL bumps `generation` on every change, appends included: its concurrent writers
/// cannot see each other's uncommitted rows, so "this insert sorts last" is not knowable here.
const PG_USER_COUNT_TRIGGERS: &str = "
CREATE OR REPLACE FUNCTION scim_user_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND NOT OLD.is_break_glass THEN
        UPDATE scim_user_counts SET n = n - 1, generation = generation + 1
            WHERE org_id = OLD.org_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT NEW.is_break_glass THEN
        INSERT INTO scim_user_counts (org_id, n, generation) VALUES (NEW.org_id, 1, 0)
        ON CONFLICT (org_id) DO UPDATE SET n = scim_user_counts.n + 1,
            generation = scim_user_counts.generation + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER users_count
    AFTER INSERT OR DELETE OR UPDATE OF is_break_glass, org_id ON users
    FOR EACH ROW EXECUTE FUNCTION scim_user_count();";

/// Installs the triggers that keep `scim_user_counts` exact (their syntax differs between the
/// two backends, so they live here rather than in a migration) and recounts, in one
/// transaction: whatever happened before, the counts are exact from here on.
fn install_user_counts(conn: &mut DbConn) -> Result<(), DbError> {
    write_tx(conn, |conn| -> Result<(), DbError> {
        let triggers = match conn {
            DbConn::Sqlite(_) => SQLITE_USER_COUNT_TRIGGERS,
            DbConn::Pg(_) => PG_USER_COUNT_TRIGGERS,
        };
        conn.batch_execute(triggers)?;
        // The recount moves every generation forward (never back to a value another replica
        // may still hold anchors for).
        conn.batch_execute(
            "UPDATE scim_user_counts SET generation = generation + 1, n = (\
                 SELECT COUNT(*) FROM users u \
                 WHERE u.org_id = scim_user_counts.org_id AND u.is_break_glass = FALSE); \
             INSERT INTO scim_user_counts (org_id, n, generation) \
             SELECT org_id, COUNT(*), 0 FROM users \
             WHERE is_break_glass = FALSE \
               AND org_id NOT IN (SELECT org_id FROM scim_user_counts) \
             GROUP BY org_id;",
        )?;
        Ok(())
    })
}

static SQLITE_WRITER: parking_lot::Mutex<()> = parking_lot::const_mutex(());

/// Whether `conn` has a transaction open (when its state cannot be read, no: `write_tx` then
/// reports the error).
fn in_transaction(conn: &mut DbConn) -> bool {
    <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .is_ok_and(|depth| depth.is_some())
}

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
            // One writer at a time inside this process: waiting here costs nothing, while
            // waiting in SQLite's busy handler sleeps in steps of up to 100 ms. Bounded, so a
            // writer that somehow holds it too long only slows others down to the old path.
            let _writer = SQLITE_WRITER.try_lock_for(std::time::Duration::from_secs(5));
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
