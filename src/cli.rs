//! The command line: `serve` (default), `migrate`, `org create`, `program apply` and `verify`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::app::{App, AppState};
use crate::config::{Overrides, Settings};
use crate::db::{self, Db};
use crate::org::model::{NewOrg, OrgId};
use crate::org::service::{ProvisionedOrg, provision_org};
use crate::org::store::no_orgs_exist;
use crate::points::ledger::{self, Mismatch};
use crate::points::model::{Balances, Fixed};
use crate::programs::{
    self,
    cache::ProgramCache,
    service::{DocumentFormat, SaveTarget},
};

#[derive(Debug, Parser)]
#[command(
    name = "perks",
    version,
    about = "Self-hostable loyalty engine with a Capillary-compatible API"
)]
pub struct Cli {
    /// Configuration file (optional; missing means defaults).
    #[arg(long, env = "PERKS_CONFIG", default_value = "perks.toml", global = true)]
    pub config: PathBuf,
    /// Database URL: sqlite://FILE or postgres://… (overrides PERKS_DATABASE_URL).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Address to listen on (overrides PERKS_LISTEN).
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// Do not create the demo org on a brand-new database.
    #[arg(long, global = true)]
    pub no_demo: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage orgs.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage loyalty programs.
    Program {
        #[command(subcommand)]
        command: ProgramCommand,
    },
    /// Check the points ledger: every balance equals the sum of its entries and every lot's
    /// remaining points the sum of its movements. Prints a JSON report; exits 1 on a mismatch.
    Verify {
        /// Only this org (default: every org).
        #[arg(long)]
        org: Option<i64>,
        /// Most mismatches reported.
        #[arg(long, default_value_t = VERIFY_REPORTED_MAX)]
        limit: usize,
    },
}

/// Mismatches `perks verify` reports unless told otherwise.
pub const VERIFY_REPORTED_MAX: usize = 1000;
/// The largest `--limit` accepted (larger values are lowered to it).
pub const VERIFY_REPORTED_CAP: usize = 100_000;

#[derive(Debug, Subcommand)]
pub enum ProgramCommand {
    /// Create or replace (by its name) a program of an org from a JSON or YAML document; prints
    /// `{"id": …, "version": …, "created": …}`.
    Apply {
        /// The org id.
        #[arg(long)]
        org: i64,
        /// The program document: `.json`, `.yaml`/`.yml`, or either (JSON is tried first).
        file: PathBuf,
    },
}

/// Largest program document file `program apply` reads, in bytes.
pub const PROGRAM_FILE_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an org with one zone, concept, store, till, OAuth client and admin token.
    Create {
        #[arg(long)]
        name: String,
        /// IANA time zone, e.g. Asia/Kolkata.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// ISO-4217 currency code.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// BCP-47 language tag.
        #[arg(long, default_value = "en")]
        language: String,
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: cli.listen.clone(),
        database_url: cli.database_url.clone(),
        no_demo: cli.no_demo,
    };
    let settings = Settings::load(&cli.config, overrides)?;
    match cli.command {
        None | Some(Command::Serve) => serve(settings).await,
        Some(Command::Migrate) => {
            let db = Db::connect(&settings).await?;
            db::migrate(&db).await?;
            db.close().await;
            eprintln!("migrations applied to {}", settings.database_url.redacted());
            Ok(())
        }
        Some(Command::Org {
            command: OrgCommand::Create { name, timezone, currency, language, json },
        }) => {
            let new_org = NewOrg::parse(&name, &timezone, &currency, &language)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let db = Db::connect(&settings).await?;
            db::migrate(&db).await?;
            let org = provision_org(&db, &new_org, settings.auth.token_ttl_seconds).await?;
            db.close().await;
            if json {
                println!("{}", serde_json::to_string(&org)?);
            } else {
                print_credentials(&format!("Org '{name}' created"), &org, &settings.listen);
            }
            Ok(())
        }
        Some(Command::Program { command: ProgramCommand::Apply { org, file } }) => {
            apply_program(&settings, OrgId(org), &file).await
        }
        Some(Command::Verify { org, limit }) => verify(&settings, org.map(OrgId), limit).await,
    }
}

/// `perks verify [--org ID]`: recomputes the ledger on one read snapshot (safe while the server
/// runs), prints `{"ok", "checked", "mismatches"}` and fails when anything differs.
async fn verify(settings: &Settings, org: Option<OrgId>, limit: usize) -> anyhow::Result<()> {
    let limit = limit.clamp(1, VERIFY_REPORTED_CAP);
    let db = Db::connect(settings).await?;
    db::migrate(&db).await?;
    let result = async {
        let mut snapshot = db.read_snapshot().await?;
        if let Some(org) = org
            && crate::org::store::get_org(&mut snapshot, org).await?.is_none()
        {
            anyhow::bail!("org {} not found", org.0);
        }
        let report = ledger::verify_report(&mut snapshot, org, limit).await?;
        drop(snapshot);
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    db.close().await;
    let report = result?;
    let mismatches: Vec<serde_json::Value> = report.mismatches.iter().map(mismatch_json).collect();
    println!(
        "{}",
        serde_json::json!({"ok": report.is_ok(), "checked": report.checked, "mismatches": mismatches})
    );
    if !report.is_ok() {
        anyhow::bail!(
            "the ledger has {} mismatch(es) (at most {limit} reported)",
            mismatches.len()
        );
    }
    Ok(())
}

fn mismatch_json(mismatch: &Mismatch) -> serde_json::Value {
    let points = |v: i64| Fixed(v).to_f64();
    let balances = |b: &Balances| {
        serde_json::json!({
            "current": points(b.current), "promised": points(b.promised),
            "lifetime": points(b.lifetime), "redeemed": points(b.redeemed),
            "expired": points(b.expired), "returned": points(b.returned),
            "adjusted": points(b.adjusted),
        })
    };
    match mismatch {
        Mismatch::Balance { org, customer, program, stored, from_entries } => serde_json::json!({
            "type": "balance", "org": org, "customer": customer, "program": program,
            "stored": balances(stored), "recomputed": balances(from_entries),
        }),
        Mismatch::CurrencyBalance { org, customer, program, currency, stored, from_entries } => {
            serde_json::json!({
                "type": "currencyBalance", "org": org, "customer": customer, "program": program,
                "currency": currency, "stored": balances(stored), "recomputed": balances(from_entries),
            })
        }
        Mismatch::Lot { org, lot, remaining, from_movements } => serde_json::json!({
            "type": "lot", "org": org, "lot": lot, "remaining": points(*remaining),
            "movements": points(*from_movements),
        }),
    }
}

/// `perks program apply --org ID FILE`: the same validation as the admin API.
async fn apply_program(settings: &Settings, org: OrgId, file: &Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
        .len();
    if size > PROGRAM_FILE_BYTES_MAX {
        anyhow::bail!("{} is larger than {PROGRAM_FILE_BYTES_MAX} bytes", file.display());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let doc = programs::service::parse_document(&text, DocumentFormat::from_path(file))?;
    let db = Db::connect(settings).await?;
    db::migrate(&db).await?;
    let result = async {
        let mut conn = db.read().await?;
        let exists = crate::org::store::get_org(&mut conn, org).await?.is_some();
        drop(conn);
        if !exists {
            anyhow::bail!("org {} not found", org.0);
        }
        let cache = ProgramCache::default();
        let saved =
            programs::service::save_program(&db, &cache, org, None, SaveTarget::ByName, doc)
                .await?;
        Ok(saved)
    }
    .await;
    db.close().await;
    let saved = result?;
    println!(
        "{}",
        serde_json::json!({"id": saved.id.0, "version": saved.version, "created": saved.created})
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(database = %settings.database_url.redacted(), "starting Perks");
    let demo = settings.demo;
    let listen = settings.listen.clone();
    let database_path = settings.database_url.sqlite_path().map(Path::to_path_buf);
    let state = AppState::new(settings).await?;
    if demo {
        create_demo_org(&state, database_path.as_deref(), &listen).await?;
    }
    let app = App::build(state).await?;
    tracing::info!(address = %app.local_addr()?, "listening");
    app.run(shutdown_signal()).await
}

/// On a brand-new database, creates the demo org, prints its credentials and saves them to
/// `perks-demo.json` beside the database.
async fn create_demo_org(
    state: &AppState,
    database_path: Option<&Path>,
    listen: &str,
) -> anyhow::Result<()> {
    let mut conn = state.db.read().await?;
    let fresh = no_orgs_exist(&mut conn).await?;
    drop(conn);
    if !fresh {
        return Ok(());
    }
    let new_org =
        NewOrg::parse("Demo", "UTC", "USD", "en").map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let org = provision_org(&state.db, &new_org, state.settings.auth.token_ttl_seconds).await?;
    let directory = database_path.and_then(Path::parent).filter(|p| !p.as_os_str().is_empty());
    let file = directory
        .map(|d| d.join("perks-demo.json"))
        .unwrap_or_else(|| PathBuf::from("perks-demo.json"));
    std::fs::write(&file, serde_json::to_string_pretty(&org)?)?;
    print_credentials(&format!("Demo org created (saved to {})", file.display()), &org, listen);
    Ok(())
}

fn print_credentials(title: &str, org: &ProvisionedOrg, listen: &str) {
    let base = format!("http://{listen}");
    eprintln!(
        "\n==== {title} ====\n\
         org id        {org_id}\n\
         store id      {store_id}\n\
         till login    {user} / {password}   (Basic auth: base64(user:md5(password)))\n\
         OAuth client  key {key}\n\
         \x20             secret {secret}\n\
         admin token   {admin}\n\n\
         Try it:\n\
         \x20 curl -u {user}:$(printf %s '{password}' | md5sum | cut -d' ' -f1) {base}/v1.1/organization/get\n\
         \x20 curl -X POST {base}/v3/oauth/token/generate -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"key\": \"{key}\", \"secret\": \"{secret}\"}}'\n\
         ====\n",
        org_id = org.org_id,
        store_id = org.store_id,
        user = org.till.username,
        password = org.till.password,
        key = org.oauth.client_key,
        secret = org.oauth.client_secret,
        admin = org.admin_token,
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
