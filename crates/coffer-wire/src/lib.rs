//! The AWS JSON 1.1 wire format: only this crate knows how requests and responses look as bytes.
//!
//! * [`model`] and [`validate`] check a request body against the official service
//!   model (types, required members, lengths, ranges, patterns, enums).
//! * [`secretsmanager`] holds the typed request and response shapes; [`kms`] those of KMS.
//! * [`protocol`] holds the pieces every operation shares: targets, errors,
//!   timestamps and blobs.
//! * [`operation`] is the one table of every operation of every service Coffer speaks.
//! * [`query_form`] reads the query protocol's forms (STS, IAM) and the operation they name.
//! * [`query_params`] turns a query-protocol form into the request parameters its event records.

pub mod cloudtrail;
pub mod kms;
pub mod kms_families;
pub mod kms_rest;
pub mod model;
pub mod operation;
pub mod protocol;
pub mod query_form;
pub mod query_params;
pub mod secretsmanager;
pub mod validate;
