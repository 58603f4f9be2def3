//! The AWS JSON 1.1 wire format (in progress).
