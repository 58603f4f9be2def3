//! ListSecrets and BatchGetSecretValue filters.
// Implementation in progress.
