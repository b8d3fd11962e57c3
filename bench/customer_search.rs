//! Customer search at scale: seeds N customers (default 1,000,000) with a mobile, an email and an
//! external id each, then measures `GET /v2/customers/search` through the full HTTP stack against
//! the raw indexed SQL query of the same search on the same database, and reports their ratio.
//!
//! Run: `cargo bench --bench customer_search` (SQLite in a temp dir), or with
//! `PERKS_BENCH_DATABASE_URL=postgres://…/empty_db`. `PERKS_BENCH_CUSTOMERS` and
//! `PERKS_BENCH_QUERIES` change the sizes. Results go to `bench/results/customer_search-<backend>.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use perks::app::{AppState, router};
use perks::config::{DatabaseUrl, Settings};
use perks::customers::routes_v2::search_targets;
use perks::customers::store::search;
use perks::db::Backend;
use perks::org::model::{NewOrg, OrgId};
use perks::org::service::provision_org;
use serde_json::json;
use tower::ServiceExt;

use common::{Lcg, env_usize, percentile};

const FIRST: [&str; 20] = [
    "maria", "mario", "marta", "ana", "anabel", "bruno", "carla", "diego", "elena", "fabio",
    "gina", "hugo", "ines", "joao", "karla", "luis", "nadia", "oscar", "paula", "rafael",
];
const LAST: [&str; 10] =
    ["silva", "costa", "lopez", "rossi", "diaz", "mendes", "souza", "ferreira", "gomes", "alves"];
const BATCH: usize = 5_000;

fn mobile(i: usize) -> String {
    // Distinct 10-digit national numbers spread over the range, with country code 91.
    format!("91{}", 6_000_000_000u64 + (i as u64 * 2_654_435_761) % 3_999_999_999)
}

#[tokio::main]
async fn main() {
    let customers = env_usize("PERKS_BENCH_CUSTOMERS", 1_000_000);
    let queries = env_usize("PERKS_BENCH_QUERIES", 2_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PERKS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let backend = Backend::from_url(&url).unwrap();
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

    eprintln!("seeding {customers} customers on {backend:?} …");
    let seed_started = Instant::now();
    let mut first_id = None;
    for start in (0..customers).step_by(BATCH) {
        let end = (start + BATCH).min(customers);
        let now = 1_700_000_000_000i64;
        let mut rows = Vec::with_capacity(end - start);
        for i in start..end {
            let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / FIRST.len()) % LAST.len()]);
            rows.push(format!(
                "({}, '{first}', '{last}', '{first} {last}', 'loyalty', {now}, {now}, {now})",
                org.org_id
            ));
        }
        let mut tx = state.db.begin_write().await.unwrap();
        let sql = format!(
            "INSERT INTO customers (org_id, first_name, last_name, search_name, loyalty_type, \
             registered_at, created_at, updated_at) VALUES {} RETURNING id",
            rows.join(", ")
        );
        let ids: Vec<i64> =
            perks::dispatch!(&mut tx, |e| sqlx::query_scalar(&sql).fetch_all(e).await).unwrap();
        first_id.get_or_insert(ids[0]);
        let mut identifiers = Vec::with_capacity(ids.len() * 3);
        for (offset, id) in ids.iter().enumerate() {
            let i = start + offset;
            for (kind, value) in [
                ("mobile", mobile(i)),
                ("email", format!("user{i}@example{}.com", i % 50)),
                ("externalId", format!("EXT{i:08}")),
            ] {
                identifiers.push(format!(
                    "({}, {id}, 'INSTORE', '', '{kind}', '{value}', {now})",
                    org.org_id
                ));
            }
        }
        let sql = format!(
            "INSERT INTO customer_identifiers (org_id, customer_id, source, account_id, type, value, \
             created_at) VALUES {}",
            identifiers.join(", ")
        );
        perks::dispatch!(&mut tx, |e| sqlx::query(&sql)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))
        .unwrap();
        tx.commit().await.unwrap();
    }
    if backend == Backend::Postgres {
        let mut tx = state.db.begin_write().await.unwrap();
        perks::dispatch!(&mut tx, |e| sqlx::query("ANALYZE")
            .execute(e)
            .await
            .map(|r| r.rows_affected()))
        .unwrap();
        tx.commit().await.unwrap();
    } else {
        let mut tx = state.db.begin_write().await.unwrap();
        perks::dispatch!(&mut tx, |e| sqlx::query("ANALYZE")
            .execute(e)
            .await
            .map(|r| r.rows_affected()))
        .unwrap();
        tx.commit().await.unwrap();
    }
    let seed_seconds = seed_started.elapsed().as_secs_f64();
    eprintln!("seeded in {seed_seconds:.1}s");

    // The same query mix for both measurements: mobile, email and name prefixes.
    let mut rng = Lcg(42);
    let texts: Vec<String> = (0..queries)
        .map(|q| {
            let i = (rng.next() as usize) % customers;
            match q % 3 {
                0 => mobile(i)[..9].to_string(),
                1 => format!("user{i}@"),
                _ => format!(
                    "{} {}",
                    FIRST[i % FIRST.len()],
                    &LAST[(i / FIRST.len()) % LAST.len()][..2]
                ),
            }
        })
        .collect();

    let app = router(state.clone());
    let mut api = Vec::with_capacity(queries);
    let mut matched = 0i64;
    for text in &texts {
        let uri = format!(
            "/v2/customers/search?q={}&limit=10",
            text.replace(' ', "%20").replace('@', "%40")
        );
        let request = Request::get(uri).header("authorization", &auth).body(Body::empty()).unwrap();
        let started = Instant::now();
        let response = app.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        api.push(started.elapsed());
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        matched += json["pagination"]["total"].as_i64().unwrap_or(0);
    }
    let mut raw = Vec::with_capacity(queries);
    for text in &texts {
        let started = Instant::now();
        let mut conn = state.db.read().await.unwrap();
        search(&mut conn, OrgId(org.org_id), &search_targets(text), 10, 0).await.unwrap();
        raw.push(started.elapsed());
    }
    api.sort();
    raw.sort();
    let (api_p50, raw_p50) = (percentile(&api, 0.5), percentile(&raw, 0.5));
    let result = json!({
        "benchmark": "customer_search",
        "backend": format!("{backend:?}"),
        "customers": customers,
        "queries": queries,
        "seedSeconds": seed_seconds,
        "averageMatches": matched as f64 / queries as f64,
        "apiMillis": {"p50": api_p50, "p95": percentile(&api, 0.95), "p99": percentile(&api, 0.99)},
        "rawSqlMillis": {"p50": raw_p50, "p95": percentile(&raw, 0.95), "p99": percentile(&raw, 0.99)},
        "apiToRawP50": api_p50 / raw_p50,
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    let path = format!(
        "{}/bench/results/customer_search-{}.json",
        env!("CARGO_MANIFEST_DIR"),
        format!("{backend:?}").to_lowercase()
    );
    std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    eprintln!("written to {path}");
    state.db.close().await;
}
