//! The store conformance suite on a fresh SQLite file per check.

exactly_conformance::store_conformance!(|dir| async move {
    exactly_store_sqlite::SqliteStore::open(dir.join("store.db"))
        .await
        .expect("open")
});
