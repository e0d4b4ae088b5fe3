//! The store conformance suite on the PostgreSQL at `EXACTLY_TEST_POSTGRES_URL`.

exactly_conformance::store_conformance!(|_dir| async {
    let url = std::env::var("EXACTLY_TEST_POSTGRES_URL")
        .expect("EXACTLY_TEST_POSTGRES_URL is unset: run `scripts/services.sh up postgres && source .services/env`");
    exactly_store_postgres::PostgresStore::connect(&url)
        .await
        .expect("connect")
});
