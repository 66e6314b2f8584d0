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

/// Whether each token stands inside a grouped identifier: a run of digit-bearing words whose
/// joined form (over some window of two or more) has at least 8 characters and 6 digits.
fn in_identifier(t: &[String]) -> Vec<bool> {
    let group =
        |w: &String| w.chars().all(char::is_alphanumeric) && w.chars().any(|c| c.is_ascii_digit());
    let mut bound = vec![false; t.len()];
    for a in 0..t.len() {
        for b in a + 2..=t.len().min(a + 12) {
            if !t[a..b].iter().all(group) {
                break;
            }
            let joined = t[a..b].concat();
            if joined.chars().count() >= 8
                && joined.chars().filter(char::is_ascii_digit).count() >= 6
            {
                bound[a..b].iter_mut().for_each(|x| *x = true);
            }
        }
    }
    bound
}

/// Classes of the documents whose token sequence contains the value's as a contiguous run; a
/// lone number counts only where it does not stand inside a grouped identifier (the short-number
/// rule).
fn naive(docs: &[(String, u8)], value: &str) -> u8 {
    let v = tokens(value);
    if v.is_empty() {
        return 0;
    }
    let lone_number = v.len() == 1 && v[0].bytes().all(|b| b.is_ascii_digit());
    docs.iter()
        .filter(|(d, _)| {
            let t = tokens(d);
            let bound = in_identifier(&t);
            t.windows(v.len())
                .enumerate()
                .any(|(i, w)| w == v.as_slice() && !(lone_number && bound[i]))
        })
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
                let last = &t[t.len() - 1];
                let lone_bound = t.len() - t.len() / 2 == 1
                    && last.bytes().all(|b| b.is_ascii_digit())
                    && in_identifier(&t)[t.len() - 1];
                prop_assert!(lone_bound || index.find(&cut).classes & c != 0, "{:?} in {:?}", cut, d);
            }
        }
    }
}
