//! HTTP front end (in progress).
