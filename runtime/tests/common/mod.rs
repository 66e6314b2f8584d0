//! The kernel tests' helpers, plus what only the runtime's tests need.
#![allow(dead_code)]

#[path = "../../../kernel/tests/common/mod.rs"]
mod kernel_common;

#[allow(unused_imports)]
pub use kernel_common::*;

/// Whether process `pid` is gone (or a zombie: dead, waiting to be reaped).
pub fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to a second for `pid` to die; true when it did.
pub async fn died(pid: u32) -> bool {
    for _ in 0..50 {
        if dead(pid) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    dead(pid)
}
