//! The test harness: a fresh app per test on SQLite (temp file) or PostgreSQL (a database cloned
//! from a migrated template, dropped afterwards), with a provisioned org and request helpers.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use perks::app::{AppState, router};
use perks::config::{DatabaseUrl, Settings};
use perks::org::model::NewOrg;
use perks::org::service::{ProvisionedOrg, provision_org};
use serde_json::Value;
use sqlx::Connection;
use tokio::sync::OnceCell;
use tower::ServiceExt;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The PostgreSQL server URL for tests, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var("PERKS_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// The same server URL with another database name (`postgres://user@host:port/DB?query`).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates (once per migration set, guarded across processes by an advisory lock) a migrated
/// template database and returns its name.
async fn template(server_url: &str) -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("perks_tpl_{}", perks::db::migrations_fingerprint());
            let mut admin =
                sqlx::PgConnection::connect(server_url).await.expect("connect to PostgreSQL");
            sqlx::query("SELECT pg_advisory_lock(727274)").execute(&mut admin).await.unwrap();
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut admin)
                    .await
                    .unwrap();
            if exists.is_none() {
                let building = format!("{name}_building");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {building}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let settings = Settings {
                    database_url: DatabaseUrl(with_database(server_url, &building)),
                    ..Settings::default()
                };
                let db = perks::db::Db::connect(&settings).await.unwrap();
                perks::db::migrate(&db).await.unwrap();
                db.close().await;
                // The closed pool's server sessions end asynchronously: wait for them to go.
                let rename = format!("ALTER DATABASE {building} RENAME TO {name}");
                let terminate = format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{building}' AND pid <> pg_backend_pid()"
                );
                for attempt in 0..100 {
                    let _ = sqlx::query(&terminate).execute(&mut admin).await;
                    match sqlx::query(&rename).execute(&mut admin).await {
                        Ok(_) => break,
                        Err(e) if attempt < 99 => {
                            let _ = e;
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot publish the template database: {e}"),
                    }
                }
            }
            sqlx::query("SELECT pg_advisory_unlock(727274)").execute(&mut admin).await.unwrap();
            admin.close().await.ok();
            name
        })
        .await
        .clone()
}

/// One running app with one provisioned org.
pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub org: ProvisionedOrg,
    _dir: Option<tempfile::TempDir>,
    pg_database: Option<(String, String)>,
}

impl TestApp {
    /// A fresh app, or `None` (reported as skipped) for PostgreSQL when no server is configured.
    pub async fn new(backend: Backend) -> Option<TestApp> {
        Self::with_settings(backend, |_| {}).await
    }

    pub async fn with_settings(
        backend: Backend,
        adjust: impl FnOnce(&mut Settings),
    ) -> Option<TestApp> {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
        let mut settings =
            Settings { listen: "127.0.0.1:0".into(), demo: false, ..Settings::default() };
        let (dir, pg_database) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("perks.db");
                settings.database_url = DatabaseUrl(format!("sqlite://{}", path.display()));
                (Some(dir), None)
            }
            Backend::Postgres => {
                let Some(server) = postgres_url() else {
                    eprintln!("SKIPPED: PostgreSQL variant (PERKS_TEST_POSTGRES_URL is unset)");
                    return None;
                };
                let template = template(&server).await;
                let name = format!(
                    "perks_t_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
                let mut created = false;
                // CREATE DATABASE … TEMPLATE can collide with another clone in progress: retry.
                for attempt in 0..20 {
                    match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                        .execute(&mut admin)
                        .await
                    {
                        Ok(_) => {
                            created = true;
                            break;
                        }
                        Err(e) if attempt < 19 => {
                            let _ = e;
                            tokio::time::sleep(std::time::Duration::from_millis(
                                50 * (attempt + 1),
                            ))
                            .await;
                        }
                        Err(e) => panic!("cannot clone the template database: {e}"),
                    }
                }
                assert!(created);
                admin.close().await.ok();
                settings.database_url = DatabaseUrl(with_database(&server, &name));
                settings.postgres.max_connections = 8;
                (None, Some((server, name)))
            }
        };
        adjust(&mut settings);
        let state = AppState::new(settings).await.unwrap();
        let new_org = NewOrg::parse("Acme", "Asia/Kolkata", "INR", "en").unwrap();
        let org = provision_org(&state.db, &new_org, 3600).await.unwrap();
        let router = router(state.clone());
        Some(TestApp { state, router, org, _dir: dir, pg_database })
    }

    /// Provisions another org in the same database (for isolation tests).
    pub async fn another_org(&self, name: &str) -> ProvisionedOrg {
        let new_org = NewOrg::parse(name, "UTC", "USD", "en").unwrap();
        provision_org(&self.state.db, &new_org, 3600).await.unwrap()
    }

    /// `Authorization` header value for the org's default till.
    pub fn basic(&self) -> String {
        basic_header(&self.org.till.username, &self.org.till.password)
    }

    pub fn admin(&self) -> String {
        format!("Bearer {}", self.org.admin_token)
    }

    /// Sends a request through the router; `auth` is an `Authorization` value, if any.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        TestResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    pub async fn get(&self, uri: &str, auth: &str) -> TestResponse {
        self.send(
            request(Method::GET, uri).header("authorization", auth).body(Body::empty()).unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, uri: &str, auth: &str, body: &Value) -> TestResponse {
        self.json(Method::POST, uri, auth, body).await
    }

    pub async fn put_json(&self, uri: &str, auth: &str, body: &Value) -> TestResponse {
        self.json(Method::PUT, uri, auth, body).await
    }

    pub async fn json(&self, method: Method, uri: &str, auth: &str, body: &Value) -> TestResponse {
        self.send(
            request(method, uri)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Enables extended customer fields of the standard catalogue and defines registration custom
    /// fields (String), as an org admin would before using them.
    pub async fn enable_fields(&self, extended: &[&str], custom: &[&str]) {
        for name in extended {
            let body = serde_json::json!({"name": name, "entityType": "customer"});
            self.post_json("/v2/extendedFields", &self.admin(), &body).await.assert_status(200);
        }
        if !custom.is_empty() {
            let fields: Vec<serde_json::Value> = custom
                .iter()
                .map(|n| serde_json::json!({"name": n, "dataType": "String"}))
                .collect();
            let body = serde_json::json!({"scope": "LOYALTY_REGISTRATION", "customFields": fields});
            self.post_json("/v2/customFields", &self.admin(), &body).await.assert_status(200);
        }
    }

    /// Runs raw SQL against the test database (for set-ups no API offers, such as connected orgs).
    pub async fn exec_sql(&self, sql: &str) {
        let mut tx = self.state.db.begin_write().await.unwrap();
        perks::dispatch!(&mut tx, |e| sqlx::query(sql).execute(e).await.map(|r| r.rows_affected()))
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Audit records of an entity type, newest first.
    pub async fn audit(
        &self,
        org_id: i64,
        entity_type: &str,
    ) -> Vec<perks::audit::store::AuditRow> {
        let mut conn = self.state.db.read().await.unwrap();
        perks::audit::store::recent(&mut conn, perks::org::model::OrgId(org_id), entity_type, 100)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg_database.take() else { return };
        // Drop runs outside async: a short-lived runtime on its own thread removes the database.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

pub fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// `Basic base64(username:md5_hex(password))`, the Capillary till scheme.
pub fn basic_header(username: &str, password: &str) -> String {
    let md5 = perks::auth::password::md5_hex(password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{md5}"))
    )
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(self.status.as_u16(), expected, "unexpected status; body: {}", self.body);
        self
    }

    /// The first v2 error code.
    #[track_caller]
    pub fn v2_error_code(&self) -> i64 {
        self.json()["errors"][0]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no v2 error: {}", self.body))
    }

    /// The v1.1 request-level status code.
    #[track_caller]
    pub fn v1_code(&self) -> i64 {
        self.json()["response"]["status"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no v1.1 status: {}", self.body))
    }
}
