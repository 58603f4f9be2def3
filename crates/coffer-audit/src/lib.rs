//! The audit trail of Coffer, as pure functions: no I/O, no clock, no store.
//!
//! * [`event`]: the CloudTrail event format and the redaction of request parameters
//!   and response elements (every sensitive member of the service models, at any depth).
//! * [`chain`]: the hash chain per account and region, the stored record layout and the
//!   verifier that names the first event changed, removed or reordered.
//! * [`archive`]: the oldest part of a chain cut into a file that verifies on its own,
//!   and the checkpoint that keeps the chain verifiable across the cut.
//! * [`lookup`]: CloudTrail's LookupEvents: lookup attributes, time range, paging.
//! * [`listed`]: the resources LookupEvents lists for an event, IAM's, STS's and KMS's
//!   derived from what the event holds.
//! * [`stored`]: the compact form the store holds records in, and reading both forms.
//!
//! The server (`coffer-server::audit`) builds events, appends them inside its store
//! transactions and answers LookupEvents with these pieces.

pub mod archive;
pub mod chain;
pub mod event;
pub mod listed;
pub mod lookup;
pub mod stored;
mod time;

pub use chain::{Broken, BrokenKind, ChainKey, Head, Record, verify};
pub use event::{Event, Resource, UserIdentity, redact_parameters};
pub use lookup::{Attribute, LookupError, Query};
pub use time::{format_iso8601, format_response_date};
