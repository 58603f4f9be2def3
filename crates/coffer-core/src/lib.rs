//! The Secrets Manager domain: pure, synchronous rules with no I/O.
//!
//! Everything here is decided from values passed in: the clock, randomness for
//! ARN suffixes and passwords, and the current state of a secret. Handlers in
//! `coffer-server` load state from a store, call these functions and persist
//! what they return.

pub mod error;
pub mod filters;
pub mod model;
pub mod names;
pub mod partition;
pub mod password;
pub mod schedule;
pub mod snapshot;
pub mod staging;
pub mod validation;

pub use error::{AwsError, ErrorCode};
pub use model::{Scope, SecretMeta, Tag, VersionMeta};
pub use partition::Partition;
