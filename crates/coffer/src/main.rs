//! The coffer binary (in progress).
fn main() {}
