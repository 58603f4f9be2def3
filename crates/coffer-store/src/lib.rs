//! Storage of secrets (in progress).
