//! Happenings from outside the agent: a user's verdict, a cancellation, an endorsement, a tick.

use crate::intent::Intent;

/// Something that happens to a session from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A user approves the waiting request.
    Approve {
        /// The user.
        user: String,
    },
    /// A user rejects the waiting request.
    Reject {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user cancels the session.
    Cancel {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user vouches for a value.
    Endorse {
        /// The user.
        user: String,
        /// The value.
        value: String,
    },
    /// A clock tick (`continue_session`).
    Tick,
}

impl Control {
    /// The intent this control is; `request_id` names the request an approval or rejection answers.
    pub fn into_intent(self, request_id: String) -> Intent {
        match self {
            Self::Approve { user } => Intent::Approve { user, request_id },
            Self::Reject { user, reason } => Intent::Reject {
                user,
                request_id,
                reason,
            },
            Self::Cancel { user, reason } => Intent::Cancel { user, reason },
            Self::Endorse { user, value } => Intent::Endorse { user, value },
            Self::Tick => Intent::Tick,
        }
    }
}
