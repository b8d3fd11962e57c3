//! The application as a value: shared state, the router, and a server bound to its own listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::AuthService;
use crate::comms::provider::Providers;
use crate::config::Settings;
use crate::db::{self, Db};
use crate::http::metrics::Metrics;
use crate::http::ratelimit::RateLimiter;
use crate::programs::cache::ProgramCache;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub auth: Arc<AuthService>,
    pub limiter: Arc<RateLimiter>,
    pub metrics: Arc<Metrics>,
    /// Compiled loyalty programs, per program id and version.
    pub programs: Arc<ProgramCache>,
    /// The outbound HTTP client of webhook deliveries (a shared connection pool).
    pub webhook_client: reqwest::Client,
    /// The provider of each message channel (`log` unless `[comms]` says otherwise).
    pub comms: Arc<Providers>,
}

impl AppState {
    /// Connects to the database, applies migrations, loads the token secret and builds the
    /// message channel providers (refusing unusable `[comms]` settings).
    pub async fn new(settings: Settings) -> anyhow::Result<AppState> {
        let comms = Providers::from_settings(&settings.comms)?;
        let db = Db::connect(&settings).await?;
        db::migrate(&db).await?;
        let auth = AuthService::load(&db, settings.auth.clone()).await?;
        Ok(AppState {
            limiter: Arc::new(RateLimiter::new(settings.rate_limit.clone())),
            metrics: Arc::new(Metrics::for_db(&db)),
            programs: Arc::new(ProgramCache::default()),
            webhook_client: crate::webhooks::deliver::http_client()?,
            comms: Arc::new(comms),
            auth: Arc::new(auth),
            settings: Arc::new(settings),
            db,
        })
    }
}

/// The router of the whole API; pure, so tests can call it without a socket.
pub fn router(state: AppState) -> Router {
    crate::http::router(state)
}

/// A server bound to its listener (port 0 picks a free port, as tests do).
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    pub async fn build(state: AppState) -> anyhow::Result<App> {
        let listener = TcpListener::bind(&state.settings.listen).await?;
        Ok(App { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests and jobs finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_jobs, jobs_stopped) = watch::channel(false);
        let jobs = crate::jobs::spawn(self.state.clone(), jobs_stopped);
        let router = router(self.state.clone());
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await?;
        let _ = stop_jobs.send(true);
        let _ = jobs.await;
        self.state.db.close().await;
        Ok(())
    }
}
