//! Coupon redemption: `POST /v2/coupon/redeem` of distinct codes through the whole HTTP stack,
//! against the raw write limit of the same rows measured in the same run, with their ratios.
//!
//! Run: `cargo bench --bench coupons` (SQLite in a temp dir, opened exactly as the server opens
//! it), or with `PERKS_BENCH_DATABASE_URL=postgres://…/fresh_empty_db`. Results go to
//! `bench/results/coupons-<backend>.json` and `.md`; the table is printed too.
//!
//! # What each number means
//!
//! Latencies are wall-clock milliseconds (p50 / p99 / p99.9, nearest rank over all samples of the
//! phase); rates are completed operations divided by the phase's wall-clock seconds.
//!
//! 1. **`fsync`** — a 4 KiB write and `fsync(2)` at a rotating offset of a 1 MiB file in the temp
//!    dir; `impliedCommitsPerSecond` = 1000 / p50.
//! 2. **`raw`** — the rows one redemption writes, with plain SQL through the crate's own `Db`
//!    (same schema, pragmas and single writer): per redemption a `coupon_redemptions` INSERT, the
//!    coupon's `redemption_count` UPDATE, the series' conditional `num_redeemed` UPDATE, a
//!    `domain_events` INSERT and an `audit_log` INSERT (5 statements), one database transaction
//!    per redemption, from 1 task (`perCommitC1`) and from `PERKS_BENCH_CONCURRENCY` tasks
//!    (`perCommitCN`), on the coupons of a second series taken round robin.
//! 3. **`redeem`** — `POST /v2/coupon/redeem` of one distinct, single-use code issued to the
//!    customer named in `user.mobile`, with till Basic auth, through the app's whole router
//!    (request id, auth, rate limit (disabled), envelopes, handler, service, commit) with
//!    `tower::ServiceExt::oneshot`; no socket. Closed loops at concurrency 1 and
//!    `PERKS_BENCH_CONCURRENCY` for `PERKS_BENCH_SECONDS` each, after a warm-up. An error is any
//!    status but 200.
//! 4. **`ratios`** — redemption rate / raw rate at the same concurrency, and redemption p99 /
//!    raw commit p99 at the same concurrency.
//! 5. **`redeem.singleCodeRace`** — `PERKS_BENCH_RACE_REQUESTS` (1,000) redemptions of one
//!    single-use code from `PERKS_BENCH_CONCURRENCY` tasks at once: exactly one answers 200 (the
//!    bench fails otherwise), every other one is refused (711); its rate is answers per second,
//!    the cost of refusing a code another request holds or has used.
//!
//! Set-up (not measured): `PERKS_BENCH_CUSTOMERS` customers (200) registered through the API,
//! then `PERKS_BENCH_CODES` codes (10,000) issued for each of the two series through
//! `POST /v2/coupon/issue/multiple` (500 per call, round robin over the customers).
//!
//! The load generator and the server share one process and one tokio runtime; nothing is pinned.
//! `machineLoadAverage` (from `/proc/loadavg`) at the start and the end says how busy the machine
//! was with other work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use perks::app::{AppState, router};
use perks::config::{DatabaseUrl, Settings};
use perks::db::{Backend, Db};
use perks::org::model::NewOrg;
use perks::org::service::provision_org;
use serde_json::{Value, json};

use common::{
    cpu_model, env_f64, env_usize, latency_json, load_average, ratio, round1, round3, send,
    sync_probe,
};

fn post(uri: &str, auth: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn mobile(i: usize) -> String {
    format!("9197{i:08}")
}

/// One code and the mobile of the customer it was issued to.
type Code = (String, String);

/// A series (SMS off, unlimited) with `count` codes issued round robin over the customers.
async fn series_with_codes(
    app: &Router,
    auth: &str,
    customers: usize,
    count: usize,
) -> (i64, Vec<Code>) {
    let body = json!({"CouponSeriesV2": {"description": "Bench", "discountCode": "BENCH",
        "validTillDate": "2099-01-01T00:00:00Z", "discountType": "ABS", "discountValue": 10,
        "clientHandlingType": "DISC_CODE", "expiryStrategyType": "SERIES_EXPIRY", "anyUser": false,
        "smsTemplate": "", "isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true,
        "randomCodeLength": 12}});
    let (status, bytes) = send(app, post("/v2/coupon/series", auth, &body)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let series = serde_json::from_slice::<Value>(&bytes).unwrap()["entity"]["id"].as_i64().unwrap();
    let mut codes = Vec::with_capacity(count);
    let mut turn = 0;
    while codes.len() < count {
        let n = (count - codes.len()).min(500);
        let who = mobile(turn % customers);
        turn += 1;
        let body = json!({"seriesId": series, "count": n, "customer": {"mobile": who}});
        let (status, bytes) = send(app, post("/v2/coupon/issue/multiple", auth, &body)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        for c in reply["coupons"].as_array().unwrap() {
            codes.push((c["code"].as_str().unwrap().to_string(), who.clone()));
        }
    }
    (series, codes)
}

/// Closed loop: `concurrency` tasks redeem the next unused code until `seconds` pass or the codes
/// run out.
async fn redeem_loop(
    app: &Router,
    auth: &str,
    codes: &Arc<Vec<Code>>,
    next: &Arc<AtomicUsize>,
    concurrency: usize,
    seconds: f64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (app, auth, codes, next) = (app.clone(), auth.to_string(), codes.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<u16, usize> = BTreeMap::new();
            let mut first_error = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((code, who)) = codes.get(i) else { break };
                let body = json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": who},
                    "transactionNumber": format!("BENCH-{i}"), "billAmount": 100});
                let t = Instant::now();
                let (status, bytes) = send(&app, post("/v2/coupon/redeem", &auth, &body)).await;
                latencies.push(t.elapsed());
                if status != 200 {
                    *errors.entry(status).or_default() += 1;
                    first_error.get_or_insert_with(|| String::from_utf8_lossy(&bytes).chars().take(300).collect::<String>());
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<u16, usize> = BTreeMap::new();
    let mut first_error: Option<String> = None;
    for h in handles {
        let (l, e, f) = h.await.unwrap();
        latencies.extend(l);
        for (s, c) in e {
            *errors.entry(s).or_default() += c;
        }
        if first_error.is_none() {
            first_error = f;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed: usize = errors.values().sum();
    let ok = latencies.len() - failed;
    json!({"concurrency": concurrency, "ok": ok, "errors": failed, "firstError": first_error,
        "seconds": round3(seconds), "redemptionsPerSecond": round1(ok as f64 / seconds),
        "latencyMillis": latency_json(&mut latencies)})
}

/// The rows of one redemption of coupon `coupon`, in one transaction.
async fn raw_redemption(db: &Db, org: i64, series: i64, coupon: i64, customer: i64, n: usize) {
    let now = perks::db::now_millis();
    let mut tx = db.begin_write().await.unwrap();
    perks::dispatch!(&mut tx, |e| sqlx::query(
        "INSERT INTO coupon_redemptions (org_id, coupon_id, series_id, customer_id, redeemed_at, \
         transaction_number, bill_amount, source, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1000000, 'API', $5, $5)"
    )
    .bind(org)
    .bind(coupon)
    .bind(series)
    .bind(customer)
    .bind(now)
    .bind(format!("RAW-{n}"))
    .execute(e)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    perks::dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupons SET redemption_count = redemption_count + 1, last_redeemed_at = $3, \
         updated_at = $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org)
    .bind(coupon)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    perks::dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_series SET num_redeemed = num_redeemed + 1, last_used_at = $3 \
         WHERE org_id = $1 AND id = $2 AND (max_redeem < 0 OR num_redeemed + 1 <= max_redeem)"
    )
    .bind(org)
    .bind(series)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    perks::dispatch!(&mut tx, |e| sqlx::query(
        "INSERT INTO domain_events (org_id, event_type, entity_type, entity_id, payload, occurred_at) \
         VALUES ($1, 'coupon.redeemed', 'COUPON', $2, $3, $4)"
    )
    .bind(org)
    .bind(coupon)
    .bind(json!({"couponId": coupon, "seriesId": series, "customerId": customer}).to_string())
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    perks::dispatch!(&mut tx, |e| sqlx::query(
        "INSERT INTO audit_log (org_id, occurred_at, principal_type, principal_id, entity_type, \
         entity_id, action, before_state, after_state) \
         VALUES ($1, $2, 'TILL', 1, 'COUPON', $3, 'REDEEM', '{}', '{}')"
    )
    .bind(org)
    .bind(now)
    .bind(coupon)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    tx.commit().await.unwrap();
}

async fn raw_loop(
    db: &Db,
    org: i64,
    series: i64,
    coupons: &Arc<Vec<(i64, i64)>>,
    next: &Arc<AtomicUsize>,
    concurrency: usize,
    seconds: f64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (db, coupons, next) = (db.clone(), coupons.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                // The raw rows need no distinct coupon: the coupons are taken round robin.
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (coupon, customer) = coupons[i % coupons.len()];
                let t = Instant::now();
                raw_redemption(&db, org, series, coupon, customer, i).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    json!({"concurrency": concurrency, "redemptions": latencies.len(), "seconds": round3(seconds),
        "redemptionsPerSecond": round1(latencies.len() as f64 / seconds),
        "commitMillis": latency_json(&mut latencies)})
}

#[tokio::main]
async fn main() {
    let seconds = env_f64("PERKS_BENCH_SECONDS", 5.0);
    let customers = env_usize("PERKS_BENCH_CUSTOMERS", 200).max(1);
    let count = env_usize("PERKS_BENCH_CODES", 10_000).max(100);
    let concurrency = env_usize("PERKS_BENCH_CONCURRENCY", 16).max(1);
    let warmup = env_usize("PERKS_BENCH_WARMUP", 100);
    let load_at_start = load_average();

    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PERKS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let backend = Backend::from_url(&url).unwrap();
    let backend_name = format!("{backend:?}").to_lowercase();
    let fsync = sync_probe(dir.path(), 500, Duration::from_secs(3), false);

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
    eprintln!("coupons on {backend_name}: registering {customers} customers …");
    for i in 0..customers {
        let body = json!({"profiles": [{"firstName": "Bench", "identifiers": [{"type": "mobile", "value": mobile(i)}]}]});
        let (status, bytes) = send(&app, post("/v2/customers", &auth, &body)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    }
    eprintln!("issuing 2 × {count} codes …");
    let issue_started = Instant::now();
    let (_, codes) = series_with_codes(&app, &auth, customers, count).await;
    let issue_seconds = issue_started.elapsed().as_secs_f64();
    let (raw_series, raw_codes) = series_with_codes(&app, &auth, customers, count).await;
    let raw_coupons: Arc<Vec<(i64, i64)>> = {
        let mut conn = state.db.read().await.unwrap();
        let rows: Vec<(i64, i64)> = perks::dispatch!(&mut conn, |e| sqlx::query_as(
            "SELECT id, customer_id FROM coupons WHERE series_id = $1 ORDER BY id"
        )
        .bind(raw_series)
        .fetch_all(e)
        .await)
        .unwrap();
        assert_eq!(rows.len(), raw_codes.len());
        Arc::new(rows)
    };

    let mut codes = codes;
    let warm_codes = Arc::new(codes.split_off(count - warmup.min(count / 10)));
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    eprintln!("warm-up …");
    let warm = redeem_loop(&app, &auth, &warm_codes, &Arc::new(AtomicUsize::new(0)), 1, 60.0).await;
    let raw_next = Arc::new(AtomicUsize::new(0));
    let raw_c1 =
        raw_loop(&state.db, org.org_id, raw_series, &raw_coupons, &raw_next, 1, seconds).await;
    eprintln!("raw C1 {raw_c1}");
    let redeem_c1 = redeem_loop(&app, &auth, &codes, &next, 1, seconds).await;
    eprintln!("redeem C1 {redeem_c1}");
    let raw_cn =
        raw_loop(&state.db, org.org_id, raw_series, &raw_coupons, &raw_next, concurrency, seconds)
            .await;
    eprintln!("raw C{concurrency} {raw_cn}");
    let redeem_cn = redeem_loop(&app, &auth, &codes, &next, concurrency, seconds).await;
    eprintln!("redeem C{concurrency} {redeem_cn}");

    // The single-code race: `PERKS_BENCH_RACE_REQUESTS` redemptions of one code from
    // `concurrency` tasks at once; exactly one may succeed, every other answer is a refusal.
    let race_requests = env_usize("PERKS_BENCH_RACE_REQUESTS", 1_000).max(2);
    let (_, race_code) = series_with_codes(&app, &auth, customers, 1).await;
    let race_code = Arc::new(vec![race_code[0].clone(); race_requests]);
    let race =
        redeem_loop(&app, &auth, &race_code, &Arc::new(AtomicUsize::new(0)), concurrency, 60.0)
            .await;
    eprintln!("single-code race {race}");
    assert_eq!(race["ok"], 1, "exactly one redemption of one code may succeed: {race}");

    // Every 200 is one redemption, once.
    let stored: i64 = {
        let mut conn = state.db.read().await.unwrap();
        perks::dispatch!(&mut conn, |e| sqlx::query_scalar(
            "SELECT COUNT(*) FROM coupon_redemptions WHERE transaction_number LIKE 'BENCH-%'"
        )
        .fetch_one(e)
        .await)
        .unwrap()
    };
    let oks = redeem_c1["ok"].as_i64().unwrap_or(0)
        + redeem_cn["ok"].as_i64().unwrap_or(0)
        + race["ok"].as_i64().unwrap_or(0);
    let warm = warm["ok"].as_i64().unwrap_or(0);
    let ratios = json!({
        "redeemC1ToRawC1": ratio(&redeem_c1["redemptionsPerSecond"], &raw_c1["redemptionsPerSecond"]),
        "redeemCNToRawCN": ratio(&redeem_cn["redemptionsPerSecond"], &raw_cn["redemptionsPerSecond"]),
        "redeemP99C1ToRawP99C1": ratio(&redeem_c1["latencyMillis"]["p99"], &raw_c1["commitMillis"]["p99"]),
        "redeemP99CNToRawP99CN": ratio(&redeem_cn["latencyMillis"]["p99"], &raw_cn["commitMillis"]["p99"]),
    });
    let result = json!({
        "workload": "coupon redemption (distinct single-use codes)",
        "backend": backend_name,
        "at": chrono::Utc::now().to_rfc3339(),
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu": cpu_model(), "machineLoadAverage": {"atStart": load_at_start, "atEnd": load_average()}},
        "setup": {"customers": customers, "codesPerSeries": count, "issueSeconds": round3(issue_seconds),
            "issuedPerSecond": round1(count as f64 / issue_seconds), "concurrency": concurrency,
            "phaseSeconds": seconds},
        "fsync": fsync,
        "raw": {"perCommitC1": raw_c1, "perCommitCN": raw_cn},
        "redeem": {"closedC1": redeem_c1, "closedCN": redeem_cn, "singleCodeRace": race},
        "ratios": ratios,
        "checks": {"redemptionsStored": stored, "okAnswers": oks + warm},
    });
    let md = markdown(&result);
    println!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join(format!("coupons-{backend_name}.json")),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join(format!("coupons-{backend_name}.md")), md).unwrap();
    state.db.close().await;
}

fn markdown(r: &Value) -> String {
    let row = |name: &str, v: &Value, rate: &str, latency: &str| {
        format!(
            "| {name} | {} /s | {} / {} / {} ms | {} |\n",
            v[rate],
            v[latency]["p50"],
            v[latency]["p99"],
            v[latency]["p999"],
            v.get("errors").map(|e| format!("{e} errors")).unwrap_or_default()
        )
    };
    let mut s = format!(
        "## Coupon redemption on {}, {}\n\nMachine: {} cores, {}; load average {} at the start, {} at the end \
         (other work on the machine shares the cores). Set-up: {} customers, {} codes per series, issued at {} codes/s.\n\n\
         | Measure | Rate | Latency p50 / p99 / p99.9 | Notes |\n|---|---:|---|---|\n",
        r["backend"].as_str().unwrap_or_default(),
        r["at"].as_str().unwrap_or_default(),
        r["machine"]["cores"],
        r["machine"]["cpu"].as_str().unwrap_or_default(),
        r["machine"]["machineLoadAverage"]["atStart"].as_str().unwrap_or_default(),
        r["machine"]["machineLoadAverage"]["atEnd"].as_str().unwrap_or_default(),
        r["setup"]["customers"],
        r["setup"]["codesPerSeries"],
        r["setup"]["issuedPerSecond"],
    );
    s.push_str(&format!(
        "| fsync 4 KiB | {} syncs/s implied | {} / {} / {} ms | |\n",
        r["fsync"]["impliedCommitsPerSecond"],
        r["fsync"]["latencyMillis"]["p50"],
        r["fsync"]["latencyMillis"]["p99"],
        r["fsync"]["latencyMillis"]["p999"]
    ));
    s.push_str(&row(
        "Raw redemption rows, 1 per commit, 1 task",
        &r["raw"]["perCommitC1"],
        "redemptionsPerSecond",
        "commitMillis",
    ));
    s.push_str(&row(
        &format!("Raw redemption rows, 1 per commit, {} tasks", r["setup"]["concurrency"]),
        &r["raw"]["perCommitCN"],
        "redemptionsPerSecond",
        "commitMillis",
    ));
    s.push_str(&row(
        "POST /v2/coupon/redeem, concurrency 1",
        &r["redeem"]["closedC1"],
        "redemptionsPerSecond",
        "latencyMillis",
    ));
    s.push_str(&row(
        &format!("POST /v2/coupon/redeem, concurrency {}", r["setup"]["concurrency"]),
        &r["redeem"]["closedCN"],
        "redemptionsPerSecond",
        "latencyMillis",
    ));
    let race = &r["redeem"]["singleCodeRace"];
    s.push_str(&format!(
        "| One code, {} requests from {} tasks at once | {} answers/s | {} / {} / {} ms | {} redeemed, {} refused |\n",
        race["ok"].as_u64().unwrap_or(0) + race["errors"].as_u64().unwrap_or(0),
        r["setup"]["concurrency"],
        round1((race["ok"].as_f64().unwrap_or(0.0) + race["errors"].as_f64().unwrap_or(0.0))
            / race["seconds"].as_f64().unwrap_or(1.0).max(1e-9)),
        race["latencyMillis"]["p50"],
        race["latencyMillis"]["p99"],
        race["latencyMillis"]["p999"],
        race["ok"],
        race["errors"],
    ));
    s.push_str(&format!(
        "\n| Ratio | Value |\n|---|---:|\n| Redemption rate / raw rate, concurrency 1 | {} |\n\
         | Redemption rate / raw rate, concurrency N | {} |\n| Redemption p99 / raw commit p99, concurrency 1 | {} |\n\
         | Redemption p99 / raw commit p99, concurrency N | {} |\n\nChecks: {} redemptions stored for {} answers of 200.\n",
        r["ratios"]["redeemC1ToRawC1"],
        r["ratios"]["redeemCNToRawCN"],
        r["ratios"]["redeemP99C1ToRawP99C1"],
        r["ratios"]["redeemP99CNToRawP99CN"],
        r["checks"]["redemptionsStored"],
        r["checks"]["okAnswers"],
    ));
    s
}
