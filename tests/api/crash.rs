//! Crash safety: the `perks` server is killed with SIGKILL at random moments while bills and
//! redemptions arrive; after every restart each acknowledged write is there exactly once, its
//! replay returns the original response, nothing unacknowledged is half-applied, and the ledger
//! verifies.
//!
//! The short form (CI) runs `PERKS_CRASH_CYCLES` cycles (default 200) per backend; the long run
//! documented in the README sets it to 1000.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{basic_header, postgres_url, with_database};

const DEFAULT_CYCLES: usize = 200;
/// Client tasks sending writes while the server runs.
const WRITERS: usize = 4;
const CUSTOMERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_and_duplicates_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    run(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_and_duplicates_nothing_on_postgres() {
    let Some(server) = postgres_url() else {
        eprintln!("SKIPPED: PostgreSQL variant (PERKS_TEST_POSTGRES_URL is unset)");
        return;
    };
    let name = format!("perks_t_crash_{}", std::process::id());
    admin(&server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    admin(&server, &format!("CREATE DATABASE {name}")).await;
    let dir = tempfile::tempdir().unwrap();
    run(&with_database(&server, &name), dir.path()).await;
    admin(&server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

async fn admin(server: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
}

fn perks(url: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_perks"));
    command
        .env_remove("PERKS_LISTEN")
        .env("PERKS_LOG", "error")
        // The clients here send far more than a till would; limits are not under test.
        .env("PERKS_RATE_LIMIT__ENABLED", "false")
        .args(["--database-url", url, "--no-demo"])
        .current_dir(dir);
    command
}

/// One write the clients sent, and what they were told.
#[derive(Clone)]
struct Sent {
    path: String,
    key: String,
    body: Value,
    /// Status and body bytes, when the server answered before it died.
    answer: Option<(u16, String)>,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bill,
    Redemption,
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(url: &str, dir: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let child = perks(url, dir)
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://{listen}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Server { child, base }
    }

    /// One authenticated read, so that the till's password hash is verified (slow by design)
    /// before the clock of a cycle starts, not inside it.
    async fn warm(self, auth: &str) -> Server {
        let r = reqwest::Client::new()
            .get(format!("{}/v1.1/organization/get?format=json", self.base))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        self
    }

    fn kill(mut self) {
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    auth: &str,
    sent: &Sent,
) -> Result<(u16, String), reqwest::Error> {
    let response = client
        .post(format!("{base}{}", sent.path))
        .header("authorization", auth)
        .header("idempotency-key", &sent.key)
        .header("content-type", "application/json")
        .body(sent.body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

async fn run(url: &str, dir: &std::path::Path) {
    let cycles = std::env::var("PERKS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES);
    let output =
        perks(url, dir).args(["org", "create", "--name", "Crash", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let org: Value = serde_json::from_slice(&output.stdout).unwrap();
    let auth = basic_header(
        org["till"]["username"].as_str().unwrap(),
        org["till"]["password"].as_str().unwrap(),
    );

    // Customers with enough points that every redemption can succeed.
    let server = Server::start(url, dir).await;
    let client = reqwest::Client::new();
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let mobile = format!("9198450{i:05}");
        let body = json!({"profiles": [{"firstName": "Crash", "identifiers": [{"type": "mobile", "value": mobile}]}]});
        let r = client
            .post(format!("{}/v2/customers", server.base))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let created: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let id = created["createdId"].as_i64().unwrap_or_else(|| panic!("{created}"));
        let seed = Sent {
            path: bill_path(&mobile),
            key: format!("seed-{i}"),
            body: bill_body(&format!("seed-{i}"), 1_000_000.0),
            answer: None,
            kind: Kind::Bill,
        };
        let (status, answer) = send(&client, &server.base, &auth, &seed).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        customers.push((id, mobile));
    }
    server.kill();

    let counter = Arc::new(AtomicU64::new(0));
    let mut all: Vec<Sent> = Vec::new();
    let mut unanswered = 0usize;
    let mut rng = rand::thread_rng();
    for _ in 0..cycles {
        let server = Server::start(url, dir).await.warm(&auth).await;
        let client = reqwest::Client::new();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::<Sent>::new()));
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let (client, base, auth) = (client.clone(), server.base.clone(), auth.clone());
            let (stop, log, counter, customers) =
                (stop.clone(), log.clone(), counter.clone(), customers.clone());
            writers.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let (id, mobile) = &customers[(n as usize) % customers.len()];
                    let mut sent = if n % 5 == 4 {
                        Sent {
                            path: format!("/v2/customers/{id}/redemptions"),
                            key: format!("r-{n}"),
                            body: json!({"points": 1, "commit": true, "skipValidation": true, "externalReferenceNumber": format!("r-{n}")}),
                            answer: None,
                            kind: Kind::Redemption,
                        }
                    } else {
                        Sent {
                            path: bill_path(mobile),
                            key: format!("b-{n}"),
                            body: bill_body(&format!("b-{n}"), 100.0 + (n % 7) as f64),
                            answer: None,
                            kind: Kind::Bill,
                        }
                    };
                    let answer = send(&client, &base, &auth, &sent).await.ok();
                    let dead = answer.is_none();
                    sent.answer = answer;
                    log.lock().await.push(sent);
                    if dead {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..150))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
        let cycle = std::mem::take(&mut *log.lock().await);

        // After the restart: every acknowledged write replays its original answer.
        let server = Server::start(url, dir).await.warm(&auth).await;
        let client = reqwest::Client::new();
        for sent in &cycle {
            match &sent.answer {
                Some((status, body)) => {
                    assert_eq!(*status, 200, "a write failed while the server ran: {body}");
                    let (replay_status, replay) =
                        send(&client, &server.base, &auth, sent).await.unwrap();
                    assert_eq!(
                        (replay_status, &replay),
                        (*status, body),
                        "replay of {} changed",
                        sent.key
                    );
                }
                None => unanswered += 1,
            }
        }
        server.kill();
        all.extend(cycle);
    }

    // Exactly once: each acknowledged bill and redemption is stored once; an unacknowledged one
    // is stored once or not at all, and only whole (a bill with its points, a redemption with
    // its ledger entry).
    let mut db = open(url).await;
    let bills: HashMap<String, i64> =
        db.counts("SELECT bill_number, COUNT(*) FROM transactions GROUP BY bill_number").await;
    let redemptions: HashMap<String, i64> = db.counts(
        "SELECT external_reference, COUNT(*) FROM points_redemptions GROUP BY external_reference",
    )
    .await;
    let mut acknowledged = 0usize;
    let mut applied_unacknowledged = 0usize;
    for sent in &all {
        let stored = match sent.kind {
            Kind::Bill => bills.get(&sent.key),
            Kind::Redemption => redemptions.get(&sent.key),
        }
        .copied()
        .unwrap_or(0);
        if sent.answer.is_some() {
            acknowledged += 1;
            assert_eq!(stored, 1, "acknowledged {} stored {stored} times", sent.key);
        } else {
            assert!(stored <= 1, "unacknowledged {} stored {stored} times", sent.key);
            applied_unacknowledged += stored as usize;
        }
    }
    let bills_without_points = db
        .scalar(
            "SELECT COUNT(*) FROM transactions t WHERE NOT EXISTS \
             (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id)",
        )
        .await;
    assert_eq!(bills_without_points, 0, "a bill was stored without its points");
    let verify = perks(url, dir).args(["verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "perks verify found a mismatch: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!(
        "crash test: {cycles} SIGKILL cycles, {} writes sent, {acknowledged} acknowledged, \
         {unanswered} unanswered ({applied_unacknowledged} of them applied whole), 0 lost, \
         0 duplicated, ledger verified",
        all.len()
    );
    assert!(acknowledged > cycles, "too few writes were acknowledged to mean anything");
}

fn bill_path(mobile: &str) -> String {
    format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE")
}

fn bill_body(number: &str, amount: f64) -> Value {
    json!({"type": "REGULAR", "billNumber": number, "billAmount": amount})
}

/// A direct connection to the database the server used, for the final census.
enum Census {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn open(url: &str) -> Census {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        Census::Sqlite(sqlx::SqliteConnection::connect(url).await.unwrap())
    } else {
        Census::Postgres(sqlx::PgConnection::connect(url).await.unwrap())
    }
}

impl Census {
    async fn counts(&mut self, sql: &str) -> HashMap<String, i64> {
        let rows: Vec<(String, i64)> = match self {
            Census::Sqlite(c) => sqlx::query_as(sql).fetch_all(c).await.unwrap(),
            Census::Postgres(c) => sqlx::query_as(sql).fetch_all(c).await.unwrap(),
        };
        rows.into_iter().collect()
    }

    async fn scalar(&mut self, sql: &str) -> i64 {
        match self {
            Census::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
            Census::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
        }
    }
}
