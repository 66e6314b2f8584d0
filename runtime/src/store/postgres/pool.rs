//! The connections: a few worker threads, each owning one synchronous client, fed from one queue.
//! Callers block on a reply channel, never on a client of their own, so the store can be called
//! from any thread — an async executor's included (the synchronous client runs its own small
//! runtime, which must not be entered from inside another; worker threads have none).
//!
//! Group commit: a worker that takes an append also takes the appends queued behind it (up to
//! [`MAX_GROUP`]) and writes them in one transaction, each under its own savepoint, so one
//! refused append (a conflict, a stale fencing token) fails alone while the rest share one commit.
//! Each caller still returns only once its append is durable.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use postgres::{Client, NoTls};

use super::super::StoreError;
use super::{Append, backend, pg_error};

/// Most appends written in one transaction.
pub(super) const MAX_GROUP: usize = 64;

type Work = Box<dyn FnOnce(&mut Client) + Send>;

/// Where an append's result goes.
type Reply = mpsc::SyncSender<Result<(), StoreError>>;

pub(super) enum Job {
    /// Any work on a connection.
    Run(Work),
    /// An append, which may share a transaction with others.
    Append(Box<Append>, Reply),
}

/// The worker threads and their queue. Dropping it ends them once the queue is empty.
pub(super) struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Pool {
    /// Connects `size` clients to `url` (each checked now, so a bad URL fails here). Each
    /// connects on its own thread: the synchronous client runs a runtime of its own, which must
    /// not start on a thread already driving one (a caller on an async executor).
    pub(super) fn connect(url: &str, size: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, size, "")
    }

    /// [`Pool::connect`], each connection running `setup` (SQL) first.
    pub(super) fn connect_with(
        url: &str,
        size: usize,
        setup: &'static str,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size.max(1) {
            let rx = Arc::clone(&rx);
            let url = url.to_owned();
            let (ready, connected) = mpsc::sync_channel(1);
            thread::Builder::new()
                .name(format!("arbiter-pg-{i}"))
                .spawn(move || {
                    match Client::connect(&url, NoTls).and_then(|mut c| {
                        c.batch_execute(setup)?;
                        Ok(c)
                    }) {
                        Ok(client) => {
                            let _ = ready.send(Ok(()));
                            work(client, &url, &rx);
                        }
                        Err(e) => {
                            let _ = ready.send(Err(pg_error(e)));
                        }
                    }
                })
                .map_err(backend)?;
            connected
                .recv()
                .map_err(|_| StoreError::Backend("a PostgreSQL worker died connecting".into()))??;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .lock()
            .map_err(|_| StoreError::Backend("the connection queue is poisoned".into()))?
            .send(job)
            .map_err(|_| StoreError::Backend("the PostgreSQL workers have stopped".into()))
    }

    /// Runs `f` on a connection and waits for its answer.
    pub(super) fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Run(Box::new(move |c| {
            let _ = reply.send(f(c));
        })))?;
        answer
            .recv()
            .map_err(|_| StoreError::Backend("a PostgreSQL worker stopped mid-request".into()))?
    }

    /// Appends (grouped with whatever appends are queued) and waits until it is durable.
    pub(super) fn append(&self, append: Append) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Append(Box::new(append), reply))?;
        answer
            .recv()
            .map_err(|_| StoreError::Backend("a PostgreSQL worker stopped mid-append".into()))?
    }
}

fn work(mut client: Client, url: &str, rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut later: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match later.pop_front() {
            Some(job) => job,
            None => {
                let Ok(queue) = rx.lock() else { return };
                let Ok(job) = queue.recv() else { return };
                job
            }
        };
        if client.is_closed() {
            // The server went away; try once to come back (the job fails if not).
            if let Ok(fresh) = Client::connect(url, NoTls) {
                client = fresh;
                super::prepared::forget();
            }
        }
        match first {
            Job::Run(f) => f(&mut client),
            Job::Append(a, reply) => {
                let mut group = vec![(a, reply)];
                // `try_lock`: a worker holding the queue is blocked in `recv`, so it is empty.
                if let Ok(queue) = rx.try_lock() {
                    while group.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(Job::Append(a, reply)) => group.push((a, reply)),
                            Ok(other) => later.push_back(other),
                            Err(_) => break,
                        }
                    }
                }
                commit_group(&mut client, group);
            }
        }
    }
}

/// Writes `group` in one transaction, each append under its own savepoint.
fn commit_group(client: &mut Client, group: Vec<(Box<Append>, Reply)>) {
    let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(group.len());
    let outcome = (|| -> Result<(), StoreError> {
        let mut tx = client.transaction().map_err(pg_error)?;
        for (a, _) in &group {
            let mut attempts = 0;
            loop {
                let mut sp = tx.savepoint("one").map_err(pg_error)?;
                match a.write(&mut sp) {
                    Ok(()) => {
                        sp.commit().map_err(pg_error)?;
                        results.push(Ok(()));
                        break;
                    }
                    // A deadlock or serialization failure undone with its savepoint is tried
                    // again: nothing of it was written.
                    Err(e) if transient(&e) && attempts < 3 => {
                        sp.rollback().map_err(pg_error)?;
                        attempts += 1;
                    }
                    Err(e) => {
                        sp.rollback().map_err(pg_error)?;
                        results.push(Err(e));
                        break;
                    }
                }
            }
        }
        tx.commit().map_err(pg_error)
    })();
    for (i, (_, reply)) in group.into_iter().enumerate() {
        let result = match &outcome {
            Err(e) => Err(e.clone()),
            Ok(()) => results.get(i).cloned().unwrap_or_else(|| {
                Err(StoreError::Backend("no result for a grouped append".into()))
            }),
        };
        let _ = reply.send(result);
    }
}

/// PostgreSQL's "try again" errors: deadlock detected, serialization failure.
fn transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(m) if m.starts_with("40P01") || m.starts_with("40001"))
}
