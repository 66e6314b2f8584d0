//! Live event delivery and its `tracing` form.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use runtime::{Delivery, EventHub};

#[tokio::test]
async fn subscribers_get_every_event_in_order() {
    let hub = EventHub::new(64);
    let mut a = hub.subscribe();
    let mut b = hub.subscribe();
    let events = sample_events();
    for e in &events {
        assert_eq!(hub.publish(e), 2);
    }
    for sub in [&mut a, &mut b] {
        for e in &events {
            assert_eq!(sub.next().await, Delivery::Event(Box::new(e.clone())));
        }
    }
    drop(hub);
    assert_eq!(a.next().await, Delivery::Closed);
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_never_blocks_the_publisher() {
    let hub = EventHub::new(4);
    let mut slow = hub.subscribe();
    let events = sample_events();
    assert!(events.len() > 6);
    // Publishing is synchronous: it returns at once even though nobody reads.
    for e in &events {
        hub.publish(e);
    }
    let missed = events.len() as u64 - 4;
    assert_eq!(slow.next().await, Delivery::Lagged { missed });
    for e in &events[events.len() - 4..] {
        assert_eq!(slow.next().await, Delivery::Event(Box::new(e.clone())));
    }
}
