//! Shared by the teeth tests: a test per flaw that must be caught.

/// `caught!(name, Flaw, suite::check, "panic text")`: a test running
/// `suite::check` on a backend built by the file's `flawed(Flaw::…, …)`,
/// which must panic with a message containing the text.
macro_rules! caught {
    ($name:ident, $flaw:ident, $suite:ident::$check:ident, $expected:literal) => {
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            flawed(Flaw::$flaw, |backend, ns| async move {
                $suite::$check(backend, &ns).await
            });
        }
    };
}
