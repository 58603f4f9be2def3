//! Who may do what, decided without I/O: SigV4 request verification, principals and
//! their credentials, and IAM policy evaluation with AWS's semantics.
//!
//! Architecture invariant: this crate does no I/O and never sees tokio, axum or a
//! database type. The server hands it the parts of a request and the records it
//! loaded; it answers with a verified identity or a decision.
//!
//! * [`sigv4`]: the signature chain as pure functions (canonical request ->
//!   string to sign -> signature), the credential-scope and clock-skew checks and
//!   AWS's error codes and messages.
//! * [`principal`]: IAM users, access keys and the generation of key pairs.
//! * [`policy`]: policy documents (parsing, grammar findings, public access) and
//!   their evaluation for a request, identity and resource policies combined.
//! * [`time`]: the few date formats SigV4 and policy conditions use.

pub mod policy;
pub mod principal;
pub mod sigv4;
pub mod time;

pub use policy::{Decision, Policy, PolicyKind};
pub use principal::Principal;
pub use sigv4::SigV4Error;
