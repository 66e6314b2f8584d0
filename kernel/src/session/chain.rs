//! The session's end of its event hash chain: the next `seq`, the last hash, and whether an event
//! of the step being taken could not be hashed.

use crate::event::{Event, EventBody, GENESIS};
use crate::gate::Decision;

pub(super) struct Chain {
    seq: u64,
    head: String,
    /// Why an event linked during the current step could not be hashed.
    unrecordable: Option<String>,
}

impl Chain {
    pub(super) fn new() -> Self {
        Self {
            seq: 0,
            head: GENESIS.to_owned(),
            unrecordable: None,
        }
    }

    /// The next `seq` and the hash of the last event.
    pub(super) fn head(&self) -> (u64, &str) {
        (self.seq, &self.head)
    }

    /// Links the next event to the chain and hashes it. An event that cannot be hashed is left
    /// without a hash and remembered: it must never reach a log, so the session turns its whole
    /// step into a failure ([`Chain::take_unrecordable`], [`Chain::rewind`]).
    pub(super) fn link(
        &mut self,
        session: &str,
        tenant: &str,
        t_ms: u64,
        body: EventBody,
        decision: Option<Decision>,
    ) -> Event {
        let mut event = Event {
            seq: self.seq,
            session: session.to_owned(),
            tenant: tenant.to_owned(),
            t_ms,
            body,
            decision,
            prev: std::mem::take(&mut self.head),
            hash: String::new(),
        };
        if crate::faults::active(crate::faults::Fault::BrokenChain) && event.seq == 3 {
            event.prev = GENESIS.to_owned();
        }
        let hashed = if crate::faults::active(crate::faults::Fault::UnhashableEvent)
            && event.seq == 2
            && !matches!(event.body, EventBody::Rejected { .. })
        {
            Err(serde::ser::Error::custom(
                "injected fault: unhashable event",
            ))
        } else {
            crate::event::hash_of(&event)
        };
        match hashed {
            Ok(hash) => event.hash = hash,
            Err(e) => {
                self.unrecordable.get_or_insert_with(|| e.to_string());
            }
        }
        self.head.clone_from(&event.hash);
        self.seq += 1;
        event
    }

    /// Why an event linked since the last call could not be hashed, if one could not.
    pub(super) fn take_unrecordable(&mut self) -> Option<String> {
        self.unrecordable.take()
    }

    /// Puts the chain's end back where it was (events linked since are dropped).
    pub(super) fn rewind(&mut self, seq: u64, head: String) {
        self.seq = seq;
        self.head = head;
    }
}
