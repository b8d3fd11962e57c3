//! Embedded migrations, one tree per backend with the same file names.

use super::{Db, DbError};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Applies every pending migration of the database's backend.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    match db {
        Db::Sqlite { writer, .. } => SQLITE.run(writer).await?,
        Db::Postgres(pool) => POSTGRES.run(pool).await?,
    }
    Ok(())
}

/// `(version, description)` of each migration, in order.
pub type MigrationList = Vec<(i64, String)>;

/// The `(version, description)` list of each backend's migrations, for the test that they match.
pub fn migration_names() -> (MigrationList, MigrationList) {
    let list = |m: &sqlx::migrate::Migrator| {
        m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>()
    };
    (list(&SQLITE), list(&POSTGRES))
}

/// A fingerprint of the PostgreSQL migrations (versions and checksums), so that test templates
/// built from an older migration set are never reused.
pub fn migrations_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for m in POSTGRES.iter() {
        hasher.update(m.version.to_le_bytes());
        hasher.update(&m.checksum);
    }
    hex::encode(&hasher.finalize()[..8])
}
