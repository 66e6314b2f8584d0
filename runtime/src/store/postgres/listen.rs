//! Following appends made anywhere: a thread with its own connection `LISTEN`s on
//! [`super::CHANNEL`] and passes each notification on as an [`Appended`]. Notifications are a
//! wake-up, not the data: a follower reads what it lacks from the log by `seq`, so a lost or
//! merged notification costs a delay, never an event. After a reconnect the listener sends
//! [`Appended::Resync`]: whatever was appended while it was away has no notification.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use tokio::sync::broadcast;

use super::super::StoreError;
use super::{CHANNEL, CONTROLS, PostgresStore, backend, pg_error};

/// What the listener passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// `tenant/session` has `events` events now.
    To {
        /// The tenant.
        tenant: String,
        /// The session.
        session: String,
        /// Its event count after the append.
        events: u64,
    },
    /// A control was sent for `tenant/session` (a hosted run; its driver takes it).
    Control {
        /// The tenant.
        tenant: String,
        /// The session.
        session: String,
    },
    /// Notifications may have been missed: check every followed session.
    Resync,
}

/// The listening thread; it stops (within a second) when this is dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PostgresStore {
    /// Starts listening; every append to the database (by any instance) reaches `to`.
    /// Returns once `LISTEN` is in place (an append committed after it returns is notified).
    pub fn listen(&self, to: broadcast::Sender<Appended>) -> Result<Listener, StoreError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let url = self.shared.url.clone();
        let (ready, listening) = std::sync::mpsc::sync_channel(1);
        thread::Builder::new()
            .name("arbiter-pg-listen".into())
            .spawn(move || {
                // Connected on this thread: the client's own runtime must not start on a caller's.
                let mut client = match connect(&url) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while !stopped.load(Ordering::Relaxed) {
                    if follow(&mut client, &to, &stopped).is_err() {
                        // Reconnect (every second until the server answers), then resync.
                        thread::sleep(Duration::from_secs(1));
                        if let Ok(fresh) = connect(&url) {
                            client = fresh;
                            let _ = to.send(Appended::Resync);
                        }
                    }
                }
            })
            .map_err(backend)?;
        listening
            .recv()
            .map_err(|_| StoreError::Backend("the listener died connecting".into()))??;
        Ok(Listener { stop })
    }
}

fn connect(url: &str) -> Result<Client, StoreError> {
    let mut client = Client::connect(url, NoTls).map_err(pg_error)?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {CONTROLS}"))
        .map_err(pg_error)?;
    Ok(client)
}

/// Passes notifications on until `stop` or a connection error.
fn follow(
    client: &mut Client,
    to: &broadcast::Sender<Appended>,
    stop: &AtomicBool,
) -> Result<(), postgres::Error> {
    while !stop.load(Ordering::Relaxed) {
        {
            let mut notes = client.notifications();
            let mut batch = notes.timeout_iter(Duration::from_secs(1));
            while let Some(n) = batch.next()? {
                let mut parts = n.payload().split('\u{1f}');
                if n.channel() == CONTROLS {
                    if let (Some(tenant), Some(session)) = (parts.next(), parts.next()) {
                        let _ = to.send(Appended::Control {
                            tenant: tenant.to_owned(),
                            session: session.to_owned(),
                        });
                    }
                    continue;
                }
                if let (Some(tenant), Some(session), Some(Ok(events))) =
                    (parts.next(), parts.next(), parts.next().map(str::parse))
                {
                    let _ = to.send(Appended::To {
                        tenant: tenant.to_owned(),
                        session: session.to_owned(),
                        events,
                    });
                }
            }
        }
        if client.is_closed() {
            return client.batch_execute("");
        }
    }
    Ok(())
}
