//! Provenance cost: indexing session content, and answering where a call's five string arguments
//! came from over a session holding 1 MB of content.
//!
//! `cargo bench -p benches --bench provenance`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kernel::provenance::{ContentIndex, UNTRUSTED, USER};

/// The allocator the `arbiter` binary uses (see the README's Performance section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// About `bytes` of mail-like text in 2 KB documents, deterministic: common words, names,
/// addresses and IBAN-like numbers drawn by a fixed LCG.
fn corpus(bytes: usize) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "the", "invoice", "please", "pay", "to", "account", "meeting", "at", "and", "for",
        "thanks", "regards", "team", "project", "update", "next", "week", "a", "is", "of", "send",
        "review", "draft", "on",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        state >> 33
    };
    let mut docs = Vec::new();
    let mut total = 0;
    while total < bytes {
        let mut doc = String::new();
        while doc.len() < 2048 {
            match next() % 10 {
                0 => doc.push_str(&format!(
                    "user{}@corp{}.example ",
                    next() % 5000,
                    next() % 50
                )),
                1 => doc.push_str(&format!(
                    "DE{:02} {:04} {:04} {:04} ",
                    next() % 100,
                    next() % 10000,
                    next() % 10000,
                    next() % 10000
                )),
                _ => {
                    doc.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                    doc.push(' ');
                }
            }
        }
        total += doc.len();
        docs.push(doc);
    }
    docs
}

fn bench(c: &mut Criterion) {
    let docs = corpus(1 << 20);
    let labels = BTreeSet::from(["untrusted".to_owned()]);
    let mut index = ContentIndex::default();
    for d in &docs {
        index.add(d, UNTRUSTED, &labels);
    }
    index.add(
        "Please pay DE12 3456 7890 1234 to my landlord",
        USER,
        &BTreeSet::new(),
    );

    // Five arguments: found once (user), found in untrusted mail, a near miss (novel), a common
    // phrase found everywhere, a free-text body of twelve words.
    let from_mail = docs[100].split(' ').take(4).collect::<Vec<_>>().join(" ");
    let args = [
        "DE12 3456 7890 1234",
        &from_mail,
        "DE12 3456 7890 1235",
        "please pay to the",
        "thanks for the update on the project please send the draft next week",
    ];
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();

    c.bench_function(
        "provenance: 5 string arguments over 1 MB of session content",
        |b| {
            b.iter(|| {
                for a in &args {
                    black_box(index.find(black_box(a)));
                }
            })
        },
    );

    c.bench_function("provenance: index 1 MB from empty", |b| {
        b.iter(|| {
            let mut ix = ContentIndex::default();
            for d in &docs {
                ix.add(d, UNTRUSTED, &labels);
            }
            black_box(ix.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
