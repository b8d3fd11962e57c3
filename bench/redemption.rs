//! Redemption: `POST /v2/customers/{id}/redemptions` through the whole HTTP stack — customers
//! drawn uniformly from a pool, and all requests on one hot customer — against the raw write
//! limit of the same rows measured in the same run, with their ratios.
//!
//! Run: `cargo bench --bench redemption` (SQLite in a temp dir, opened exactly as the server
//! opens it), or with `PERKS_BENCH_DATABASE_URL=postgres://…/fresh_empty_db`. Results go to
//! `bench/results/redemption-<backend>.json` and `.md`; the table is printed too.
//!
//! # What each number means
//!
//! Latencies are wall-clock milliseconds, p50 / p99 / p99.9 (nearest rank over all samples of
//! the phase); rates are successful redemptions divided by the phase's wall-clock seconds.
//!
//! 1. **`fsync`** — a 4 KiB `write` + `fsync(2)` at a rotating offset of a 1 MiB file in the temp
//!    dir, at the start and again at the end of the run (the virtual disk's sync latency moves
//!    with other load on the machine); `impliedCommitsPerSecond` = 1000 / p50.
//! 2. **`redeem`** — `POST /v2/customers/{id}/redemptions` with `{"points": 10,
//!    "skipValidation": true, "transactionNumber": …}`, an `Idempotency-Key` and till Basic
//!    auth, through the app's router (`perks::app::router`: request id, auth, rate-limit layer
//!    (disabled), idempotency, envelopes, handler, service, commit) with
//!    `tower::ServiceExt::oneshot`; no socket. Every customer earned its points through
//!    `POST /v2/transactions` first (one lot each), under the org's starter program (10% of the
//!    bill, 365-day expiry, validation code optional). `uniformC1` / `uniformCN`: 1 or
//!    `PERKS_BENCH_CONCURRENCY` tasks in a closed loop, each request for a customer drawn at
//!    random from `PERKS_BENCH_CUSTOMERS`; `hotC1` / `hotCN`: the same with every request for one
//!    customer, whose account row every redemption locks (PostgreSQL `FOR UPDATE`; SQLite has
//!    one writer anyway), so the hot phases measure how redemptions of one balance serialise.
//!    Each phase runs `PERKS_BENCH_SECONDS`. An error is any status but 200.
//! 3. **`raw`** — the rows one redemption writes, with plain SQL through the crate's own `Db`
//!    (same schema, pragmas and single writer): the REDEEM `ledger_entries` row, its
//!    `ledger_lot_movements` row and the lot's `remaining` UPDATE, the `loyalty_accounts` UPDATE
//!    (current and redeemed points, so that the ledger still verifies) and the
//!    `points_redemptions` row: 5 statements. Not written here but written by the API: the
//!    idempotency row, the audit record and the `points.redeemed` event, and the reads (the
//!    customer, the fraud check, the expiry pass, the FEFO lot read). `perCommit`: one
//!    redemption per transaction from one task; `perCommitConcurrent`: the same from
//!    `PERKS_BENCH_CONCURRENCY` tasks over the uniform pool; `batch100`: 100 per transaction.
//!    Each runs `PERKS_BENCH_RAW_SECONDS`.
//! 4. **`ratios`** — `uniformMaxToRawPerCommit` = the better uniform rate / `raw.perCommit`;
//!    `uniformMaxToRawPerCommitConcurrent` (the fairer one on PostgreSQL, where concurrency helps
//!    both); `uniformMaxToRawBatch100`; `hotMaxToUniformMax`; `hotP99ToUniformP99` at
//!    concurrency `PERKS_BENCH_CONCURRENCY`; `uniformP50C1ToFsyncP50`.
//!
//! At the end the ledger is verified (`perks::points::ledger::verify`) and the stored
//! redemptions are counted against the 200s. The load generator and the server share one
//! process and one tokio runtime; nothing is pinned. Background jobs do not run.
//!
//! Sizes: `PERKS_BENCH_SECONDS` (10), `PERKS_BENCH_RAW_SECONDS` (3), `PERKS_BENCH_CUSTOMERS`
//! (1,000), `PERKS_BENCH_CONCURRENCY` (16), `PERKS_BENCH_WARMUP` (200 redemptions),
//! `PERKS_BENCH_MAX_REQUESTS` (200,000: most requests in any one phase).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use perks::app::{AppState, router};
use perks::config::{DatabaseUrl, Settings};
use perks::db::{Backend, Db, Tx};
use perks::org::model::{NewOrg, OrgId};
use perks::org::service::provision_org;
use serde_json::{Value, json};

use common::{
    Cpu, Lcg, MakeRequest, closed_loop, cpu_model, env_f64, env_usize, latency_json, round1,
    round3, sync_probe, through_router,
};

/// Points of every redemption, and the same in the store's ten-thousandths.
const POINTS: i64 = 10;
const POINTS_FIXED: i64 = POINTS * 10_000;
/// The bill each pool customer earns its points with (10% → 10,000 points), and the hot
/// customer's (10,000,000 points).
const POOL_BILL: f64 = 100_000.0;
const HOT_BILL: f64 = 100_000_000.0;
/// The duration of a phase bounded by its request count instead (setup, warm-up).
const UNBOUNDED_SECONDS: f64 = 86_400.0;

fn mobile(i: usize) -> String {
    format!("9198{:08}", 40_000_000 + i)
}

// ---------------------------------------------------------------- raw rows

/// Ids the raw rows refer to.
#[derive(Clone)]
struct RawIds {
    org: i64,
    program: i64,
    till: i64,
}

/// The rows one redemption writes, for `customer` from its `lot`.
async fn raw_redemption(
    tx: &mut Tx,
    ids: &RawIds,
    (customer, lot): (i64, i64),
    n: u64,
    now: i64,
) -> Result<(), perks::db::DbError> {
    let reference = format!("RAW-{n}");
    let entry: i64 = perks::dispatch!(tx, |e| sqlx::query_scalar(
        "INSERT INTO ledger_entries (org_id, customer_id, program_id, kind, current_delta, \
         promised_delta, reference, till_id, created_at, effective_at) \
         VALUES ($1, $2, $3, 'REDEEM', $4, 0, $5, $6, $7, $7) RETURNING id"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(-POINTS_FIXED)
    .bind(&reference)
    .bind(ids.till)
    .bind(now)
    .fetch_one(e)
    .await)?;
    perks::dispatch!(tx, |e| sqlx::query(
        "INSERT INTO ledger_lot_movements (org_id, entry_id, lot_id, delta) VALUES ($1, $2, $3, $4)"
    )
    .bind(ids.org)
    .bind(entry)
    .bind(lot)
    .bind(-POINTS_FIXED)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    perks::dispatch!(tx, |e| sqlx::query(
        "UPDATE point_lots SET remaining = remaining - $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(ids.org)
    .bind(lot)
    .bind(POINTS_FIXED)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    perks::dispatch!(tx, |e| sqlx::query(
        "UPDATE loyalty_accounts SET current_points = current_points - $4, \
         redeemed_points = redeemed_points + $4, updated_at = $5 \
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
    perks::dispatch!(tx, |e| {
        sqlx::query(
        "INSERT INTO points_redemptions (org_id, customer_id, program_id, points, bill_number, \
         till_id, validation, entry_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'SKIPPED', $7, $8)"
    )
    .bind(ids.org)
    .bind(customer)
    .bind(ids.program)
    .bind(POINTS_FIXED)
    .bind(&reference)
    .bind(ids.till)
    .bind(entry)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

async fn raw_phase(
    db: &Db,
    ids: &RawIds,
    pool: &Arc<Vec<(i64, i64)>>,
    sequence: &Arc<AtomicU64>,
    (tasks, batch): (usize, usize),
    seconds: f64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let written = Arc::new(AtomicUsize::new(0));
    let cpu = Cpu::now();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (db, ids, pool, sequence, written) =
            (db.clone(), ids.clone(), pool.clone(), sequence.clone(), written.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Lcg(7 + task as u64);
            let mut commits = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let now = perks::db::now_millis();
                let mut tx = db.begin_write().await.unwrap();
                for _ in 0..batch {
                    let pick = pool[(rng.next() as usize) % pool.len()];
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    raw_redemption(&mut tx, &ids, pick, n, now).await.unwrap();
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
    let count = written.load(Ordering::Relaxed);
    json!({
        "tasks": tasks,
        "redemptionsPerCommit": batch,
        "redemptions": count,
        "seconds": round3(elapsed),
        "redemptionsPerSecond": round1(count as f64 / elapsed),
        "commitMillis": latency_json(&mut commits),
        "machineBusyShare": cpu.map_or(Value::Null, |c| c.since(count)["machineBusyShare"].clone()),
    })
}

async fn scalar(db: &Db, sql: &str, org: i64) -> i64 {
    let mut conn = db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(sql).bind(org).fetch_one(e).await)
        .unwrap()
}

#[tokio::main]
async fn main() {
    let seconds = env_f64("PERKS_BENCH_SECONDS", 10.0);
    let raw_seconds = env_f64("PERKS_BENCH_RAW_SECONDS", 3.0);
    let pool_size = env_usize("PERKS_BENCH_CUSTOMERS", 1_000).max(1);
    let concurrency = env_usize("PERKS_BENCH_CONCURRENCY", 16).max(1);
    let warmup = env_usize("PERKS_BENCH_WARMUP", 200);
    let max = env_usize("PERKS_BENCH_MAX_REQUESTS", 200_000).max(1);

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
        "process": format!("load generator and server in one process, one tokio runtime with {cores} worker threads; no CPU pinning"),
    });
    eprintln!("redemption on {backend_name}; machine {machine}");
    let probe_budget = Duration::from_secs_f64(raw_seconds.max(1.0));
    let fsync = sync_probe(dir.path(), 2_000, probe_budget, false);
    eprintln!("fsync {}", fsync["latencyMillis"]);

    let mut settings =
        Settings { database_url: DatabaseUrl(url), demo: false, ..Settings::default() };
    settings.rate_limit.enabled = false;
    let state = AppState::new(settings).await.unwrap();
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

    // Customers (the pool and one hot customer), each earning its points with one bill.
    eprintln!("registering {} customers and their bills …", pool_size + 1);
    let setup_started = Instant::now();
    for (what, path) in [("customers", "/v2/customers"), ("bills", "/v2/transactions")] {
        let auth = auth.clone();
        let make: Arc<MakeRequest> = Arc::new(move |n, _| {
            let i = n as usize;
            let body = if path == "/v2/customers" {
                json!({"profiles": [{"firstName": "Bench", "lastName": format!("C{i}"),
                    "identifiers": [{"type": "mobile", "value": mobile(i)}]}]})
            } else {
                json!({"type": "REGULAR", "billNumber": format!("EARN-{i}"),
                    "billAmount": if i == 0 { HOT_BILL } else { POOL_BILL }})
            };
            let uri = if path == "/v2/customers" {
                path.to_string()
            } else {
                format!("{path}?identifierName=mobile&identifierValue={}&source=INSTORE", mobile(i))
            };
            Request::post(uri)
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
            pool_size + 1,
        )
        .await;
        assert_eq!(phase.errors(), 0, "{what} failed: {:?}", phase.first_error);
    }
    // (customer, its one lot), by mobile number order: index 0 is the hot customer.
    let lots: Vec<(i64, i64)> = {
        let mut conn = state.db.read().await.unwrap();
        perks::dispatch!(&mut conn, |e| sqlx::query_as::<_, (i64, i64)>(
            "SELECT l.customer_id, l.id FROM point_lots l JOIN customer_identifiers i \
             ON i.customer_id = l.customer_id AND i.type = 'mobile' WHERE l.org_id = $1 \
             ORDER BY i.value"
        )
        .bind(org.org_id)
        .fetch_all(e)
        .await)
        .unwrap()
    };
    assert_eq!(lots.len(), pool_size + 1, "one lot per customer");
    let hot = lots[0].0;
    let pool: Arc<Vec<(i64, i64)>> = Arc::new(lots[1..].to_vec());
    let program: i64 = scalar(
        &state.db,
        "SELECT id FROM programs WHERE org_id = $1 ORDER BY id LIMIT 1",
        org.org_id,
    )
    .await;
    eprintln!("set up in {:.1}s", setup_started.elapsed().as_secs_f64());

    let redeem_request = |target: Option<i64>| -> Arc<MakeRequest> {
        let (auth, pool) = (auth.clone(), pool.clone());
        Arc::new(move |n, draw| {
            let customer = target.unwrap_or_else(|| pool[(draw as usize) % pool.len()].0);
            let body = json!({"points": POINTS, "skipValidation": true,
                "transactionNumber": format!("R-{n}")});
            Request::post(format!("/v2/customers/{customer}/redemptions"))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .header("idempotency-key", format!("redeem-{n}"))
                .body(Body::from(body.to_string()))
                .unwrap()
        })
    };
    let sequence = Arc::new(AtomicU64::new(0));
    let uniform = redeem_request(None);
    let hot_request = redeem_request(Some(hot));
    let warm = closed_loop(
        &through_router(&app, uniform.clone()),
        &sequence,
        concurrency,
        UNBOUNDED_SECONDS,
        warmup,
    )
    .await;
    assert_eq!(warm.errors(), 0, "warm-up failed: {:?}", warm.first_error);

    let mut phases = serde_json::Map::new();
    let mut rates = BTreeMap::new();
    let mut p99 = BTreeMap::new();
    for (name, make, tasks) in [
        ("uniformC1", &uniform, 1),
        ("uniformCN", &uniform, concurrency),
        ("hotC1", &hot_request, 1),
        ("hotCN", &hot_request, concurrency),
    ] {
        eprintln!("{name} …");
        let mut phase =
            closed_loop(&through_router(&app, make.clone()), &sequence, tasks, seconds, max).await;
        rates.insert(name, phase.rate());
        let busy = phase.cpu["machineBusyShare"].clone();
        let summary = phase.summary(json!({"concurrency": tasks, "machineBusyShare": busy}));
        p99.insert(name, summary["latencyMillis"]["p99"].as_f64().unwrap_or(0.0));
        p99.insert(
            match name {
                "uniformC1" => "uniformC1p50",
                "uniformCN" => "uniformCNp50",
                "hotC1" => "hotC1p50",
                _ => "hotCNp50",
            },
            summary["latencyMillis"]["p50"].as_f64().unwrap_or(0.0),
        );
        eprintln!("{name}: {summary}");
        phases.insert(name.into(), summary);
    }
    let api_ok: usize =
        phases.values().map(|p| p["ok"].as_u64().unwrap_or(0) as usize).sum::<usize>() + warm.ok;

    let ids = RawIds { org: org.org_id, program, till: org.till_id };
    let raw_sequence = Arc::new(AtomicU64::new(0));
    let mut raw = serde_json::Map::new();
    for (name, shape) in
        [("perCommit", (1, 1)), ("perCommitConcurrent", (concurrency, 1)), ("batch100", (1, 100))]
    {
        eprintln!("raw {name} …");
        let result = raw_phase(&state.db, &ids, &pool, &raw_sequence, shape, raw_seconds).await;
        eprintln!("raw {name}: {result}");
        raw.insert(name.into(), result);
    }
    let fsync_end = sync_probe(dir.path(), 2_000, probe_budget, false);

    // The ledger is exact after everything, and every 200 stored one redemption.
    let mismatches = {
        let mut conn = state.db.read().await.unwrap();
        perks::points::ledger::verify(&mut conn, Some(OrgId(org.org_id)), 10).await.unwrap()
    };
    assert!(mismatches.is_empty(), "ledger mismatches: {mismatches:?}");
    let stored = scalar(
        &state.db,
        "SELECT COUNT(*) FROM points_redemptions WHERE org_id = $1 AND bill_number LIKE 'R-%'",
        org.org_id,
    )
    .await;
    assert_eq!(stored as usize, api_ok, "stored redemptions vs 200s");

    let raw_rate = |k: &str| raw[k]["redemptionsPerSecond"].as_f64().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    let uniform_max = rates["uniformC1"].max(rates["uniformCN"]);
    let hot_max = rates["hotC1"].max(rates["hotCN"]);
    let fsync_p50 = fsync["latencyMillis"]["p50"].as_f64().unwrap_or(0.0);
    let result = json!({
        "benchmark": "redemption",
        "backend": backend_name,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "machine": machine,
        "sizes": {"seconds": seconds, "rawSeconds": raw_seconds, "customers": pool_size,
            "concurrency": concurrency, "warmup": warmup, "pointsPerRedemption": POINTS},
        "fsync": fsync,
        "fsyncAtEnd": fsync_end,
        "redeem": phases,
        "raw": raw,
        "ratios": {
            "uniformMaxPerSecond": round1(uniform_max),
            "hotMaxPerSecond": round1(hot_max),
            "uniformMaxToRawPerCommit": ratio(uniform_max, raw_rate("perCommit")),
            "uniformMaxToRawPerCommitConcurrent": ratio(uniform_max, raw_rate("perCommitConcurrent")),
            "uniformMaxToRawBatch100": ratio(uniform_max, raw_rate("batch100")),
            "hotMaxToUniformMax": ratio(hot_max, uniform_max),
            "hotP99ToUniformP99": ratio(p99["hotCN"], p99["uniformCN"]),
            "uniformP50C1ToFsyncP50": ratio(p99["uniformC1p50"], fsync_p50),
        },
        "ledgerVerified": true,
        "storedRedemptions": stored,
    });
    let md = markdown(&result);
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join(format!("redemption-{backend_name}.json")),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join(format!("redemption-{backend_name}.md")), md).unwrap();
    drop(state);
}

/// The short table printed and written beside the JSON.
fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat =
        |v: &Value| format!("{:.2} / {:.2} / {:.2} ms", f(&v["p50"]), f(&v["p99"]), f(&v["p999"]));
    let mut out = format!(
        "## Redemption on {}, {}\n\nMachine: {} cores, {}, kernel {}. {}.\n\n\
         | phase | rate | p50 / p99 / p99.9 | errors | machine busy |\n|---|---:|---|---:|---:|\n",
        r["backend"].as_str().unwrap_or(""),
        r["date"].as_str().unwrap_or(""),
        r["machine"]["cores"],
        r["machine"]["cpu"].as_str().unwrap_or(""),
        r["machine"]["kernel"].as_str().unwrap_or(""),
        r["machine"]["process"].as_str().unwrap_or(""),
    );
    for (name, label) in [
        ("uniformC1", "redeem, uniform customers"),
        ("uniformCN", "redeem, uniform customers"),
        ("hotC1", "redeem, one hot customer"),
        ("hotCN", "redeem, one hot customer"),
    ] {
        let p = &r["redeem"][name];
        out.push_str(&format!(
            "| {label}, concurrency {} | {:.1}/s | {} | {} | {:.0}% |\n",
            p["concurrency"],
            f(&p["okPerSecond"]),
            lat(&p["latencyMillis"]),
            p["errors"],
            f(&p["machineBusyShare"]) * 100.0
        ));
    }
    for (name, label) in [
        ("perCommit", "raw rows, 1 per commit"),
        ("perCommitConcurrent", "raw rows, 1 per commit, N tasks"),
        ("batch100", "raw rows, 100 per commit"),
    ] {
        let p = &r["raw"][name];
        out.push_str(&format!(
            "| {label} | {:.1}/s | commit {} | 0 | {:.0}% |\n",
            f(&p["redemptionsPerSecond"]),
            lat(&p["commitMillis"]),
            f(&p["machineBusyShare"]) * 100.0
        ));
    }
    let ratios = &r["ratios"];
    out.push_str(&format!(
        "\nfsync p50 / p99: start {} ; end {}\n\n\
         Ratios: uniform max / raw 1 per commit **{:.2}**; / raw N tasks {:.2}; / raw 100 per \
         commit {:.2}; hot max / uniform max {:.2}; hot p99 / uniform p99 (N) {:.2}; uniform p50 \
         (concurrency 1) / fsync p50 {:.1}. Ledger verified; {} redemptions stored.\n",
        lat(&r["fsync"]["latencyMillis"]),
        lat(&r["fsyncAtEnd"]["latencyMillis"]),
        f(&ratios["uniformMaxToRawPerCommit"]),
        f(&ratios["uniformMaxToRawPerCommitConcurrent"]),
        f(&ratios["uniformMaxToRawBatch100"]),
        f(&ratios["hotMaxToUniformMax"]),
        f(&ratios["hotP99ToUniformP99"]),
        f(&ratios["uniformP50C1ToFsyncP50"]),
        r["storedRedemptions"],
    ));
    out
}
