//! What the built-in rotators do on the service a secret protects: PostgreSQL single-user
//! and alternating-users rotation, reading and writing the secret JSON of AWS's rotation
//! templates (`engine`, `host`, `username`, `password`, `dbname`, `port`, `ssl`,
//! `masterarn`). The steps' bookkeeping (labels, versions) is `coffer-server`'s; this
//! crate only builds values and talks to the database whose credentials rotate (it never
//! sees Coffer's own store).

pub mod postgres;
