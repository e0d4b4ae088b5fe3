//! The store conformance suite on S3 (moto, `EXACTLY_TEST_S3_URL`), Azure
//! Blob (Azurite, `EXACTLY_TEST_AZURE_BLOB_URL`) and object_store's
//! `InMemory`.

mod common;

mod s3 {
    exactly_conformance::store_conformance!(|_dir| crate::common::s3());
}

mod azure {
    exactly_conformance::store_conformance!(|_dir| crate::common::azure());
}

mod memory {
    exactly_conformance::store_conformance!(|_dir| async {
        exactly_store_object::ObjectStoreStore::memory()
            .await
            .expect("InMemory")
    });
}
