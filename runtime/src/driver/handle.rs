//! The handle of a session running on its own task: live controls in, events out.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Control, Outcome};
use crate::hub::{EventHub, Subscriber};

/// Steers a session running on its own task.
pub struct SessionHandle {
    controls: mpsc::UnboundedSender<Control>,
    hub: EventHub,
    task: JoinHandle<Outcome>,
}

impl SessionHandle {
    pub(super) fn new(
        controls: mpsc::UnboundedSender<Control>,
        hub: EventHub,
        task: JoinHandle<Outcome>,
    ) -> Self {
        Self {
            controls,
            hub,
            task,
        }
    }

    /// Sends a control; false once the session has ended.
    pub fn send(&self, control: Control) -> bool {
        self.controls.send(control).is_ok()
    }

    /// Asks to cancel the session on behalf of `user` (authorized like any cancel); false once the
    /// session has ended.
    pub fn cancel(&self, user: &str, reason: &str) -> bool {
        self.send(Control::Cancel {
            user: user.into(),
            reason: reason.into(),
        })
    }

    /// `user` vouches for `value`, which then counts as coming from the user.
    pub fn endorse(&self, user: &str, value: &str) -> bool {
        self.send(Control::Endorse {
            user: user.into(),
            value: value.into(),
        })
    }

    /// `user` approves the waiting request.
    pub fn approve(&self, user: &str) -> bool {
        self.send(Control::Approve { user: user.into() })
    }

    /// `user` rejects the waiting request.
    pub fn reject(&self, user: &str, reason: &str) -> bool {
        self.send(Control::Reject {
            user: user.into(),
            reason: reason.into(),
        })
    }

    /// Whether the session's task has ended (reached an end state, or was stopped by its store).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// A new live subscriber to the session's events.
    pub fn subscribe(&self) -> Subscriber {
        self.hub.subscribe()
    }

    /// Waits for the session to end (or for the model to have nothing more to say).
    pub async fn join(self) -> Result<Outcome, tokio::task::JoinError> {
        drop(self.controls);
        self.task.await
    }
}
