//! Live event delivery: every subscriber has its own bounded buffer; publishing never waits, and a
//! subscriber that falls behind is told how many events it missed instead of slowing the session.

use tokio::sync::broadcast;

use kernel::event::Event;

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event, in order.
    Event(Box<Event>),
    /// The subscriber fell behind and `missed` events were dropped for it; delivery resumes with
    /// the oldest event still buffered.
    Lagged {
        /// How many events it will never see.
        missed: u64,
    },
    /// The session's stream ended.
    Closed,
}

/// One session's event fan-out.
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Event>,
}

impl EventHub {
    /// A hub whose subscribers each buffer up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publishes `event` to current subscribers without waiting for any of them; returns how many
    /// were subscribed.
    pub fn publish(&self, event: &Event) -> usize {
        crate::telemetry::record(event);
        self.sender.send(event.clone()).unwrap_or(0)
    }

    /// A new subscriber, receiving events published from now on.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            receiver: self.sender.subscribe(),
        }
    }
}

/// One subscriber's view of the stream.
#[derive(Debug)]
pub struct Subscriber {
    receiver: broadcast::Receiver<Event>,
}

impl Subscriber {
    /// Waits for the next delivery.
    pub async fn next(&mut self) -> Delivery {
        match self.receiver.recv().await {
            Ok(event) => Delivery::Event(Box::new(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Delivery::Lagged { missed },
            Err(broadcast::error::RecvError::Closed) => Delivery::Closed,
        }
    }
}
