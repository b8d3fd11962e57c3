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

/// The `(version, description)` list of each backend's migrations, for the test that they match.
pub fn migration_names() -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    let list = |m: &sqlx::migrate::Migrator| {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect::<Vec<_>>()
    };
    (list(&SQLITE), list(&POSTGRES))
}
