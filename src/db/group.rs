//! SQLite group commit: concurrent logical writes share one `COMMIT` (one fsync), each in its own savepoint.
//!
//! SQLite's cost per durable write is the sync of its WAL at `COMMIT`, not the statements. One
//! writer connection therefore keeps a *batch* transaction open: each logical write
//! ([`GroupTx`], from [`GroupCommit::begin`]) takes the connection, opens a `SAVEPOINT`, runs its
//! statements and on [`GroupTx::commit`] releases the savepoint, hands the connection on and waits
//! until the batch is durable. A write dropped without `commit` (an error, a panic, a cancelled
//! request) is rolled back to its savepoint alone; the others in the batch are untouched.
//!
//! The `COMMIT` itself is always issued by the flusher task, never by a request: a request that
//! is cancelled while its future is suspended must not leave a `COMMIT` half-done, and the flusher
//! cannot be cancelled. Whenever a write releases its savepoint it wakes the flusher, which then
//! queues for the connection. The connection's lock is fair (first come, first served), so the
//! flusher runs after every write that was already waiting: under load, all of them share its one
//! `COMMIT`; unloaded, a write is committed alone right after it finishes. Nobody is answered
//! before the `COMMIT` that holds its write has returned, and `synchronous=FULL` still applies.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use prometheus_client::metrics::counter::Counter;
use sqlx::SqliteConnection;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

use super::DbError;

/// Writes that may share one batch before a new writer commits it first. The HTTP layer's
/// concurrency bounds the writers anyway; this keeps one batch (and its savepoint depth of work
/// waiting on one fsync) bounded even if it did not.
const MAX_BATCH_WRITES: usize = 512;
/// How often a write steps back behind the flusher while the batch is full before giving up.
const FULL_BATCH_RETRIES: usize = 10_000;

/// The savepoint each logical write runs in. Writes take the connection one at a time, so one
/// name is enough: there is never more than one open.
const SAVEPOINT: &str = "SAVEPOINT perks_write";
const RELEASE: &str = "RELEASE SAVEPOINT perks_write";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT perks_write";

/// The one writer connection and the batch open on it.
pub struct GroupCommit {
    state: Arc<Mutex<BatchState>>,
    flush: Arc<Notify>,
    counts: Arc<GroupCounts>,
}

/// How much sharing happened: durable commits and the logical writes they carried (exported as
/// metrics; the counters are shared handles).
#[derive(Clone, Debug, Default)]
pub struct GroupCounts {
    pub commits: Counter,
    pub writes: Counter,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Lets the flusher notice that nobody can write any more, and stop.
        self.flush.notify_one();
    }
}

/// What the connection's lock guards.
struct BatchState {
    conn: SqliteConnection,
    /// A batch transaction (`BEGIN IMMEDIATE`) is open on `conn`.
    in_batch: bool,
    /// Writes whose savepoints were released into the open batch, waiting for its `COMMIT`.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    /// A write was dropped while its savepoint was open; it must be rolled back before the
    /// connection runs anything else.
    rollback_pending: bool,
    counts: Arc<GroupCounts>,
}

impl GroupCommit {
    /// Wraps the writer connection and starts the flusher task (which ends when the last handle
    /// to this value is dropped).
    pub fn start(conn: SqliteConnection) -> Arc<Self> {
        let counts = Arc::new(GroupCounts::default());
        let group = Arc::new(GroupCommit {
            state: Arc::new(Mutex::new(BatchState {
                conn,
                in_batch: false,
                waiting: Vec::new(),
                rollback_pending: false,
                counts: counts.clone(),
            })),
            flush: Arc::new(Notify::new()),
            counts,
        });
        tokio::spawn(flusher(Arc::downgrade(&group), group.flush.clone()));
        group
    }

    /// The shared counters of commits made and the writes they carried.
    pub fn counters(&self) -> &GroupCounts {
        &self.counts
    }

    /// Commits made and writes they carried so far (for benchmarks and tests).
    pub fn counts(&self) -> (u64, u64) {
        (self.counts.commits.get(), self.counts.writes.get())
    }

    /// Starts a logical write: waits for the connection, opens the batch if none is open, and
    /// opens this write's savepoint.
    pub async fn begin(self: &Arc<Self>) -> Result<GroupTx, DbError> {
        let mut guard = self.state.clone().lock_owned().await;
        let mut attempts = 0;
        while guard.waiting.len() >= MAX_BATCH_WRITES {
            // A full batch is the flusher's to commit: it has been woken and is queued for the
            // connection, so stepping back into the queue puts this write behind its commit.
            attempts += 1;
            if attempts > FULL_BATCH_RETRIES {
                return Err(DbError::GroupCommit("the write batch stayed full".into()));
            }
            drop(guard);
            self.flush.notify_one();
            tokio::task::yield_now().await;
            guard = self.state.clone().lock_owned().await;
        }
        // A write dropped before this one is undone first. If this call is cancelled meanwhile,
        // the rollback still runs to its end on the connection's worker, and the flag is clear.
        settle_rollback(&mut guard).await;
        if !guard.in_batch {
            run(&mut guard.conn, "BEGIN IMMEDIATE").await?;
            guard.in_batch = true;
        }
        // From here on, dropping the write rolls it back alone.
        let mut tx = GroupTx { group: self.clone(), guard, stage: Stage::Open };
        run(&mut tx.guard.conn, SAVEPOINT).await?;
        Ok(tx)
    }
}

/// Where a logical write is in its life; decides what dropping it means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The savepoint may be open: dropping the write rolls it back.
    Open,
    /// The savepoint was released into the batch: the write stays, whatever happens to the
    /// caller.
    Released,
}

/// One logical write on the shared SQLite writer; see the module doc.
pub struct GroupTx {
    group: Arc<GroupCommit>,
    guard: OwnedMutexGuard<BatchState>,
    stage: Stage,
}

impl GroupTx {
    /// The writer connection, for the statements of this write.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.guard.conn
    }

    /// Keeps this write: releases its savepoint into the batch, hands the connection on, and
    /// returns once the batch's `COMMIT` has made it durable (or with the error that stopped it).
    pub async fn commit(mut self) -> Result<(), DbError> {
        run(&mut self.guard.conn, RELEASE).await?;
        let (done, durable) = oneshot::channel();
        self.guard.waiting.push(done);
        self.stage = Stage::Released;
        let flush = self.group.flush.clone();
        drop(self);
        flush.notify_one();
        match durable.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(DbError::GroupCommit(message)),
            Err(_) => Err(DbError::GroupCommit("the writer stopped before the commit".into())),
        }
    }
}

impl Drop for GroupTx {
    fn drop(&mut self) {
        if self.stage == Stage::Open {
            // The next holder of the connection rolls this write back before anything else;
            // the flusher is woken in case nobody else is coming.
            self.guard.rollback_pending = true;
            self.group.flush.notify_one();
        }
    }
}

/// Runs fixed SQL on the writer connection. The boxed, explicitly `Send` future keeps the
/// compiler's `Send` inference for the callers (request handlers) away from sqlx's
/// higher-ranked executor lifetimes, which it cannot prove through a mutex guard.
fn run<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
    Box::pin(async move { sqlx::query(sql).execute(&mut *conn).await.map(|_| ()) })
}

/// Commits whatever the batch holds each time a write asks for it, until the group is gone.
async fn flusher(group: Weak<GroupCommit>, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        let Some(group) = group.upgrade() else { return };
        let mut guard = group.state.clone().lock_owned().await;
        drop(group);
        finish_batch(&mut guard).await;
    }
}

/// Rolls back a dropped write's savepoint; if that is impossible, the whole batch.
async fn settle_rollback(state: &mut BatchState) {
    if !state.rollback_pending {
        return;
    }
    state.rollback_pending = false;
    // Rolling back to a savepoint leaves it open: it is released too.
    let mut undone = run(&mut state.conn, ROLLBACK_TO).await;
    if undone.is_ok() {
        undone = run(&mut state.conn, RELEASE).await;
    }
    if let Err(e) = undone {
        // The savepoint is gone (the failure that dropped the write may have ended the whole
        // transaction): nothing in this batch can be trusted to commit.
        abort_batch(state, &format!("a failed write could not be rolled back alone: {e}")).await;
    }
}

/// Ends the open batch: `COMMIT` when writes are waiting for it, else `ROLLBACK` (there is
/// nothing to keep), and tells each waiting write the outcome.
async fn finish_batch(state: &mut BatchState) {
    settle_rollback(state).await;
    if !state.in_batch {
        return;
    }
    if state.waiting.is_empty() {
        abort_batch(state, "empty batch").await;
        return;
    }
    match run(&mut state.conn, "COMMIT").await {
        Ok(_) => {
            state.in_batch = false;
            state.counts.commits.inc();
            state.counts.writes.inc_by(state.waiting.len() as u64);
            for done in state.waiting.drain(..) {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) => abort_batch(state, &format!("commit failed: {e}")).await,
    }
}

/// Rolls the whole batch back and fails every write waiting for it.
async fn abort_batch(state: &mut BatchState, why: &str) {
    // After some failures SQLite has already ended the transaction itself; the ROLLBACK then
    // fails harmlessly and is only logged.
    if state.in_batch
        && let Err(e) = run(&mut state.conn, "ROLLBACK").await
    {
        tracing::warn!(error = %e, "rolling back a write batch failed");
    }
    state.in_batch = false;
    for done in state.waiting.drain(..) {
        let _ = done.send(Err(why.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection};

    use super::*;

    async fn open(dir: &tempfile::TempDir) -> (Arc<GroupCommit>, SqliteConnectOptions) {
        let path = dir.path().join("group.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let mut setup = options.connect().await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut setup)
            .await
            .unwrap();
        setup.close().await.unwrap();
        (GroupCommit::start(options.connect().await.unwrap()), options)
    }

    async fn insert(tx: &mut GroupTx, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')").bind(id).execute(tx.conn()).await?;
        Ok(())
    }

    async fn ids(options: &SqliteConnectOptions) -> Vec<i64> {
        let mut reader = options.connect().await.unwrap();
        sqlx::query_scalar("SELECT id FROM t ORDER BY id").fetch_all(&mut reader).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_a_failed_one_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (group, options) = open(&dir).await;
        let mut tasks = Vec::new();
        for id in 0..200_i64 {
            let group = group.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = group.begin().await.unwrap();
                insert(&mut tx, id).await.unwrap();
                if id % 10 == 3 {
                    // A write that fails after writing: dropped without commit.
                    return false;
                }
                if id % 10 == 7 {
                    // A write whose statement fails (duplicate key) and which gives up.
                    assert!(insert(&mut tx, id).await.is_err());
                    return false;
                }
                tx.commit().await.unwrap();
                true
            }));
        }
        let mut kept = Vec::new();
        for (id, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap() {
                kept.push(id as i64);
            }
        }
        assert_eq!(ids(&options).await, kept, "every committed write is durable, no other one");
        let (commits, writes) = group.counts();
        assert_eq!(writes, kept.len() as u64);
        assert!(commits < writes, "200 concurrent writes should share commits: {commits} commits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_write_is_committed_without_waiting_for_company() {
        let dir = tempfile::tempdir().unwrap();
        let (group, options) = open(&dir).await;
        let mut tx = group.begin().await.unwrap();
        insert(&mut tx, 1).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), tx.commit()).await.unwrap().unwrap();
        assert_eq!(ids(&options).await, vec![1]);
        // A dropped write with nobody after it is rolled back and the connection stays usable.
        let mut tx = group.begin().await.unwrap();
        insert(&mut tx, 2).await.unwrap();
        drop(tx);
        let mut tx = group.begin().await.unwrap();
        insert(&mut tx, 3).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ids(&options).await, vec![1, 3]);
        assert_eq!(group.counts(), (2, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_write_leaves_the_others_intact() {
        let dir = tempfile::tempdir().unwrap();
        let (group, options) = open(&dir).await;
        let slow = {
            let group = group.clone();
            tokio::spawn(async move {
                let mut tx = group.begin().await.unwrap();
                insert(&mut tx, 1).await.unwrap();
                tokio::time::sleep(Duration::from_secs(60)).await;
                tx.commit().await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = {
            let group = group.clone();
            tokio::spawn(async move {
                let mut tx = group.begin().await.unwrap();
                insert(&mut tx, 2).await.unwrap();
                tx.commit().await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        slow.abort();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(ids(&options).await, vec![2]);
    }
}
