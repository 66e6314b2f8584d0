//! The content index against a naive oracle: for random documents and values drawn from a small
//! vocabulary (so matches, near misses and values spanning two documents are all common), the
//! index finds exactly the classes a rescan of every document's tokens finds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use kernel::provenance::{ContentIndex, OTHER, TRUSTED, UNTRUSTED, USER, tokens};
use proptest::prelude::*;

const WORDS: [&str; 8] = ["pay", "DE12", "3456", "to", "Bob", "bob", "@", "x.example"];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS.to_vec()), 0..12).prop_map(|w| w.join(" "))
}

fn class() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![USER, TRUSTED, UNTRUSTED, OTHER])
}

/// Classes of the documents whose token sequence contains the value's as a contiguous run.
fn naive(docs: &[(String, u8)], value: &str) -> u8 {
    let v = tokens(value);
    if v.is_empty() {
        return 0;
    }
    docs.iter()
        .filter(|(d, _)| tokens(d).windows(v.len()).any(|w| w == v.as_slice()))
        .fold(0, |acc, (_, c)| acc | c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn index_agrees_with_a_rescan(
        docs in prop::collection::vec((text(), class()), 0..8),
        values in prop::collection::vec(text(), 1..6),
    ) {
        let mut index = ContentIndex::default();
        for (d, c) in &docs {
            index.add(d, *c, &BTreeSet::new());
        }
        for v in &values {
            prop_assert_eq!(index.find(v).classes, naive(&docs, v), "value {:?}", v);
        }
        // Values cut from a document always match it.
        for (d, c) in &docs {
            let t = tokens(d);
            if t.len() >= 2 {
                let cut = t[t.len() / 2..].join(" ");
                prop_assert!(index.find(&cut).classes & c != 0, "{:?} in {:?}", cut, d);
            }
        }
    }
}
