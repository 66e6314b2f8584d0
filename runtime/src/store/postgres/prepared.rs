//! Prepared statements, kept per connection: each connection lives on a thread of its own
//! ([`super::pool`]), so a thread-local cache is that connection's. A statement sent as text is
//! parsed and planned by the server every time; the hot ones (append, lease) are prepared once.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::{GenericClient, Statement};

use super::super::StoreError;
use super::pg_error;

thread_local! {
    static CACHE: RefCell<HashMap<&'static str, Statement>> = RefCell::new(HashMap::new());
}

/// `sql` prepared on this thread's connection (prepared now the first time).
pub(super) fn prepared<C: GenericClient>(
    c: &mut C,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    if let Some(s) = CACHE.with(|m| m.borrow().get(sql).cloned()) {
        return Ok(s);
    }
    let s = c.prepare(sql).map_err(pg_error)?;
    CACHE.with(|m| m.borrow_mut().insert(sql, s.clone()));
    Ok(s)
}

/// Forgets this thread's statements (its connection was replaced).
pub(super) fn forget() {
    CACHE.with(|m| m.borrow_mut().clear());
}
