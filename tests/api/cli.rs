//! The `perks` binary: `org create --json` prints one JSON object; `migrate` applies migrations.

use std::process::Command;

fn perks() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_perks"));
    command.env_remove("PERKS_DATABASE_URL").env_remove("PERKS_LISTEN").env("PERKS_LOG", "warn");
    command
}

#[test]
fn org_create_json_prints_exactly_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let output = perks()
        .args([
            "--database-url",
            &url,
            "org",
            "create",
            "--name",
            "Cli Shop",
            "--timezone",
            "Europe/Paris",
            "--currency",
            "EUR",
            "--json",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "exactly one line: {stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in ["orgId", "storeId", "tillId"] {
        assert!(json[key].as_i64().unwrap() > 0, "{key} in {json}");
    }
    for pointer in [
        "/till/username",
        "/till/password",
        "/oauth/clientKey",
        "/oauth/clientSecret",
        "/adminToken",
    ] {
        assert!(
            !json.pointer(pointer).and_then(|v| v.as_str()).unwrap_or("").is_empty(),
            "{pointer}"
        );
    }
    // A second org gets its own ids and till login.
    let again = perks()
        .args(["--database-url", &url, "org", "create", "--name", "Other", "--json"])
        .output()
        .unwrap();
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_ne!(second["orgId"], json["orgId"]);
    assert_ne!(second["till"]["username"], json["till"]["username"]);
}

#[test]
fn org_create_rejects_a_bad_time_zone_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let output = perks()
        .args([
            "--database-url",
            &url,
            "org",
            "create",
            "--name",
            "X",
            "--timezone",
            "Mars/Base",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("timezone"));
    assert!(!dir.path().join("cli.db").exists(), "nothing is created for invalid input");
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let output = perks().args(["--database-url", &url, "migrate"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("m.db").exists());
}

#[test]
fn migrate_and_org_create_work_on_postgres() {
    let Some(server) = crate::helpers::postgres_url() else {
        eprintln!("SKIPPED: PostgreSQL variant (PERKS_TEST_POSTGRES_URL is unset)");
        return;
    };
    // A database of its own, so the CLI migrates a clean schema whatever the shared one holds.
    let name = format!("perks_cli_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin = |sql: String| {
        let server = server.clone();
        runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
            conn.close().await.ok();
        })
    };
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    admin(format!("CREATE DATABASE {name}"));
    let url = crate::helpers::with_database(&server, &name);
    let migrate = perks().args(["--database-url", &url, "migrate"]).output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let output = perks()
        .args(["--database-url", &url, "org", "create", "--name", "Pg Cli", "--json"])
        .output()
        .unwrap();
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["orgId"], 1, "the first org of a fresh database");
}

const PROGRAM_YAML: &str = r#"
name: Gold Club
tiers:
  - name: Bronze
  - name: Silver
    upgrade: {metric: lifetimePurchases, atLeast: 10000}
earn:
  - {name: base, on: transaction, when: "true", points: "bill.amount * 0.1"}
  - {name: signup, on: registration, points: "100"}
expiry: {type: endOfPeriod, months: 12}
"#;

#[test]
fn program_apply_creates_then_replaces_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let org = perks()
        .args(["--database-url", &url, "org", "create", "--name", "Prog", "--json"])
        .output()
        .unwrap();
    assert!(org.status.success(), "{}", String::from_utf8_lossy(&org.stderr));
    let org_id = serde_json::from_slice::<serde_json::Value>(&org.stdout).unwrap()["orgId"]
        .as_i64()
        .unwrap()
        .to_string();
    let apply = |file: &std::path::Path| {
        perks()
            .args(["--database-url", &url, "program", "apply", "--org", &org_id])
            .arg(file)
            .output()
            .unwrap()
    };

    let yaml = dir.path().join("gold.yaml");
    std::fs::write(&yaml, PROGRAM_YAML).unwrap();
    let first = apply(&yaml);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let created: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(created["version"], 1);
    assert_eq!(created["created"], true);
    let id = created["id"].as_i64().unwrap();

    // The same name as JSON (no extension: detected) replaces it.
    let mut doc: serde_json::Value = serde_yaml_ng::from_str(PROGRAM_YAML).unwrap();
    doc["earn"][0]["points"] = serde_json::json!("bill.amount * 0.2");
    let json_file = dir.path().join("gold");
    std::fs::write(&json_file, doc.to_string()).unwrap();
    let second = apply(&json_file);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let replaced: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(replaced["id"], id);
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["created"], false);

    // An invalid document names the field and changes nothing.
    doc["earn"][0]["points"] = serde_json::json!("bill.amout * 0.2");
    std::fs::write(&json_file, doc.to_string()).unwrap();
    let bad = apply(&json_file);
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("earn[0].points") && stderr.contains("amout"), "{stderr}");
    let again = apply(&yaml);
    let version: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(version["version"], 3, "the bad document did not bump the version");

    // An unknown org is refused.
    let output = perks()
        .args(["--database-url", &url, "program", "apply", "--org", "999"])
        .arg(&yaml)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("org 999 not found"));
}

/// Runs `perks verify` with `args` after the database URL; its exit code and parsed report.
fn verify(url: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let output = perks().args(["--database-url", url, "verify"]).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), report, stderr)
}

/// A ledger with one customer earning points, built through the API on a SQLite file; the
/// database URL, org id and customer id.
fn ledger_with_points(dir: &std::path::Path) -> (String, i64, i64) {
    let path = dir.join("verify.db");
    let url = format!("sqlite://{}", path.display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (org, customer) = runtime.block_on(async {
        let app = crate::helpers::TestApp::with_settings(crate::helpers::Backend::Sqlite, |s| {
            s.database_url = perks::config::DatabaseUrl(url.clone());
        })
        .await
        .unwrap();
        let customer = crate::transactions::add_customer(&app, "919845000090").await;
        let uri = "/v2/transactions?identifierName=mobile&identifierValue=919845000090";
        let bill = serde_json::json!({"type": "REGULAR", "billNumber": "VER-1", "billAmount": 250,
            "billingDate": "2026-01-10T10:00:00Z"});
        app.post_json(uri, &app.basic(), &bill).await.assert_status(200);
        app.state.db.close().await;
        (app.org.org_id, customer)
    });
    (url, org, customer)
}

#[test]
fn verify_passes_on_a_clean_ledger_and_fails_on_a_corrupted_balance() {
    let dir = tempfile::tempdir().unwrap();
    let (url, org, customer) = ledger_with_points(dir.path());

    let (code, report, stderr) = verify(&url, &[]);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"], 1, "{report}");
    assert_eq!(report["mismatches"], serde_json::json!([]));
    let (code, report, _) = verify(&url, &["--org", &org.to_string()]);
    assert_eq!((code, &report["ok"]), (0, &serde_json::json!(true)), "{report}");

    // One point appears in the projection without an entry behind it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE loyalty_accounts SET current_points = current_points + 10000")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let (code, report, stderr) = verify(&url, &[]);
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["ok"], false, "{report}");
    let mismatches = report["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{report}");
    let mismatch = &mismatches[0];
    assert_eq!(mismatch["type"], "balance");
    assert_eq!(mismatch["org"], org);
    assert_eq!(mismatch["customer"], customer);
    assert!(mismatch["program"].as_i64().unwrap() > 0);
    assert_eq!(mismatch["stored"]["current"], 26.0, "{report}");
    assert_eq!(mismatch["recomputed"]["current"], 25.0, "{report}");
    assert!(stderr.contains("mismatch"), "{stderr}");

    // An unknown org is an error, not a clean bill.
    let (code, report, stderr) = verify(&url, &["--org", "999"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("org 999 not found"), "{report} {stderr}");
}

#[test]
fn verify_reports_a_lot_that_does_not_match_its_movements() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _, _) = ledger_with_points(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE point_lots SET remaining = remaining - 50000")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let (code, report, stderr) = verify(&url, &["--limit", "5"]);
    assert_eq!(code, 1, "{report} {stderr}");
    let lot = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "lot")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert_eq!(lot["remaining"], 20.0, "{report}");
    assert_eq!(lot["movements"], 25.0, "{report}");
    assert!(lot["lot"].as_i64().unwrap() > 0);
}

#[test]
fn verify_works_on_postgres() {
    if crate::helpers::postgres_url().is_none() {
        eprintln!("SKIPPED: PostgreSQL variant (PERKS_TEST_POSTGRES_URL is unset)");
        return;
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let app = runtime.block_on(async {
        let app = crate::helpers::TestApp::new(crate::helpers::Backend::Postgres).await.unwrap();
        crate::transactions::add_customer(&app, "919845000091").await;
        let uri = "/v2/transactions?identifierName=mobile&identifierValue=919845000091";
        let bill = serde_json::json!({"type": "REGULAR", "billNumber": "VER-PG", "billAmount": 100,
            "billingDate": "2026-01-10T10:00:00Z"});
        app.post_json(uri, &app.basic(), &bill).await.assert_status(200);
        app
    });
    let url = app.state.settings.database_url.expose().to_string();
    let org = app.org.org_id.to_string();
    let (code, report, stderr) = verify(&url, &["--org", &org]);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["checked"], 1, "{report}");
    runtime.block_on(app.exec_sql("UPDATE loyalty_accounts SET expired_points = 1"));
    let (code, report, stderr) = verify(&url, &["--org", &org]);
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["mismatches"][0]["stored"]["expired"], 0.0001, "{report}");
    runtime.block_on(app.state.db.close());
    drop(app);
}
