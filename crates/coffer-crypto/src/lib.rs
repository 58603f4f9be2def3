//! Envelope encryption for secret values (in progress).
