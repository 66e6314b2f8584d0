//! Property-based fuzzing of the kernel: generated worlds and sessions, invariants checked after
//! every step (including a differential oracle against Cedar itself), author properties, and
//! failures written back out as scenario files.

mod case;
mod check;
mod property;
mod runner;
pub(crate) use runner::relative;
mod world;

pub use case::{Case, Outcome, Step, case, run};
pub use check::{Monitor, Violation, names};
pub use property::{Property, PropertyError};
pub use runner::{Failure, Fuzz, Summary, save_failure};
pub use world::World;
