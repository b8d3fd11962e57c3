//! W6 (balance and customer reads) and W7 (a mix of 60% reads, 25% bills, 10% point redemptions
//! and 5% coupon redemptions) against a real `perks` server process over HTTP, with the load
//! generator pinned to one core and the server to the other, beside the limits of the same
//! machine measured in the same run.
//!
//! Run: `cargo bench --bench workloads` (SQLite in a temp dir), or with
//! `PERKS_BENCH_DATABASE_URL=postgres://…/fresh_empty_db`. Results go to
//! `bench/results/workloads-<backend>.json` and `.md`; the table is printed too.
//!
//! # Set-up (not measured)
//!
//! `perks org create` makes the org; `perks serve` (the `perks` binary of this build, rate limits
//! off) runs in its own process. When the machine has at least two cores and `taskset` exists
//! (and `PERKS_BENCH_PIN` is not `0`), the server runs on CPU 1 and this process (the load
//! generator, a one-worker tokio runtime and a `reqwest` client with keep-alive connections) on
//! CPU 0; `pinning` in the results says what was done. PostgreSQL's own processes are never
//! pinned. Through the API: `PERKS_BENCH_CUSTOMERS` customers (1,000) register and earn 10,000
//! points each with one bill; a coupon series gets `PERKS_BENCH_CODES` single-use codes (8,000),
//! issued round robin to the customers.
//!
//! # What each number means
//!
//! Latencies are wall-clock milliseconds in the generator (p50 / p99 / p99.9, nearest rank over all
//! samples of the phase); rates are answers with status 200 per wall-clock second. Closed loops
//! run `PERKS_BENCH_CONCURRENCY` (16) tasks that send the next request when the last one is
//! answered; open loops start requests on a fixed schedule at a share of the closed-loop maximum,
//! and count latency from the scheduled start (so queueing shows).
//!
//! 1. **`fsync`** — 4 KiB `write` + `fsync` in the temp dir (context for the write share of W7).
//! 2. **`httpCeiling`** — `GET /healthz` on the same server process: routing, the request-id and
//!    trace layers and HTTP/1.1 over loopback, with no authentication and no database.
//! 3. **`rawReads`** — the rows a W6 read needs, read with plain SQL from this process through
//!    the crate's own `Db` (read pool): for a customer read the `customers` row and its
//!    `customer_identifiers`; for a balance read the `loyalty_accounts` rows. The same 50/50 mix
//!    and customer draw as W6, closed loop at concurrency 1 and N. On SQLite this reads the
//!    server's database file (WAL) from a second process.
//! 4. **`w6`** — `GET /v2/customers/{id}` and `GET /v2/customers/{id}/points/balance` (50/50),
//!    till Basic auth, customers drawn uniformly: closed loop at 1 and N, open loops at
//!    `PERKS_BENCH_OPEN_LOADS` (`0.5,0.7`) of the closed-loop maximum.
//! 5. **`alone`** — each write of the mix alone, closed loop at N for half a phase:
//!    `bills` (`POST /v2/transactions`, 1,234.50, `Idempotency-Key`), `redemptions`
//!    (`POST /v2/customers/{id}/redemptions`, 10 points, `Idempotency-Key`), `coupons`
//!    (`POST /v2/coupon/redeem` of the next unused code, as its owner).
//! 6. **`w7`** — each request drawn from the mix (60% W6 reads, 25% bills, 10% redemptions, 5%
//!    coupon redemptions): closed loop at N, then open loops as for W6. `byKind` gives each kind's
//!    count, errors and service latency within the mix.
//! 7. **`ratios`** — `w6MaxToHttpCeiling` and `w6MaxToRawReads` (best W6 rate over the ceiling and
//!    over the raw reads at N); `w7MaxToAloneMix` = the best W7 rate over what the same mix would
//!    reach if each kind cost what it costs alone, `1 / Σ share / rate alone` (1.0 = the kinds do
//!    not slow each other down).
//!
//! At the end the server is stopped and `perks verify` checks the ledger.
//!
//! Sizes: `PERKS_BENCH_SECONDS` (10: each W6/W7 phase), `PERKS_BENCH_CUSTOMERS` (1,000),
//! `PERKS_BENCH_CODES` (8,000), `PERKS_BENCH_CONCURRENCY` (16), `PERKS_BENCH_OPEN_LOADS`
//! (`0.5,0.7`), `PERKS_BENCH_MAX_IN_FLIGHT` (5,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use perks::config::{DatabaseUrl, Settings};
use perks::db::{Backend, Db};
use serde_json::{Value, json};

use common::{
    Answer, Phase, SendRequest, closed_loop, cpu_model, env_f64, env_usize, latency_json,
    load_average, open_loop, ratio, round1, sync_probe,
};

/// The mix of W7, in percent of requests.
const MIX: [(&str, u64); 4] = [("read", 60), ("bill", 25), ("redemption", 10), ("coupon", 5)];
/// Points each redemption takes; every customer earns 10,000 first.
const REDEEM_POINTS: u64 = 10;

fn mobile(i: usize) -> String {
    format!("9196{i:08}")
}

/// Which cores the generator and the server run on.
struct Pinning {
    server_prefix: Vec<String>,
    description: String,
    /// The machine's cores, counted before pinning (a pinned process sees one).
    cores: usize,
}

/// Pins this process (every thread it has and will start) to CPU 0, and says how to start the
/// server on CPU 1, when the machine and `PERKS_BENCH_PIN` allow it.
fn pin() -> Pinning {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let wanted = std::env::var("PERKS_BENCH_PIN").map(|v| v != "0").unwrap_or(true);
    if wanted && cores >= 2 {
        let own = std::process::id().to_string();
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &own])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if pinned {
            return Pinning {
                server_prefix: vec!["taskset".into(), "-c".into(), "1".into()],
                description: format!(
                    "load generator on CPU 0, server on CPU 1 (taskset); {cores} cores; \
                     PostgreSQL's processes unpinned"
                ),
                cores,
            };
        }
    }
    Pinning { server_prefix: Vec::new(), description: format!("not pinned ({cores} cores)"), cores }
}

/// The `perks` binary of this build, with the bench's settings.
fn perks(url: &str, dir: &std::path::Path, prefix: &[String]) -> Command {
    let binary = env!("CARGO_BIN_EXE_perks");
    let mut command = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    command
        .env_remove("PERKS_LISTEN")
        .env("PERKS_LOG", "error")
        .env("PERKS_RATE_LIMIT__ENABLED", "false")
        .args(["--database-url", url, "--no-demo"])
        .current_dir(dir);
    command
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(url: &str, dir: &std::path::Path, prefix: &[String]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let child = perks(url, dir, prefix)
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let base = format!("http://{listen}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server { child, base }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// One API request of the generator.
struct Call {
    method: reqwest::Method,
    path: String,
    body: Option<String>,
    idempotency_key: Option<String>,
}

impl Call {
    fn get(path: String) -> Call {
        Call { method: reqwest::Method::GET, path, body: None, idempotency_key: None }
    }

    fn post(path: String, body: Value, idempotency_key: Option<String>) -> Call {
        Call { method: reqwest::Method::POST, path, body: Some(body.to_string()), idempotency_key }
    }
}

async fn execute(client: &reqwest::Client, base: &str, auth: &str, call: Call) -> Answer {
    let mut request =
        client.request(call.method, format!("{base}{}", call.path)).header("authorization", auth);
    if let Some(key) = call.idempotency_key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = call.body {
        request = request.header("content-type", "application/json").body(body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        // A transport failure counts as an error with status 0.
        Err(e) => (0, Bytes::from(e.to_string())),
    }
}

/// What the generator knows about the seeded data.
struct World {
    client: reqwest::Client,
    base: String,
    auth: String,
    customers: Vec<(i64, String)>,
    codes: Vec<(String, String)>,
    next_code: AtomicUsize,
    run: String,
    billing_date: String,
}

impl World {
    fn customer(&self, draw: u64) -> &(i64, String) {
        &self.customers[(draw as usize / 7) % self.customers.len()]
    }

    fn read(&self, draw: u64) -> Call {
        let (id, _) = self.customer(draw);
        if draw.is_multiple_of(2) {
            Call::get(format!("/v2/customers/{id}"))
        } else {
            Call::get(format!("/v2/customers/{id}/points/balance"))
        }
    }

    fn bill(&self, n: u64, draw: u64) -> Call {
        let (_, mobile) = self.customer(draw);
        Call::post(
            format!(
                "/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE"
            ),
            json!({"type": "REGULAR", "billNumber": format!("W7-{}-{n}", self.run),
                "billAmount": 1234.5, "grossAmount": 1234.5, "discount": 0,
                "billingDate": self.billing_date}),
            Some(format!("w7-bill-{}-{n}", self.run)),
        )
    }

    fn redemption(&self, n: u64, draw: u64) -> Call {
        let (id, _) = self.customer(draw);
        Call::post(
            format!("/v2/customers/{id}/redemptions"),
            json!({"points": REDEEM_POINTS, "commit": true, "skipValidation": true,
                "transactionNumber": format!("R-{}-{n}", self.run)}),
            Some(format!("w7-redeem-{}-{n}", self.run)),
        )
    }

    /// The next unused coupon code, redeemed by its owner; `None` when they are used up.
    fn coupon(&self, n: u64) -> Option<Call> {
        let (code, owner) = self.codes.get(self.next_code.fetch_add(1, Ordering::Relaxed))?;
        Some(Call::post(
            "/v2/coupon/redeem".into(),
            json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": owner},
                "transactionNumber": format!("C-{}-{n}", self.run), "billAmount": 100}),
            None,
        ))
    }

    /// The request of kind `kind`; coupons fall back to a read once the codes are used up.
    fn call(&self, kind: &str, n: u64, draw: u64) -> Call {
        match kind {
            "bill" => self.bill(n, draw),
            "redemption" => self.redemption(n, draw),
            "coupon" => self.coupon(n).unwrap_or_else(|| self.read(draw)),
            _ => self.read(draw),
        }
    }
}

/// Service latencies and errors per kind of request, within one phase of the mix.
type ByKind = Arc<Mutex<BTreeMap<&'static str, (Vec<Duration>, usize)>>>;

/// A sender of one kind of request (`None`: the W7 mix, recording each kind in `by_kind`).
fn sender(world: &Arc<World>, kind: Option<&'static str>, by_kind: &ByKind) -> Arc<SendRequest> {
    let (world, by_kind) = (world.clone(), by_kind.clone());
    Arc::new(move |n, draw| {
        let kind = kind.unwrap_or_else(|| {
            // Draw the kind from bits the customer draw does not use.
            let mut roll = (draw >> 20) % 100;
            MIX.iter()
                .find(|(_, share)| {
                    let hit = roll < *share;
                    roll = roll.saturating_sub(*share);
                    hit
                })
                .map_or("read", |(k, _)| *k)
        });
        let call = world.call(kind, n, draw);
        let (world, by_kind) = (world.clone(), by_kind.clone());
        Box::pin(async move {
            let started = Instant::now();
            let answer = execute(&world.client, &world.base, &world.auth, call).await;
            let mut all = by_kind.lock().unwrap();
            let entry = all.entry(kind).or_default();
            entry.0.push(started.elapsed());
            entry.1 += usize::from(answer.0 != 200);
            answer
        })
    })
}

fn by_kind_json(by_kind: &ByKind) -> Value {
    let mut all = by_kind.lock().unwrap();
    let out: serde_json::Map<String, Value> = all
        .iter_mut()
        .map(|(kind, (latencies, errors))| {
            (
                (*kind).to_string(),
                json!({"requests": latencies.len(), "errors": errors,
                "serviceMillis": latency_json(latencies)}),
            )
        })
        .collect();
    all.clear();
    Value::Object(out)
}

/// The healthz sender: the HTTP ceiling of the same server.
fn healthz(world: &Arc<World>) -> Arc<SendRequest> {
    let world = world.clone();
    Arc::new(move |_, _| {
        let world = world.clone();
        Box::pin(async move {
            let call = Call::get("/healthz".into());
            execute(&world.client, &world.base, "", call).await
        })
    })
}

/// Raw reads of the rows behind a W6 read, through the crate's own read pool.
fn raw_reads(db: &Db, org: i64, world: &Arc<World>) -> Arc<SendRequest> {
    let (db, world) = (db.clone(), world.clone());
    Arc::new(move |_, draw| {
        let (db, id) = (db.clone(), world.customer(draw).0);
        Box::pin(async move {
            let mut conn = db.read().await.unwrap();
            let rows = if draw.is_multiple_of(2) {
                let customer = perks::dispatch!(&mut conn, |e| sqlx::query_as::<
                    _,
                    (i64, String, String, String, String, String, String, i64),
                >(
                    "SELECT id, first_name, last_name, loyalty_type, status, extended_fields, \
                     custom_fields, registered_at FROM customers WHERE org_id = $1 AND id = $2"
                )
                .bind(org)
                .bind(id)
                .fetch_all(e)
                .await)
                .unwrap();
                let identifiers = perks::dispatch!(&mut conn, |e| sqlx::query_as::<
                    _,
                    (String, String, String, String),
                >(
                    "SELECT source, account_id, type, value FROM customer_identifiers \
                     WHERE org_id = $1 AND customer_id = $2"
                )
                .bind(org)
                .bind(id)
                .fetch_all(e)
                .await)
                .unwrap();
                customer.len() + identifiers.len()
            } else {
                perks::dispatch!(&mut conn, |e| sqlx::query_as::<_, (i64, i32, i64, i64, i64)>(
                    "SELECT program_id, tier_number, current_points, promised_points, \
                     lifetime_points FROM loyalty_accounts WHERE org_id = $1 AND customer_id = $2"
                )
                .bind(org)
                .bind(id)
                .fetch_all(e)
                .await)
                .unwrap()
                .len()
            };
            if rows == 0 { (404, Bytes::new()) } else { (200, Bytes::new()) }
        })
    })
}

/// Seeds customers (each with one bill) and coupon codes through the API.
async fn seed(world: &mut World, customers: usize, codes: usize, concurrency: usize) {
    let chunks: Vec<Vec<usize>> = (0..customers)
        .collect::<Vec<_>>()
        .chunks(customers.div_ceil(concurrency).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut handles = Vec::new();
    for chunk in chunks {
        let (client, base, auth) = (world.client.clone(), world.base.clone(), world.auth.clone());
        handles.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in chunk {
                let mobile = mobile(i);
                let body = json!({"profiles": [{"firstName": "Bench", "lastName": format!("W{i}"),
                    "identifiers": [{"type": "mobile", "value": mobile}]}]});
                let call = Call::post("/v2/customers".into(), body, None);
                let (status, bytes) = execute(&client, &base, &auth, call).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                let id = serde_json::from_slice::<Value>(&bytes).unwrap()["createdId"]
                    .as_i64()
                    .unwrap();
                let bill = Call::post(
                    format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE"),
                    json!({"type": "REGULAR", "billNumber": format!("SEED-{i}"),
                        "billAmount": 100_000, "grossAmount": 100_000, "discount": 0}),
                    None,
                );
                let (status, bytes) = execute(&client, &base, &auth, bill).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                made.push((i, id, mobile));
            }
            made
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all.sort();
    world.customers = all.into_iter().map(|(_, id, mobile)| (id, mobile)).collect();

    let series = json!({"CouponSeriesV2": {"description": "Bench W7", "discountCode": "BENCHW7",
        "validTillDate": "2099-01-01T00:00:00Z", "discountType": "ABS", "discountValue": 10,
        "clientHandlingType": "DISC_CODE", "expiryStrategyType": "SERIES_EXPIRY", "anyUser": false,
        "smsTemplate": "", "isSMSDisabled": true, "isMultipleVouchersPerUserAllowed": true,
        "randomCodeLength": 12}});
    let call = Call::post("/v2/coupon/series".into(), series, None);
    let (status, bytes) = execute(&world.client, &world.base, &world.auth, call).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let series = serde_json::from_slice::<Value>(&bytes).unwrap()["entity"]["id"].as_i64().unwrap();
    let mut turn = 0;
    while world.codes.len() < codes {
        let n = (codes - world.codes.len()).min(500);
        let owner = world.customers[turn % world.customers.len()].1.clone();
        turn += 1;
        let body = json!({"seriesId": series, "count": n, "customer": {"mobile": owner}});
        let call = Call::post("/v2/coupon/issue/multiple".into(), body, None);
        let (status, bytes) = execute(&world.client, &world.base, &world.auth, call).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        for c in reply["coupons"].as_array().unwrap() {
            world.codes.push((c["code"].as_str().unwrap().to_string(), owner.clone()));
        }
    }
}

fn main() {
    let pinning = pin();
    let workers = if pinning.server_prefix.is_empty() { 2 } else { 1 };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build();
    runtime.unwrap().block_on(run(pinning));
}

async fn run(pinning: Pinning) {
    let seconds = env_f64("PERKS_BENCH_SECONDS", 10.0);
    let customers = env_usize("PERKS_BENCH_CUSTOMERS", 1_000).max(1);
    let codes = env_usize("PERKS_BENCH_CODES", 8_000);
    let concurrency = env_usize("PERKS_BENCH_CONCURRENCY", 16).max(1);
    let max_in_flight = env_usize("PERKS_BENCH_MAX_IN_FLIGHT", 5_000).max(1);
    let open_loads: Vec<f64> = std::env::var("PERKS_BENCH_OPEN_LOADS")
        .unwrap_or_else(|_| "0.5,0.7".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|v: &f64| *v > 0.0 && *v <= 1.0)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PERKS_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let backend = if url.starts_with("postgres") { Backend::Postgres } else { Backend::Sqlite };
    let backend_name = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    eprintln!("workloads on {backend_name}; {}", pinning.description);
    let load_at_start = load_average();
    let fsync = sync_probe(dir.path(), 1_000, Duration::from_secs(3), false);

    let output = perks(&url, dir.path(), &[])
        .args(["org", "create", "--name", "Bench", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let org: Value = serde_json::from_slice(&output.stdout).unwrap();
    let org_id = org["orgId"].as_i64().or_else(|| org["org"]["id"].as_i64()).unwrap_or(0);
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(
                "{}:{}",
                org["till"]["username"].as_str().unwrap(),
                perks::auth::password::md5_hex(org["till"]["password"].as_str().unwrap())
            )
        )
    );
    let server = Server::start(&url, dir.path(), &pinning.server_prefix).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1_024).build().unwrap();
    let run_id = format!("{}-{}", std::process::id(), perks::db::now_millis() % 1_000_000);
    let mut world = World {
        client,
        base: server.base.clone(),
        auth,
        customers: Vec::new(),
        codes: Vec::new(),
        next_code: AtomicUsize::new(0),
        run: run_id,
        billing_date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let seeding = Instant::now();
    seed(&mut world, customers, codes, concurrency).await;
    eprintln!(
        "seeded {} customers and {} codes in {:.1}s",
        world.customers.len(),
        world.codes.len(),
        seeding.elapsed().as_secs_f64()
    );
    let world = Arc::new(world);
    let sequence = Arc::new(AtomicU64::new(0));
    let by_kind: ByKind = Arc::default();

    // 2. The HTTP ceiling of the same server.
    let mut ceiling =
        closed_loop(&healthz(&world), &sequence, concurrency, seconds / 2.0, usize::MAX).await;
    eprintln!("http ceiling: {:.0} req/s", ceiling.rate());
    let ceiling = ceiling.summary(json!({"concurrency": concurrency}));

    // 3. Raw reads from this process.
    let settings = Settings { database_url: DatabaseUrl(url.clone()), ..Settings::default() };
    let db = Db::connect(&settings).await.unwrap();
    let raw = raw_reads(&db, org_id, &world);
    let mut raw_results = serde_json::Map::new();
    for (name, c) in [("c1", 1), ("cN", concurrency)] {
        let mut phase = closed_loop(&raw, &sequence, c, seconds / 2.0, usize::MAX).await;
        assert_eq!(phase.errors(), 0, "raw reads failed: {:?}", phase.first_error);
        eprintln!("raw reads {name}: {:.0}/s", phase.rate());
        raw_results.insert(name.into(), phase.summary(json!({"concurrency": c})));
    }
    db.close().await;

    // 4. W6.
    let reads = sender(&world, Some("read"), &by_kind);
    let mut w6 = serde_json::Map::new();
    let mut w6_best = 0.0f64;
    for (name, c) in [("closedC1", 1), ("closedCN", concurrency)] {
        let mut phase = closed_loop(&reads, &sequence, c, seconds, usize::MAX).await;
        w6_best = w6_best.max(phase.rate());
        eprintln!("W6 {name}: {:.0} reads/s, {} errors", phase.rate(), phase.errors());
        by_kind_json(&by_kind);
        w6.insert(name.into(), phase.summary(json!({"concurrency": c})));
    }
    w6.insert(
        "open".into(),
        open_phases(&reads, &sequence, w6_best, &open_loads, seconds, max_in_flight, &by_kind)
            .await,
    );

    // 5. Each write of the mix alone.
    let mut alone = serde_json::Map::new();
    let mut alone_rates = BTreeMap::from([("read", w6_best)]);
    for kind in ["bill", "redemption", "coupon"] {
        let mut phase = closed_loop(
            &sender(&world, Some(kind), &by_kind),
            &sequence,
            concurrency,
            seconds / 2.0,
            usize::MAX,
        )
        .await;
        by_kind_json(&by_kind);
        eprintln!("{kind} alone: {:.0}/s, {} errors", phase.rate(), phase.errors());
        alone_rates.insert(kind, phase.rate());
        alone.insert(kind.into(), phase.summary(json!({"concurrency": concurrency})));
    }

    // 6. W7.
    let mix = sender(&world, None, &by_kind);
    let mut w7 = serde_json::Map::new();
    let mut w7_phase = closed_loop(&mix, &sequence, concurrency, seconds, usize::MAX).await;
    let w7_best = w7_phase.rate();
    eprintln!("W7 closed c{concurrency}: {w7_best:.0}/s, {} errors", w7_phase.errors());
    let kinds = by_kind_json(&by_kind);
    w7.insert(
        "closedCN".into(),
        w7_phase.summary(json!({"concurrency": concurrency, "byKind": kinds})),
    );
    w7.insert(
        "open".into(),
        open_phases(&mix, &sequence, w7_best, &open_loads, seconds, max_in_flight, &by_kind).await,
    );
    let codes_used = world.next_code.load(Ordering::Relaxed).min(world.codes.len());

    server.stop();
    let verify = perks(&url, dir.path(), &[]).arg("verify").output().unwrap();
    let verify_report: Value = serde_json::from_slice(&verify.stdout).unwrap_or(Value::Null);
    assert!(verify.status.success(), "perks verify failed: {verify_report}");

    let alone_mix: f64 = 1.0
        / MIX
            .iter()
            .map(|(kind, share)| *share as f64 / 100.0 / alone_rates[kind].max(1e-9))
            .sum::<f64>();
    let ratios = json!({
        "w6MaxToHttpCeiling": ratio(&json!(w6_best), &ceiling["okPerSecond"]),
        "w6MaxToRawReads": ratio(&json!(w6_best), &raw_results["cN"]["okPerSecond"]),
        "w7AloneMixPerSecond": round1(alone_mix),
        "w7MaxToAloneMix": ratio(&json!(w7_best), &json!(alone_mix)),
    });
    let result = json!({
        "benchmark": "workloads",
        "backend": backend_name,
        "machine": {"cpu": cpu_model(), "cores": pinning.cores,
            "loadAverageAtStart": load_at_start, "loadAverageAtEnd": load_average()},
        "pinning": pinning.description,
        "settings": {"seconds": seconds, "customers": customers, "codes": codes, "codesUsed": codes_used,
            "concurrency": concurrency, "openLoads": open_loads, "mix": MIX.iter().map(|(k, s)| json!({"kind": k, "percent": s})).collect::<Vec<_>>()},
        "fsync": fsync,
        "httpCeiling": ceiling,
        "rawReads": raw_results,
        "w6": w6,
        "alone": alone,
        "w7": w7,
        "ratios": ratios,
        "verify": verify_report,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join(format!("workloads-{backend_name}.json")),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    let table = markdown(&result);
    std::fs::write(out.join(format!("workloads-{backend_name}.md")), &table).unwrap();
    println!("{table}");
}

/// Open loops at each share of `best`, as JSON.
async fn open_phases(
    send: &Arc<SendRequest>,
    sequence: &Arc<AtomicU64>,
    best: f64,
    loads: &[f64],
    seconds: f64,
    max_in_flight: usize,
    by_kind: &ByKind,
) -> Value {
    let mut out = Vec::new();
    for load in loads {
        let rate = (best * load).max(1.0);
        let mut phase: Phase =
            open_loop(send, sequence, rate, seconds, (usize::MAX, max_in_flight)).await;
        eprintln!(
            "  open {:.0}% ({rate:.0}/s): {:.0} ok/s, {} errors, {} dropped",
            load * 100.0,
            phase.rate(),
            phase.errors(),
            phase.dropped
        );
        let kinds = by_kind_json(by_kind);
        out.push(phase.summary(json!({"loadOfClosedLoopMax": load,
            "targetPerSecond": round1(rate), "byKind": kinds})));
    }
    json!(out)
}

fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat =
        |v: &Value| format!("{:.2} / {:.2} / {:.2}", f(&v["p50"]), f(&v["p99"]), f(&v["p999"]));
    let mut out = format!(
        "## W6 reads and W7 mix ({}), {}\n\nMachine: {} × {}; {}; load average {} → {}.\n\n\
         | Phase | ok/s | p50 / p99 / p99.9 ms | errors | machine busy |\n|---|---:|---|---:|---:|\n",
        r["backend"].as_str().unwrap_or(""),
        chrono::Utc::now().format("%Y-%m-%d"),
        r["machine"]["cores"],
        r["machine"]["cpu"].as_str().unwrap_or(""),
        r["pinning"].as_str().unwrap_or(""),
        r["machine"]["loadAverageAtStart"].as_str().unwrap_or(""),
        r["machine"]["loadAverageAtEnd"].as_str().unwrap_or(""),
    );
    let mut row = |label: String, p: &Value| {
        out.push_str(&format!(
            "| {label} | {:.1} | {} | {} | {:.0}% |\n",
            f(&p["okPerSecond"]),
            lat(&p["latencyMillis"]),
            p["errors"],
            f(&p["cpu"]["machineBusyShare"]) * 100.0
        ));
    };
    row("HTTP ceiling (`GET /healthz`), closed N".into(), &r["httpCeiling"]);
    row("raw reads, concurrency 1".into(), &r["rawReads"]["c1"]);
    row("raw reads, concurrency N".into(), &r["rawReads"]["cN"]);
    row("W6, concurrency 1".into(), &r["w6"]["closedC1"]);
    row("W6, concurrency N".into(), &r["w6"]["closedCN"]);
    for p in r["w6"]["open"].as_array().into_iter().flatten() {
        row(format!("W6 open loop at {:.0}%", f(&p["loadOfClosedLoopMax"]) * 100.0), p);
    }
    for kind in ["bill", "redemption", "coupon"] {
        row(format!("{kind} alone, concurrency N"), &r["alone"][kind]);
    }
    row("W7 mix, concurrency N".into(), &r["w7"]["closedCN"]);
    for p in r["w7"]["open"].as_array().into_iter().flatten() {
        row(format!("W7 open loop at {:.0}%", f(&p["loadOfClosedLoopMax"]) * 100.0), p);
    }
    let ratios = &r["ratios"];
    out.push_str(&format!(
        "\nRatios: W6 max / HTTP ceiling {}; W6 max / raw reads (N) {}; W7 max / the same mix at \
         each kind's rate alone ({} /s) {}. fsync p50 {} ms. `perks verify`: {}.\n",
        ratios["w6MaxToHttpCeiling"],
        ratios["w6MaxToRawReads"],
        ratios["w7AloneMixPerSecond"],
        ratios["w7MaxToAloneMix"],
        r["fsync"]["latencyMillis"]["p50"],
        if r["verify"]["ok"].as_bool() == Some(true) { "clean" } else { "NOT clean" },
    ));
    if let Some(kinds) = r["w7"]["closedCN"]["byKind"].as_object() {
        out.push_str("\nW7 at concurrency N, by kind (service ms p50 / p99 / p99.9): ");
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k} {} ({} requests, {} errors)",
                    lat(&v["serviceMillis"]),
                    v["requests"],
                    v["errors"]
                )
            })
            .collect();
        out.push_str(&parts.join("; "));
        out.push('\n');
    }
    out
}
