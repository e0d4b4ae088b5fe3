//! The store conformance suite on S3 (moto, `EXACTLY_TEST_S3_URL`), Azure
//! Blob (Azurite, `EXACTLY_TEST_AZURE_BLOB_URL`), local files
//! ([`LocalFiles`](exactly_store_object::LocalFiles)) and object_store's
//! `InMemory`.

mod common;

mod s3 {
    exactly_conformance::store_conformance!(|_dir| crate::common::s3());
}

mod azure {
    exactly_conformance::store_conformance!(|_dir| crate::common::azure());
}

mod local_files {
    exactly_conformance::store_conformance!(|dir| async move {
        exactly_store_object::ObjectStoreStore::local(dir)
            .await
            .expect("local files")
    });
}

mod memory {
    exactly_conformance::store_conformance!(|_dir| async {
        exactly_store_object::ObjectStoreStore::memory()
            .await
            .expect("InMemory")
    });
}
