//! The `list` clause: keys starting with `prefix`, ascending byte order,
//! strictly after `start_after`, at most `limit`.

use std::sync::Arc;

use exactly::Store;

use super::create;

async fn list(store: &dyn Store, prefix: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    store
        .list(prefix, after, limit)
        .await
        .unwrap_or_else(|e| panic!("list {prefix:?} after {after:?}: {e}"))
}

/// Keys come back in ascending byte order (so `z` before `é`), pages of
/// `limit` chain through `start_after` to the full list, and keys outside
/// the prefix never appear.
pub async fn list_pages_in_byte_order(store: Arc<dyn Store>, ns: &str) {
    let prefix = format!("{ns}l/");
    let names = ["b", "a", "é", "z", "b/c", "ba", "B", "0", "~", "日"];
    for name in names {
        create(&*store, &format!("{prefix}{name}"), name).await;
    }
    // Neighbours that share all but the last byte of the prefix, or lack it.
    for outside in [
        format!("{ns}l"),
        format!("{ns}l."),
        format!("{ns}l0"),
        format!("{ns}k/a"),
    ] {
        create(&*store, &outside, "outside").await;
    }
    let mut expected: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    expected.sort(); // `String` order is byte order.

    assert_eq!(
        list(&*store, &prefix, None, 100).await,
        expected,
        "whole prefix"
    );
    assert_eq!(
        list(&*store, &prefix, None, 3).await,
        expected[..3],
        "limit 3"
    );
    assert!(list(&*store, &prefix, None, 0).await.is_empty(), "limit 0");

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list(&*store, &prefix, after.as_deref(), 2).await;
        assert!(page.len() <= 2, "a page longer than its limit: {page:?}");
        match page.last() {
            Some(last) => after = Some(last.clone()),
            None => break,
        }
        paged.extend(page);
    }
    assert_eq!(paged, expected, "pages of 2 chained through start_after");

    let from = &expected[4];
    assert_eq!(
        list(&*store, &prefix, Some(from), 100).await,
        expected[5..],
        "strictly after"
    );
    // A start_after that is no key: resume from the next key above it.
    let between = format!("{from}\u{1}");
    assert_eq!(
        list(&*store, &prefix, Some(&between), 100).await,
        expected[5..]
    );
    // One before the prefix: no effect. One after every key: nothing.
    assert_eq!(list(&*store, &prefix, Some(ns), 100).await, expected);
    let beyond = format!("{prefix}\u{10FFFF}");
    assert!(list(&*store, &prefix, Some(&beyond), 100).await.is_empty());
    assert!(
        list(&*store, &format!("{ns}none/"), None, 100)
            .await
            .is_empty()
    );
}

/// `%`, `_`, `*`, `?` and `[` in a prefix match only themselves (a backend
/// translating to an unescaped SQL `LIKE` or a glob fails this).
pub async fn list_prefix_is_literal(store: Arc<dyn Store>, ns: &str) {
    let keys = [
        "p%/1", "pX/1", "p_/1", "pY/1", "p*/1", "p?/1", "p[/1", "pZ/1",
    ];
    for key in keys {
        create(&*store, &format!("{ns}{key}"), key).await;
    }
    for wild in ["p%/", "p_/", "p*/", "p?/", "p[/"] {
        let listed = list(&*store, &format!("{ns}{wild}"), None, 100).await;
        assert_eq!(
            listed,
            [format!("{ns}{wild}1")],
            "prefix {wild:?} must match itself only"
        );
    }
    let all = list(&*store, &format!("{ns}p"), None, 100).await;
    assert_eq!(all.len(), keys.len(), "every key under {ns}p: {all:?}");
}
