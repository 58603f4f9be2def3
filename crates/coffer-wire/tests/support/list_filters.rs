//! ListSecrets' filters from a request body to a match against a secret, as the server
//! takes them: validated against the model, decoded, compiled and matched. Shared by the
//! property test in `tests/fuzz_props.rs` and the coverage-guided target
//! `fuzz/fuzz_targets/list_filters.rs` (which compiles this file in place), so both
//! exercise one path; it needs nothing beyond coffer-core, coffer-wire and serde_json,
//! which keeps the fuzz crate light.

use coffer_core::filters::{Filter, FilterKey, Filters};
use coffer_core::model::{Scope, SecretMeta, Tag};
use coffer_wire::model::ServiceModel;

/// Runs `body` as a ListSecrets request's filters would run. Must never panic; a body the
/// model refuses or that does not decode stops where the server would answer an error.
pub fn validate_decode_and_match(body: serde_json::Value) {
    let model = ServiceModel::secretsmanager();
    if coffer_wire::validate::validate_input(model, "ListSecrets", &body).is_err() {
        return;
    }
    let Ok(request) = coffer_wire::protocol::decode_request::<
        coffer_wire::secretsmanager::ListSecretsRequest,
    >(body) else {
        return;
    };
    let filters: Vec<Filter> = request
        .filters
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| Some(Filter::new(FilterKey::parse(&f.key)?, f.values)))
        .collect();
    let _ = Filters::compile(&filters).matches(&sample_secret());
}

/// A secret with a path-like name, a description and a tag, for filters to match.
fn sample_secret() -> SecretMeta {
    SecretMeta {
        scope: Scope::new("111122223333", "us-east-1"),
        arn: "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf".to_owned(),
        name: "prod/db".to_owned(),
        seq: 1,
        description: Some("the production database".to_owned()),
        kms_key_id: None,
        tags: Some(vec![Tag { key: "env".to_owned(), value: "prod".to_owned() }]),
        created_ms: 0,
        last_changed_ms: 0,
        last_accessed_ms: None,
        deletion_ms: None,
        owning_service: None,
        secret_type: None,
        resource_policy: None,
        rotation: None,
        replication: Default::default(),
    }
}
