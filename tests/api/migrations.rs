//! Both migration trees must list the same migrations, in the same order.

#[test]
fn sqlite_and_postgres_migrations_match() {
    let (sqlite, postgres) = perks::db::migration_names();
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}
