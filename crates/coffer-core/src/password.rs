//! GetRandomPassword.
// Implementation in progress.
