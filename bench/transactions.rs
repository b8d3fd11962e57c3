//! W1, adding transactions: `POST /v2/transactions` through the whole HTTP stack, against the raw
//! limits of the same machine measured in the same run, with their ratios.
//!
//! Run: `cargo bench --bench transactions` (SQLite in a temp dir, opened exactly as the server
//! opens it: WAL, `synchronous=FULL`, `busy_timeout`, one writer connection, `BEGIN IMMEDIATE`), or
//! with `PERKS_BENCH_DATABASE_URL=postgres://…/fresh_empty_db`. Results go to
//! `bench/results/transactions-<backend>.json` and `.md`; the table is printed too.
//!
//! # What each number means
//!
//! Every latency is wall-clock time in milliseconds, reported as p50 / p99 / p99.9 (nearest rank
//! over all samples of the phase); every rate is completed operations divided by the phase's
//! wall-clock seconds.
//!
//! 1. **`fsync`** — a 4 KiB `write` at a rotating offset of a preallocated 1 MiB file in the
//!    database's directory (the temp dir; for PostgreSQL the same temp dir, on whatever file
//!    system it is, since the server's data directory is not ours to write), followed by
//!    `fsync(2)` (`File::sync_all`); `fdatasync` is the same with `File::sync_data`. `impliedCommitsPerSecond`
//!    is `1000 / p50`: the most durable commits one writer can make per second if each commit
//!    costs one sync. The bundled SQLite is built without `HAVE_FDATASYNC`, so its WAL commit
//!    calls `fsync`; PostgreSQL's `wal_sync_method` is printed with the results. `fsyncAtEnd`
//!    is the fsync probe again after every other phase: on a virtual disk shared with other work
//!    the sync latency can change within a run, and the two bracket it.
//! 2. **`raw`** — the rows one earn writes, written with plain SQL through the crate's own `Db`
//!    (same schema from the crate's migrations, same pragmas, same single writer): per bill a
//!    `transactions` row, a `point_lots` row, a `ledger_entries` row (AWARD), a
//!    `ledger_lot_movements` row plus the lot's `remaining` update, the `loyalty_accounts` balance
//!    UPDATE (current and lifetime, so that the ledger still verifies), and a complete
//!    `idempotency_keys` row (7 statements). `perCommit` is one database transaction per bill
//!    from one task; `perCommitConcurrent` is the same from `PERKS_BENCH_CONCURRENCY` tasks
//!    (on SQLite they queue for the one writer; on PostgreSQL they use the pool, whose commits
//!    the server can group in one WAL flush); `batch10` / `batch100` / `batch1000` put that many
//!    bills in one transaction. `billsPerSecond` counts bills; `commitMillis` is the time of one
//!    whole database transaction (begin to commit). Not written here but written by W1: the two
//!    `domain_events` rows, the `audit_log` row, the evaluation and purchase UPDATEs, and the
//!    reads the engine does.
//! 3. **`httpCeiling`** — a router built in this file (not the app's) with one
//!    `POST /v2/transactions` handler that extracts the query and the JSON body and returns the
//!    parsed body as JSON; no middleware, no database. Closed loop at concurrency 1 and
//!    `PERKS_BENCH_CONCURRENCY`. It is the cost of axum routing + JSON parse/render alone.
//! 4. **`w1`** — `POST /v2/transactions?identifierName=mobile&identifierValue=…&source=INSTORE`
//!    with a 1,234.50 REGULAR bill (no line items), a unique bill number, an `Idempotency-Key`,
//!    till Basic auth, for a customer drawn at random from a pool of `PERKS_BENCH_CUSTOMERS`
//!    customers registered through `POST /v2/customers`; the org's starter program (one tier,
//!    10% of the bill as points, 365-day expiry). The request goes through the app's whole
//!    router (`perks::app::router`: request id, trace, auth, rate-limit layer (disabled),
//!    idempotency, envelopes, handler, service, commit) with `tower::ServiceExt::oneshot`; there
//!    is no socket and no hyper connection handling. Latency is from just before `oneshot` to the
//!    last byte of the body. `closedC1` / `closedCN`: 1 or `PERKS_BENCH_CONCURRENCY` tasks, each
//!    sending its next request when the previous one is answered, for `PERKS_BENCH_SECONDS`; on
//!    PostgreSQL the app's pool has its default 16 connections. `noIdempotencyKeyCN` (diagnostic
//!    only, not used in the ratios): the same as `closedCN` without the header.
//!    `open…`: requests started on a fixed schedule at the given share of the closed-loop maximum
//!    regardless of completions (a tokio task per request); `latencyMillis` runs from the
//!    *scheduled* start (so queueing, and any lateness of the generator, shows), `serviceMillis`
//!    from the actual start; `maxGeneratorLagMillis` says how late the generator itself ran
//!    (tokio timers have 1 ms resolution, so sub-millisecond intervals start in small bursts).
//!    A request is *dropped* (counted, not sent) when more than `PERKS_BENCH_MAX_IN_FLIGHT`
//!    are in flight. An *error* is any status but 200. `pointLots` is the number of lots in the
//!    whole database at the start and the end of the phase (see "Order" for why it matters).
//!    `closedCNAfterRaw` (diagnostic only): `closedCN` again for half the time, after the raw
//!    phases have added their lots, with `pointLotsInDatabase` saying how many there were; it
//!    shows how W1 depends on the size of `point_lots` (see "Order" below).
//! 5. **`ratios`** — `w1MaxBillsPerSecond` = the better of `closedC1` and `closedCN`;
//!    `w1MaxToRawPerCommit` = that / `raw.perCommit`; `w1MaxToRawPerCommitConcurrent` = that /
//!    `raw.perCommitConcurrent` (the fairer one on PostgreSQL, where concurrency helps both);
//!    `w1MaxToRawBatch100` = that / `raw.batch100` (a later issue's group-commit target is ≥ 0.5,
//!    `groupCommitTargetToRawBatch100`); `w1P50C1ToFsyncP50` = W1 p50 at concurrency 1 / fsync
//!    p50 (how many syncs' worth of time one unloaded bill takes); `w1MaxToHttpCeilingCN` = the
//!    best W1 rate / the HTTP ceiling at concurrency `PERKS_BENCH_CONCURRENCY`.
//!
//! `statementCensus`: for `PERKS_BENCH_CENSUS_BILLS` (100) W1 bills at concurrency 1 right after
//! the warm-up, and as many raw bills one per commit, the SQL statements sqlx ran, counted from
//! its `sqlx::query` tracing events (a tracing layer in this file, switched on only then):
//! `statementsPerBill` excludes BEGIN/COMMIT/ROLLBACK/SAVEPOINT; `perBill` is by verb and table;
//! `sqlMillisPerBill` sums sqlx's own timing of each statement (on SQLite measured on the
//! connection's worker thread, so it leaves out the hand-offs to and from it; on PostgreSQL it
//! includes the round trip); `commitsPerBillIfVisible` counts COMMITs, which only PostgreSQL's
//! driver logs (SQLite's `BEGIN IMMEDIATE`/`COMMIT` bypass the logger).
//!
//! Each raw, ceiling and W1 phase also has `cpu`: `processCores` is this process's CPU seconds
//! (user + system, from `/proc/self/stat`) over the phase's wall seconds (2.0 = two whole cores);
//! `processCpuMillisPerItem` is the same CPU time per bill or request; `machineBusyShare` is the
//! share of all the machine's cores that were busy during the phase (`/proc/stat`), which
//! includes the PostgreSQL server's processes and anything else running on the machine.
//!
//! # Order
//!
//! fsync → customer registration → HTTP ceiling → W1 warm-up (`PERKS_BENCH_WARMUP` bills) → W1
//! statement census → W1 closed loops → W1 open loops → W1 without key → raw statement census →
//! raw phases → W1 after raw → fsync again.
//!
//! The raw phases come after the main W1 phases on purpose. They write tens of thousands of
//! lots, and every bill's `expire_customer` looks for the customer's due lots with a query
//! (`points::store::lots_due`, written `($1 < 0 OR org_id = $1) AND ($2 < 0 OR customer_id =
//! $2)` so that the expiry job can share it) that SQLite cannot answer from an index: it scans
//! the whole of `point_lots`, inside the write transaction. PostgreSQL plans each execution with
//! the values and uses `point_lots_customer`. On SQLite, W1 measured after the raw phases would
//! mostly measure that scan; `closedCNAfterRaw` shows how much. Even so, W1's own bills add one
//! lot each, so on SQLite every W1 phase runs a little slower than the one before it
//! (`pointLots` of each phase).
//!
//! At the end the ledger is verified (`perks::points::ledger::verify`: every balance equals its
//! entries, every lot its movements) and the stored W1 bills are counted against the 200s.
//!
//! The load generator and the server share one process and one tokio runtime (one worker
//! thread per core); nothing is pinned to a core, so the generator's CPU time is taken from the
//! server's. Background jobs (webhook delivery, expiry) do not run: only the router is built.
//!
//! Sizes: `PERKS_BENCH_SECONDS` (10: each W1 phase), `PERKS_BENCH_RAW_SECONDS` (3: each raw
//! and HTTP-ceiling phase), `PERKS_BENCH_BILLS` (100,000: most bills in any one phase),
//! `PERKS_BENCH_CUSTOMERS` (1,000), `PERKS_BENCH_CONCURRENCY` (16), `PERKS_BENCH_OPEN_LOADS`
//! (`0.5,0.7`), `PERKS_BENCH_FSYNC_SAMPLES` (2,000), `PERKS_BENCH_WARMUP` (200 bills),
//! `PERKS_BENCH_MAX_IN_FLIGHT` (5,000), `PERKS_BENCH_CENSUS_BILLS` (100).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Query;
use axum::http::Request;
use axum::routing::post;
use axum::{Json, Router};
use perks::app::{AppState, router};
use perks::config::{DatabaseUrl, Settings};
use perks::db::{Backend, Db, Tx};
use perks::org::model::{NewOrg, OrgId};
use perks::org::service::provision_org;
use serde_json::{Value, json};

use common::{
    Cpu, Lcg, MakeRequest, closed_loop, cpu_model, env_f64, env_usize, file_system, latency_json,
    open_loop, percentile, round1, round3, sync_probe, through_router,
};

const DAY_MS: i64 = 86_400_000;
/// The duration of a phase bounded by its request count instead (registration, warm-up).
const UNBOUNDED_SECONDS: f64 = 86_400.0;
/// The bill of every W1 request: 1,234.50, so 123.45 points under the starter program.
const BILL_AMOUNT: f64 = 1234.5;
/// The same amount and its points in the store's ten-thousandths, for the raw rows.
const BILL_FIXED: i64 = 12_345_000;
const POINTS_FIXED: i64 = 1_234_500;

// ---------------------------------------------------------------- statement census

/// Counts the SQL statements sqlx runs while switched on, from its `sqlx::query` tracing events
/// (one per statement; SQLite's `BEGIN`/`COMMIT` go around them and are not seen, PostgreSQL's
/// are). Off, it costs one atomic load per statement; every other callsite stays disabled.
mod census {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, Layer};

    static ON: AtomicBool = AtomicBool::new(false);
    /// `VERB table` → (statements, seconds inside sqlx's timing of them).
    static SEEN: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

    pub struct Census;

    impl<S: Subscriber> Layer<S> for Census {
        fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
            if metadata.target() == "sqlx::query" {
                Interest::sometimes()
            } else {
                Interest::never()
            }
        }

        fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
            metadata.target() == "sqlx::query" && ON.load(Ordering::Relaxed)
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let sql = if fields.statement.trim().is_empty() {
                &fields.summary
            } else {
                &fields.statement
            };
            let mut seen = SEEN.lock().unwrap();
            let entry = seen.entry(key(sql)).or_default();
            entry.0 += 1;
            entry.1 += fields.elapsed;
        }
    }

    #[derive(Default)]
    struct Fields {
        summary: String,
        statement: String,
        elapsed: f64,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "summary" => self.summary = value.to_string(),
                "db.statement" => self.statement = value.to_string(),
                _ => {}
            }
        }

        fn record_f64(&mut self, field: &Field, value: f64) {
            if field.name() == "elapsed_secs" {
                self.elapsed = value;
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "summary" if self.summary.is_empty() => self.summary = format!("{value:?}"),
                "db.statement" if self.statement.is_empty() => {
                    self.statement = format!("{value:?}")
                }
                _ => {}
            }
        }
    }

    /// `INSERT transactions`, `SELECT point_lots`, `UPDATE loyalty_accounts`, `COMMIT`, ….
    fn key(sql: &str) -> String {
        let words: Vec<&str> = sql.split_whitespace().collect();
        let verb = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let after = |marker: &str| {
            words
                .iter()
                .position(|w| w.eq_ignore_ascii_case(marker))
                .and_then(|i| words.get(i + 1))
                .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric() && c != '_').to_string())
        };
        let table = match verb.as_str() {
            "INSERT" => after("INTO"),
            "UPDATE" => words.get(1).map(|t| t.to_string()),
            "SELECT" | "DELETE" => after("FROM"),
            "PRAGMA" => words.get(1).map(|t| t.to_string()),
            _ => None,
        };
        match table {
            Some(t) => format!("{verb} {t}"),
            None => verb,
        }
    }

    pub fn install() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Census);
        let _ = tracing::subscriber::set_global_default(subscriber);
    }

    /// Switches counting on (after clearing) or off.
    pub fn switch(on: bool) {
        if on {
            SEEN.lock().unwrap().clear();
        }
        ON.store(on, Ordering::Relaxed);
    }

    /// What was counted, per `items` (bills).
    pub fn report(items: usize) -> serde_json::Value {
        let seen = SEEN.lock().unwrap();
        let per = |n: f64| (n / items.max(1) as f64 * 100.0).round() / 100.0;
        let control = |k: &str| {
            ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"].iter().any(|c| k.starts_with(c))
        };
        let statements: u64 = seen.iter().filter(|(k, _)| !control(k)).map(|(_, v)| v.0).sum();
        let seconds: f64 = seen.iter().filter(|(k, _)| !control(k)).map(|(_, v)| v.1).sum();
        let commits: u64 =
            seen.iter().filter(|(k, _)| k.starts_with("COMMIT")).map(|(_, v)| v.0).sum();
        serde_json::json!({
            "bills": items,
            "statementsPerBill": per(statements as f64),
            "sqlMillisPerBill": per(seconds * 1000.0),
            "commitsPerBillIfVisible": per(commits as f64),
            "perBill": seen.iter().map(|(k, v)| (k.clone(), serde_json::json!(per(v.0 as f64)))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

// ---------------------------------------------------------------- 1. fsync

// ---------------------------------------------------------------- 2. raw rows

/// Ids every raw bill refers to.
#[derive(Clone)]
struct RawIds {
    org: i64,
    store: i64,
    till: i64,
    program: i64,
}

/// The rows of one earn, written with plain SQL inside the caller's transaction.
async fn raw_bill(
    tx: &mut Tx,
    ids: &RawIds,
    customer: i64,
    n: u64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let bill = format!("RAW-{n}");
    let txn: i64 = perks::dispatch!(&mut *tx, |e| sqlx::query_scalar::<_, i64>(
        "INSERT INTO transactions (org_id, customer_id, program_id, store_id, till_id, source, \
         type, bill_number, billing_at, amount, gross_amount, loyalty_status, points, \
         api_version, created_by_till_id, modified_by_till_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'INSTORE', 'REGULAR', $6, $7, $8, $8, 'DONE', $9, 'v2', $5, \
         $5, $7, $7) RETURNING id"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(ids.store)
    .bind(ids.till)
    .bind(&bill)
    .bind(now)
    .bind(BILL_FIXED)
    .bind(POINTS_FIXED)
    .fetch_one(e)
    .await)?;
    let lot: i64 = perks::dispatch!(&mut *tx, |e| sqlx::query_scalar::<_, i64>(
        "INSERT INTO point_lots (org_id, customer_id, program_id, kind, source, rule, \
         transaction_id, awarded, remaining, awarded_at, expires_at, created_at) \
         VALUES ($1, $2, $3, 'REGULAR', 'TRANSACTION', 'base', $4, $5, 0, $6, $7, $6) RETURNING id"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(txn)
    .bind(POINTS_FIXED)
    .bind(now)
    .bind(now + 365 * DAY_MS)
    .fetch_one(e)
    .await)?;
    let entry: i64 = perks::dispatch!(&mut *tx, |e| sqlx::query_scalar::<_, i64>(
        "INSERT INTO ledger_entries (org_id, customer_id, program_id, kind, current_delta, \
         promised_delta, transaction_id, reference, rule, note, till_id, created_at, effective_at) \
         VALUES ($1, $2, $3, 'AWARD', $4, 0, $5, '', 'base', '', $6, $7, $7) RETURNING id"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(POINTS_FIXED)
    .bind(txn)
    .bind(ids.till)
    .bind(now)
    .fetch_one(e)
    .await)?;
    perks::dispatch!(&mut *tx, |e| sqlx::query(
        "INSERT INTO ledger_lot_movements (org_id, entry_id, lot_id, delta) VALUES ($1, $2, $3, $4)"
    )
    .bind(ids.org)
    .bind(entry)
    .bind(lot)
    .bind(POINTS_FIXED)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    perks::dispatch!(&mut *tx, |e| sqlx::query(
        "UPDATE point_lots SET remaining = remaining + $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(ids.org)
    .bind(lot)
    .bind(POINTS_FIXED)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    perks::dispatch!(&mut *tx, |e| sqlx::query(
        "UPDATE loyalty_accounts SET current_points = current_points + $4, \
         lifetime_points = lifetime_points + $4, updated_at = $5 \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(POINTS_FIXED)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let body = format!(
        r#"{{"createdId":{txn},"warnings":[],"sideEffects":[{{"type":"points","awardedPoints":123.45}}]}}"#
    );
    perks::dispatch!(&mut *tx, |e| sqlx::query(
        "INSERT INTO idempotency_keys (org_id, api_key, idempotency_key, request_hash, \
         response_status, content_type, response_body, created_at, expires_at) \
         VALUES ($1, 'TILL:raw', $2, $3, 200, 'application/json', $4, $5, $6)"
    )
    .bind(ids.org)
    .bind(format!("raw-{n}"))
    .bind(format!("{:064x}", n))
    .bind(body.as_bytes())
    .bind(now)
    .bind(now + DAY_MS)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// `tasks` tasks each commit `batch` raw bills per transaction until `seconds` pass or
/// `max_bills` are written; bills/s and the latency of one whole transaction.
async fn raw_phase(
    db: &Db,
    ids: &RawIds,
    customers: &Arc<Vec<i64>>,
    sequence: &Arc<AtomicU64>,
    (tasks, batch): (usize, usize),
    seconds: f64,
    max_bills: usize,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let written = Arc::new(AtomicUsize::new(0));
    let cpu = Cpu::now();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (db, ids, customers, sequence, written) =
            (db.clone(), ids.clone(), customers.clone(), sequence.clone(), written.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Lcg(7 + task as u64);
            let mut commits = Vec::new();
            while Instant::now() < deadline && written.load(Ordering::Relaxed) < max_bills {
                let t = Instant::now();
                let now = perks::db::now_millis();
                let mut tx = db.begin_write().await.unwrap();
                for _ in 0..batch {
                    let customer = customers[(rng.next() as usize) % customers.len()];
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    raw_bill(&mut tx, &ids, customer, n, now).await.unwrap();
                }
                tx.commit().await.unwrap();
                commits.push(t.elapsed());
                written.fetch_add(batch, Ordering::Relaxed);
            }
            commits
        }));
    }
    let mut commits = Vec::new();
    for handle in handles {
        commits.extend(handle.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bills = written.load(Ordering::Relaxed);
    json!({
        "tasks": tasks,
        "billsPerCommit": batch,
        "bills": bills,
        "seconds": round3(elapsed),
        "billsPerSecond": round1(bills as f64 / elapsed),
        "commitMillis": latency_json(&mut commits),
        "cpu": cpu.map_or(Value::Null, |c| c.since(bills)),
    })
}

// ---------------------------------------------------------------- 3 and 4. HTTP

/// The HTTP + JSON ceiling: parse the query and the bill, return the parsed bill.
fn echo_router() -> Router {
    async fn echo(
        Query(_q): Query<HashMap<String, String>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        Json(body)
    }
    Router::new().route("/v2/transactions", post(echo))
}

fn bill_body(n: u64, run: &str, billing_date: &str) -> String {
    json!({"type": "REGULAR", "billNumber": format!("W1-{run}-{n}"), "billAmount": BILL_AMOUNT,
        "billingDate": billing_date, "grossAmount": BILL_AMOUNT, "discount": 0})
    .to_string()
}

fn mobile(i: usize) -> String {
    format!("91980{:07}", i)
}

// ---------------------------------------------------------------- main

#[tokio::main]
async fn main() {
    census::install();
    let seconds = env_f64("PERKS_BENCH_SECONDS", 10.0);
    let raw_seconds = env_f64("PERKS_BENCH_RAW_SECONDS", 3.0);
    let max_bills = env_usize("PERKS_BENCH_BILLS", 100_000).max(1);
    let pool = env_usize("PERKS_BENCH_CUSTOMERS", 1_000).max(1);
    let concurrency = env_usize("PERKS_BENCH_CONCURRENCY", 16).max(1);
    let fsync_samples = env_usize("PERKS_BENCH_FSYNC_SAMPLES", 2_000).max(1);
    let warmup = env_usize("PERKS_BENCH_WARMUP", 200);
    let max_in_flight = env_usize("PERKS_BENCH_MAX_IN_FLIGHT", 5_000).max(1);
    let open_loads: Vec<f64> = std::env::var("PERKS_BENCH_OPEN_LOADS")
        .unwrap_or_else(|_| "0.5,0.7".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|f: &f64| *f > 0.0 && f.is_finite())
        .take(8)
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PERKS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let backend = Backend::from_url(&url).unwrap();
    let backend_name = format!("{backend:?}").to_lowercase();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let machine = json!({
        "cores": cores,
        "cpu": cpu_model(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
        "syncProbeFileSystem": file_system(dir.path()),
        "process": format!("load generator and server in one process, one tokio runtime with {cores} worker threads; no CPU pinning"),
    });
    eprintln!("W1 on {backend_name}; machine {machine}");

    // 1. fsync baseline, before anything else runs.
    let fsync_budget = Duration::from_secs_f64(raw_seconds.max(1.0));
    let fsync = sync_probe(dir.path(), fsync_samples, fsync_budget, false);
    let fdatasync = sync_probe(dir.path(), fsync_samples, fsync_budget, true);
    eprintln!("fsync {}", fsync["latencyMillis"]);

    // The app, an org with its starter program, and the customer pool (through the API).
    let mut settings =
        Settings { database_url: DatabaseUrl(url), demo: false, ..Settings::default() };
    settings.rate_limit.enabled = false;
    settings.sqlite.group_commit = std::env::var("PERKS_BENCH_GROUP_COMMIT").as_deref() != Ok("0");
    let group_commit = settings.sqlite.group_commit && backend == Backend::Sqlite;
    let pg_pool = settings.postgres.max_connections;
    // The raw phases write through a plain writer (one commit per transaction, no savepoints):
    // they are the machine's limit, not the server's write path.
    let raw_settings = {
        let mut raw = settings.clone();
        raw.sqlite.group_commit = false;
        raw
    };
    let state = AppState::new(settings).await.unwrap();
    let raw_db =
        if group_commit { Db::connect(&raw_settings).await.unwrap() } else { state.db.clone() };
    let org = provision_org(&state.db, &NewOrg::parse("Bench", "UTC", "USD", "en").unwrap(), 3600)
        .await
        .unwrap();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", org.till.username, perks::auth::password::md5_hex(&org.till.password))
        )
    );
    let app = router(state.clone());
    let database = database_settings(&state.db).await;
    eprintln!("database {database}");

    eprintln!("registering {pool} customers …");
    let registered = {
        let auth = auth.clone();
        let make: Arc<MakeRequest> = Arc::new(move |n, _| {
            let body = json!({"profiles": [{"firstName": "Bench", "lastName": format!("C{n}"),
                "identifiers": [{"type": "mobile", "value": mobile(n as usize)}]}]});
            Request::post("/v2/customers")
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        });
        let counter = Arc::new(AtomicU64::new(0));
        let phase = closed_loop(
            &through_router(&app, make),
            &counter,
            concurrency,
            UNBOUNDED_SECONDS,
            pool,
        )
        .await;
        assert_eq!(phase.errors(), 0, "registration failed: {:?}", phase.first_error);
        phase
    };
    let customers: Arc<Vec<i64>> = {
        let sql = "SELECT c.id FROM customers c JOIN customer_identifiers i \
                   ON i.customer_id = c.id WHERE c.org_id = $1 AND i.type = 'mobile' \
                   ORDER BY c.id";
        let mut conn = state.db.read().await.unwrap();
        Arc::new(
            perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(sql)
                .bind(org.org_id)
                .fetch_all(e)
                .await)
            .unwrap(),
        )
    };
    assert_eq!(customers.len(), pool, "every registered customer has a mobile");
    eprintln!("registered {} customers in {:.1}s", customers.len(), registered.seconds);

    // The accounts exist first, as they do after a customer's first bill (the raw rows update
    // them; W1 would create them on a customer's first bill).
    let program: i64 = {
        let mut conn = state.db.read().await.unwrap();
        perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(
            "SELECT id FROM programs WHERE org_id = $1 ORDER BY id LIMIT 1"
        )
        .bind(org.org_id)
        .fetch_one(e)
        .await)
        .unwrap()
    };
    let ids = RawIds { org: org.org_id, store: org.store_id, till: org.till_id, program };
    {
        let now = perks::db::now_millis();
        let mut tx = state.db.begin_write().await.unwrap();
        for customer in customers.iter() {
            perks::points::store::ensure_account(
                &mut tx,
                OrgId(org.org_id),
                *customer,
                program,
                now,
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    // 3. The HTTP + JSON ceiling.
    let run = format!("{}-{}", std::process::id(), perks::db::now_millis() % 1_000_000);
    let billing_date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let w1_make = |with_key: bool| -> Arc<MakeRequest> {
        let (auth, run, billing_date, pool) =
            (auth.clone(), run.clone(), billing_date.clone(), pool);
        Arc::new(move |n, draw| {
            let uri = format!(
                "/v2/transactions?identifierName=mobile&identifierValue={}&source=INSTORE",
                mobile(draw as usize % pool)
            );
            let mut request = Request::post(uri)
                .header("authorization", &auth)
                .header("content-type", "application/json");
            if with_key {
                request = request.header("idempotency-key", format!("w1-{run}-{n}"));
            }
            request.body(Body::from(bill_body(n, &run, &billing_date))).unwrap()
        })
    };
    let echo = echo_router();
    let sequence = Arc::new(AtomicU64::new(0));
    let w1 = w1_make(true);
    let w1_send = through_router(&app, w1.clone());
    let echo_send = through_router(&echo, w1.clone());
    let mut ceiling = serde_json::Map::new();
    for (name, c) in [("c1", 1), ("cN", concurrency)] {
        let mut phase = closed_loop(&echo_send, &sequence, c, raw_seconds, max_bills * 10).await;
        assert_eq!(phase.errors(), 0, "echo failed: {:?}", phase.first_error);
        eprintln!("http ceiling {name}: {:.0} req/s", phase.rate());
        ceiling.insert(name.into(), phase.summary(json!({"concurrency": c})));
    }

    // 4. W1 through the app.
    let mut warm = closed_loop(&w1_send, &sequence, concurrency, UNBOUNDED_SECONDS, warmup).await;
    assert_eq!(warm.errors(), 0, "warm-up failed: {:?}", warm.first_error);
    let warm = warm.summary(json!({}));
    let census_bills = env_usize("PERKS_BENCH_CENSUS_BILLS", 100).max(1);
    census::switch(true);
    let mut counted = closed_loop(&w1_send, &sequence, 1, UNBOUNDED_SECONDS, census_bills).await;
    census::switch(false);
    assert_eq!(counted.errors(), 0, "census failed: {:?}", counted.first_error);
    let w1_census = census::report(counted.ok);
    let counted = counted.summary(json!({}));
    eprintln!("W1 statements per bill: {}", w1_census["statementsPerBill"]);
    let mut w1_results = serde_json::Map::new();
    let lots_before_w1 = count_lots(&state.db).await;
    let mut best = 0.0f64;
    for (name, c) in [("closedC1", 1), ("closedCN", concurrency)] {
        let lots_at_start = count_lots(&state.db).await;
        let mut phase = closed_loop(&w1_send, &sequence, c, seconds, max_bills).await;
        let lots = lots_json(lots_at_start, count_lots(&state.db).await);
        best = best.max(phase.rate());
        eprintln!(
            "W1 {name}: {:.1} bills/s, {} errors, p50 {:.2} ms",
            phase.rate(),
            phase.errors(),
            percentile(&sorted(&phase.latencies), 0.5)
        );
        w1_results.insert(name.into(), phase.summary(json!({"concurrency": c, "pointLots": lots})));
    }
    let mut open = Vec::new();
    for load in &open_loads {
        let rate = best * load;
        let lots_at_start = count_lots(&state.db).await;
        let mut phase =
            open_loop(&w1_send, &sequence, rate, seconds, (max_bills, max_in_flight)).await;
        let lots = lots_json(lots_at_start, count_lots(&state.db).await);
        eprintln!(
            "W1 open loop {:.0}% ({rate:.1}/s): {:.1} ok/s, {} errors, {} dropped",
            load * 100.0,
            phase.ok as f64 / phase.seconds,
            phase.errors(),
            phase.dropped
        );
        open.push(
            phase.summary(json!({"loadOfClosedLoopMax": load, "targetPerSecond": round1(rate),
                "pointLots": lots})),
        );
    }
    w1_results.insert("open".into(), json!(open));
    {
        let without = w1_make(false);
        let lots_at_start = count_lots(&state.db).await;
        let mut phase = closed_loop(
            &through_router(&app, without),
            &sequence,
            concurrency,
            seconds / 2.0,
            max_bills,
        )
        .await;
        let lots = lots_json(lots_at_start, count_lots(&state.db).await);
        eprintln!("W1 without Idempotency-Key c{concurrency}: {:.1} bills/s", phase.rate());
        w1_results.insert(
            "noIdempotencyKeyCN".into(),
            phase.summary(
                json!({"concurrency": concurrency, "diagnosticOnly": true, "pointLots": lots}),
            ),
        );
    }
    let lots_after_w1 = count_lots(&state.db).await;

    // 2. Raw rows, after W1 so that W1 does not run over the raw phases' rows (see "Order").
    let raw_sequence = Arc::new(AtomicU64::new(0));
    let raw_cap = max_bills.max(10_000) * 10;
    census::switch(true);
    let raw_counted = raw_phase(
        &raw_db,
        &ids,
        &customers,
        &raw_sequence,
        (1, 1),
        UNBOUNDED_SECONDS,
        census_bills,
    )
    .await;
    census::switch(false);
    let raw_census = census::report(raw_counted["bills"].as_u64().unwrap_or(0) as usize);
    let mut raw = serde_json::Map::new();
    for (name, shape) in [
        ("perCommit", (1, 1)),
        ("perCommitConcurrent", (concurrency, 1)),
        ("batch10", (1, 10)),
        ("batch100", (1, 100)),
        ("batch1000", (1, 1000)),
    ] {
        let result =
            raw_phase(&raw_db, &ids, &customers, &raw_sequence, shape, raw_seconds, raw_cap).await;
        eprintln!("raw {name}: {} bills/s", result["billsPerSecond"]);
        raw.insert(name.into(), result);
    }

    // Diagnostic: W1 again, now that the raw phases have left many more lots in the database.
    let lots_before_rerun = count_lots(&state.db).await;
    {
        let mut phase =
            closed_loop(&w1_send, &sequence, concurrency, seconds / 2.0, max_bills).await;
        let lots = lots_json(lots_before_rerun, count_lots(&state.db).await);
        eprintln!(
            "W1 c{concurrency} with {lots_before_rerun} lots in the database: {:.1} bills/s",
            phase.rate()
        );
        w1_results.insert(
            "closedCNAfterRaw".into(),
            phase.summary(
                json!({"concurrency": concurrency, "diagnosticOnly": true, "pointLots": lots,
                "pointLotsInDatabase": lots_before_rerun}),
            ),
        );
    }

    // The same fsync probe again: the disk's behaviour can change during a run.
    let fsync_at_end = sync_probe(dir.path(), fsync_samples, fsync_budget, false);
    eprintln!("fsync at the end {}", fsync_at_end["latencyMillis"]);

    // Checks: the ledger still verifies and every 200 stored its bill.
    let (mismatches, stored_w1) = {
        let mut conn = state.db.read().await.unwrap();
        let mismatches =
            perks::points::ledger::verify(&mut conn, Some(OrgId(org.org_id)), 10).await.unwrap();
        let like = format!("W1-{run}-%");
        let stored: i64 = perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM transactions WHERE org_id = $1 AND bill_number LIKE $2"
        )
        .bind(org.org_id)
        .bind(&like)
        .fetch_one(e)
        .await)
        .unwrap();
        (mismatches, stored)
    };
    let ok_w1: usize = ["closedC1", "closedCN", "noIdempotencyKeyCN", "closedCNAfterRaw"]
        .iter()
        .map(|k| w1_results[*k]["ok"].as_u64().unwrap_or(0) as usize)
        .sum::<usize>()
        + warm["ok"].as_u64().unwrap_or(0) as usize
        + counted["ok"].as_u64().unwrap_or(0) as usize
        + w1_results["open"]
            .as_array()
            .map(|a| a.iter().map(|p| p["ok"].as_u64().unwrap_or(0) as usize).sum::<usize>())
            .unwrap_or(0);
    let checks = json!({
        "pointLotsBeforeW1Phases": lots_before_w1,
        "pointLotsAfterW1Phases": lots_after_w1,
        "pointLotsAtEnd": count_lots(&state.db).await,
        "ledgerMismatches": mismatches.len(),
        "w1Ok": ok_w1,
        "w1BillsStored": stored_w1,
    });
    eprintln!("checks {checks}");

    // 5. Ratios.
    let rate = |v: &Value| v["billsPerSecond"].as_f64().unwrap_or(0.0);
    let fsync_p50 = fsync["latencyMillis"]["p50"].as_f64().unwrap_or(0.0);
    let w1_p50_c1 = w1_results["closedC1"]["latencyMillis"]["p50"].as_f64().unwrap_or(0.0);
    let ceiling_cn = ceiling["cN"]["okPerSecond"].as_f64().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    let ratios = json!({
        "w1MaxBillsPerSecond": round1(best),
        "w1MaxToRawPerCommit": ratio(best, rate(&raw["perCommit"])),
        "w1MaxToRawPerCommitConcurrent": ratio(best, rate(&raw["perCommitConcurrent"])),
        "w1MaxToRawBatch100": ratio(best, rate(&raw["batch100"])),
        "groupCommitTargetToRawBatch100": 0.5,
        "w1P50C1ToFsyncP50": ratio(w1_p50_c1, fsync_p50),
        "w1MaxToHttpCeilingCN": ratio(best, ceiling_cn),
    });

    let result = json!({
        "benchmark": "transactions (W1: add transaction)",
        "backend": backend_name,
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine,
        "database": database,
        "postgresPoolConnections": if backend == Backend::Postgres { json!(pg_pool) } else { Value::Null },
        "config": {
            "seconds": seconds, "rawSeconds": raw_seconds, "maxBillsPerPhase": max_bills,
            "customers": pool, "concurrency": concurrency, "openLoads": open_loads,
            "warmupBills": warmup, "maxInFlight": max_in_flight, "billAmount": BILL_AMOUNT,
            "program": "starter: one tier, 10% of the bill amount, 365-day expiry",
        },
        "customerRegistration": {"customers": pool, "seconds": round3(registered.seconds)},
        "fsync": fsync,
        "fdatasync": fdatasync,
        "fsyncAtEnd": fsync_at_end,
        "raw": raw,
        "httpCeiling": ceiling,
        "w1Warmup": warm,
        "statementCensus": {"w1": w1_census, "raw": raw_census},
        "w1": w1_results,
        "ratios": ratios,
        "checks": checks,
        "groupCommitCounts": state.db.group_commit().map_or(Value::Null, |g| {
            let (commits, writes) = g.counts();
            json!({"commits": commits, "writes": writes,
                   "writesPerCommit": round1(writes as f64 / commits.max(1) as f64)})
        }),
    });
    let table = markdown(&result);
    println!("{table}");
    // Without group commit (the "before" figures) the results go to a file of their own.
    let variant = if backend == Backend::Sqlite && !group_commit { "-no-group-commit" } else { "" };
    let base = format!(
        "{}/bench/results/transactions-{backend_name}{variant}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(format!("{base}.json"), serde_json::to_string_pretty(&result).unwrap() + "\n")
        .unwrap();
    std::fs::write(format!("{base}.md"), &table).unwrap();
    eprintln!("written to {base}.json and {base}.md");
    state.db.close().await;
}

/// Lots in the whole database (every org): what `expire_customer` scans on SQLite.
/// The lots in the database at the start and the end of a phase.
fn lots_json(at_start: i64, at_end: i64) -> Value {
    json!({"atStart": at_start, "atEnd": at_end})
}

async fn count_lots(db: &Db) -> i64 {
    let mut conn = db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM point_lots")
        .fetch_one(e)
        .await)
    .unwrap()
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut v = samples.to_vec();
    v.sort();
    v
}

/// What the database says about its durability settings.
async fn database_settings(db: &Db) -> Value {
    let mut conn = db.read().await.unwrap();
    match db.backend() {
        Backend::Sqlite => {
            let mut v = serde_json::Map::new();
            let journal: String = perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, String>(
                "PRAGMA journal_mode"
            )
            .fetch_one(e)
            .await)
            .unwrap();
            v.insert("journal_mode".into(), json!(journal));
            for pragma in ["synchronous", "busy_timeout", "foreign_keys"] {
                let sql = format!("PRAGMA {pragma}");
                let value: i64 =
                    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(&sql)
                        .fetch_one(e)
                        .await)
                    .unwrap();
                v.insert(pragma.into(), json!(value));
            }
            v.insert("version".into(), json!(sqlite_version(&mut conn).await));
            v.insert("writerConnections".into(), json!(1));
            v.insert("groupCommit".into(), json!(db.group_commit().is_some()));
            Value::Object(v)
        }
        Backend::Postgres => {
            let mut v = serde_json::Map::new();
            for setting in [
                "server_version",
                "fsync",
                "synchronous_commit",
                "wal_sync_method",
                "commit_delay",
                "full_page_writes",
                "shared_buffers",
            ] {
                let sql = format!("SHOW {setting}");
                let value: String =
                    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, String>(&sql)
                        .fetch_one(e)
                        .await)
                    .unwrap();
                v.insert(setting.into(), json!(value));
            }
            Value::Object(v)
        }
    }
}

async fn sqlite_version(conn: &mut perks::db::Conn) -> String {
    perks::dispatch!(conn, |e| sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
        .fetch_one(e)
        .await)
    .unwrap_or_default()
}

/// The short table printed and written beside the JSON.
fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat =
        |v: &Value| format!("{:.2} / {:.2} / {:.2} ms", f(&v["p50"]), f(&v["p99"]), f(&v["p999"]));
    let cpu = |v: &Value| {
        let c = &v["cpu"];
        if c.is_null() {
            return String::new();
        }
        format!(
            "this process {:.2} cores ({:.2} CPU ms each), machine {:.0}% busy",
            f(&c["processCores"]),
            f(&c["processCpuMillisPerItem"]),
            f(&c["machineBusyShare"]) * 100.0
        )
    };
    let lots =
        |v: &Value| match (v["pointLots"]["atStart"].as_i64(), v["pointLots"]["atEnd"].as_i64()) {
            (Some(a), Some(b)) => format!("; lots in the DB {a} → {b}"),
            _ => String::new(),
        };
    let mut out = String::new();
    let m = &r["machine"];
    out.push_str(&format!(
        "## W1 (add transaction) on {}, {}\n\nMachine: {} cores, {}, kernel {}; sync probe on {}. \
         {}. Database: {}.\n\n",
        r["backend"].as_str().unwrap_or(""),
        r["date"].as_str().unwrap_or(""),
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["syncProbeFileSystem"].as_str().unwrap_or(""),
        m["process"].as_str().unwrap_or(""),
        r["database"]
            .as_object()
            .map(|o| o
                .iter()
                .map(|(k, v)| format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), String::from)
                ))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    ));
    out.push_str("| Measure | Rate | Latency p50 / p99 / p99.9 | Notes |\n|---|---:|---|---|\n");
    for key in ["fsync", "fdatasync", "fsyncAtEnd"] {
        let v = &r[key];
        out.push_str(&format!(
            "| {} 4 KiB{} | {:.0} syncs/s implied | {} | |\n",
            v["call"].as_str().unwrap_or(key),
            if key == "fsyncAtEnd" { ", again at the end of the run" } else { "" },
            f(&v["impliedCommitsPerSecond"]),
            lat(&v["latencyMillis"]),
        ));
    }
    for (key, label) in [
        ("perCommit", "Raw earn rows, 1 bill/commit"),
        ("perCommitConcurrent", "Raw earn rows, 1 bill/commit, concurrent tasks"),
        ("batch10", "Raw earn rows, 10 bills/commit"),
        ("batch100", "Raw earn rows, 100 bills/commit"),
        ("batch1000", "Raw earn rows, 1,000 bills/commit"),
    ] {
        let v = &r["raw"][key];
        out.push_str(&format!(
            "| {label} | {:.0} bills/s | {} | {} task(s); latency of one commit; {} |\n",
            f(&v["billsPerSecond"]),
            lat(&v["commitMillis"]),
            v["tasks"],
            cpu(v),
        ));
    }
    for key in ["c1", "cN"] {
        let v = &r["httpCeiling"][key];
        out.push_str(&format!(
            "| HTTP + JSON only (no DB), concurrency {} | {:.0} req/s | {} | {} |\n",
            v["concurrency"],
            f(&v["okPerSecond"]),
            lat(&v["latencyMillis"]),
            cpu(v),
        ));
    }
    for key in ["closedC1", "closedCN", "noIdempotencyKeyCN", "closedCNAfterRaw"] {
        let v = &r["w1"][key];
        let label = match key {
            "noIdempotencyKeyCN" => {
                format!("W1 without Idempotency-Key, concurrency {} (diagnostic)", v["concurrency"])
            }
            "closedCNAfterRaw" => format!(
                "W1 closed loop, concurrency {}, after the raw phases: {} lots in the DB (diagnostic)",
                v["concurrency"], v["pointLotsInDatabase"]
            ),
            _ => format!("W1 closed loop, concurrency {}", v["concurrency"]),
        };
        out.push_str(&format!(
            "| {label} | {:.1} bills/s | {} | {} errors; {}{} |\n",
            f(&v["okPerSecond"]),
            lat(&v["latencyMillis"]),
            v["errors"],
            cpu(v),
            lots(v),
        ));
    }
    if let Some(open) = r["w1"]["open"].as_array() {
        for v in open {
            out.push_str(&format!(
                "| W1 open loop at {:.0}% of max ({:.1}/s offered) | {:.1} bills/s | {} | {} errors, {} dropped; service p50 {:.2} ms; generator lag ≤ {:.1} ms; {}{} |\n",
                f(&v["loadOfClosedLoopMax"]) * 100.0,
                f(&v["targetPerSecond"]),
                f(&v["okPerSecond"]),
                lat(&v["latencyMillis"]),
                v["errors"],
                v["dropped"],
                f(&v["serviceMillis"]["p50"]),
                f(&v["maxGeneratorLagMillis"]),
                cpu(v),
                lots(v),
            ));
        }
    }
    let q = &r["ratios"];
    out.push_str(&format!(
        "\n| Ratio | Value |\n|---|---:|\n\
         | W1 max rate / raw 1 bill per commit | {:.3} |\n\
         | W1 max rate / raw 1 bill per commit, concurrent | {:.3} |\n\
         | W1 max rate / raw 100 bills per commit (group-commit target ≥ 0.5) | {:.3} |\n\
         | W1 p50 at concurrency 1 / fsync p50 | {:.2} |\n\
         | W1 max rate / HTTP + JSON ceiling | {:.4} |\n",
        f(&q["w1MaxToRawPerCommit"]),
        f(&q["w1MaxToRawPerCommitConcurrent"]),
        f(&q["w1MaxToRawBatch100"]),
        f(&q["w1P50C1ToFsyncP50"]),
        f(&q["w1MaxToHttpCeilingCN"]),
    ));
    let census = &r["statementCensus"];
    out.push_str(&format!(
        "\nSQL statements per bill (sqlx statement events over {} bills at concurrency 1; \
         BEGIN/COMMIT not counted): W1 {} ({:.2} ms inside sqlx per bill), raw {} ({:.2} ms); \
         COMMITs seen per W1 bill: {} (PostgreSQL only; SQLite's are not logged).\n\n\
         W1 statements per bill: {}.\n",
        census["w1"]["bills"],
        census["w1"]["statementsPerBill"],
        f(&census["w1"]["sqlMillisPerBill"]),
        census["raw"]["statementsPerBill"],
        f(&census["raw"]["sqlMillisPerBill"]),
        census["w1"]["commitsPerBillIfVisible"],
        census["w1"]["perBill"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    ));
    let c = &r["checks"];
    out.push_str(&format!(
        "\nLots in the database: {} before the W1 phases, {} after them, {} at the end. \
         Checks: ledger mismatches {}; W1 200s {}, W1 bills stored {}.\n",
        c["pointLotsBeforeW1Phases"],
        c["pointLotsAfterW1Phases"],
        c["pointLotsAtEnd"],
        c["ledgerMismatches"],
        c["w1Ok"],
        c["w1BillsStored"]
    ));
    let g = &r["groupCommitCounts"];
    if !g.is_null() {
        out.push_str(&format!(
            "\nGroup commit: {} server writes made durable by {} commits ({} writes per commit on \
             average over the whole run, idempotency claims and responses included).\n",
            g["writes"], g["commits"], g["writesPerCommit"]
        ));
    }
    out
}
