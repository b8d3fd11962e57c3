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
