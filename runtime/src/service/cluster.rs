//! Several `arbiter serve` instances on one PostgreSQL store.
//!
//! The contract:
//! - **Any instance reads any session.** A session another instance created is loaded from the
//!   store when first asked for, and followed: every append anywhere notifies
//!   (`LISTEN arbiter_appended`); a followed session with a live event stream catches up at once,
//!   others when next read. Catching up replays the new steps in the kernel and checks they
//!   reproduce the stored events, as a restore does.
//! - **One instance drives a session at a time**, by lease ([`PostgresStore::acquire`]). A
//!   proposal (decision API) takes the session's lease for the request and gives it back after;
//!   a hosted run holds its lease for the whole run and renews it every third of the lease time.
//!   Every step is written with the lease's fencing token, and the database refuses a stale one.
//! - **Takeover**: every instance looks for leases that expired while held (the holder died or
//!   stalled); a hosted run among them whose agent is registered here is taken over — its lease
//!   taken with a new token, its log replayed, whatever was in flight declared in doubt, exactly
//!   as a restart resumes it. A decision-API session needs no takeover: the next proposal takes
//!   the expired lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::error::ApiError;
use super::hosted::Key;
use crate::store::postgres::lease::Acquired;
use crate::store::postgres::listen::{Appended, Listener};
use crate::store::{PostgresStore, StoreError};

/// Shards of the in-flight table (requests of one instance holding one session's lease).
const SHARDS: usize = 64;

/// How this instance takes part.
#[derive(Clone)]
pub struct ClusterConfig {
    /// The store, as opened (the same handle the service writes through, so appends carry the
    /// leases' tokens).
    pub store: PostgresStore,
    /// This instance's name in the leases table (unique among live instances).
    pub instance: String,
    /// How long a lease lives unless renewed.
    pub lease: Duration,
}

pub(super) struct Cluster {
    pub(super) pg: PostgresStore,
    pub(super) instance: String,
    pub(super) lease: Duration,
    /// Requests in flight holding each session's lease, by shard: the lease is taken by the first
    /// and given back by the last, so two requests of this instance never release it under each
    /// other.
    inflight: Vec<Mutex<HashMap<Key, usize>>>,
    pub(super) appended: broadcast::Sender<Appended>,
    /// Leases the renewal thread found lost, for the service to stop driving.
    lost: Arc<Mutex<Vec<Key>>>,
    stop: Arc<AtomicBool>,
    _listener: Listener,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A request's hold on a session's lease; given back when dropped.
pub(super) struct Hold {
    cluster: Arc<Cluster>,
    key: Key,
    /// The session's steps in the log when this instance took the lease (`None` when it already
    /// held it): the local copy must have as many before it writes.
    pub(super) steps: Option<u64>,
}

impl Cluster {
    /// Starts listening for appends, and renewing this instance's leases every third of the
    /// lease time on a thread of its own (a busy executor must not let leases lapse).
    pub(super) fn start(config: ClusterConfig) -> Result<Self, StoreError> {
        let (appended, _) = broadcast::channel(4096);
        let listener = config.store.listen(appended.clone())?;
        let (lost, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let (pg, instance, lease) = (config.store.clone(), config.instance.clone(), config.lease);
        let (found, stopped) = (Arc::clone(&lost), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("arbiter-lease-renewal".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(lease / 3);
                    if let Ok(gone) = pg.renew(&instance, lease)
                        && !gone.is_empty()
                        && let Ok(mut lost) = found.lock()
                    {
                        lost.extend(gone);
                    }
                }
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self {
            pg: config.store,
            instance: config.instance,
            lease: config.lease,
            inflight: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            appended,
            lost,
            stop,
            _listener: listener,
        })
    }

    /// The leases found lost since last asked.
    pub(super) fn lost(&self) -> Vec<Key> {
        self.lost
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    fn shard(&self, key: &Key) -> Result<&Mutex<HashMap<Key, usize>>, ApiError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        self.inflight
            .get(i)
            .ok_or_else(|| ApiError::Unavailable("no lease shard".into()))
    }

    /// Takes `key`'s lease for one request, waiting while another instance's request holds it, up
    /// to the lease time and a second (an instance that died holding it has lost it by then).
    pub(super) async fn hold(self: &Arc<Self>, key: &Key) -> Result<Hold, ApiError> {
        let deadline = tokio::time::Instant::now() + self.lease + Duration::from_secs(1);
        let mut pause = Duration::from_millis(2);
        loop {
            let busy = {
                let shard = self.shard(key)?;
                let mut held = shard
                    .lock()
                    .map_err(|_| ApiError::Unavailable("the lease table is poisoned".into()))?;
                if let Some(n) = held.get_mut(key) {
                    *n += 1;
                    return Ok(self.hold_of(key, None));
                }
                let acquired = io(|| self.pg.acquire(&key.0, &key.1, &self.instance, self.lease))
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                match acquired {
                    Acquired::Held(lease) => {
                        held.insert(key.clone(), 1);
                        return Ok(self.hold_of(key, Some(lease.steps.unwrap_or(0))));
                    }
                    Acquired::Busy { owner, .. } => owner,
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Busy(format!(
                    "session `{}` is being driven by instance `{busy}`",
                    key.1
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn hold_of(self: &Arc<Self>, key: &Key, steps: Option<u64>) -> Hold {
        Hold {
            cluster: Arc::clone(self),
            key: key.clone(),
            steps,
        }
    }

    /// Takes `key`'s lease for a hosted run (held until [`Cluster::let_go`]); who holds it if
    /// another instance does.
    pub(super) fn take(&self, key: &Key) -> Result<Result<(), String>, StoreError> {
        Ok(
            match io(|| self.pg.acquire(&key.0, &key.1, &self.instance, self.lease))? {
                Acquired::Held(_) => Ok(()),
                Acquired::Busy { owner, .. } => Err(owner),
            },
        )
    }

    /// Gives up a hosted run's lease.
    pub(super) fn let_go(&self, key: &Key) {
        let _ = io(|| self.pg.release(&key.0, &key.1, &self.instance));
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Ok(shard) = self.cluster.shard(&self.key) else {
            return;
        };
        let Ok(mut held) = shard.lock() else { return };
        let last = match held.get_mut(&self.key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if last {
            held.remove(&self.key);
            // Under the shard's lock, so a request of this instance arriving now waits for the
            // release and then takes the lease afresh.
            let c = &self.cluster;
            let _ = io(|| c.pg.release(&self.key.0, &self.key.1, &c.instance));
        }
    }
}

/// Runs blocking store work off the async executor where there is one to leave.
pub(super) use crate::driver::off_executor as io;
