//! ListSecrets filters: any body validated as ListSecrets input, its filters taken as the
//! server takes them, compiled and matched against a secret. Must never panic.
#![no_main]

use coffer_core::filters::{Filter, FilterKey, Filters};
use coffer_core::model::{Scope, SecretMeta, Tag};
use coffer_wire::model::ServiceModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let model = ServiceModel::secretsmanager();
    if coffer_wire::validate::validate_input(model, "ListSecrets", &value).is_err() {
        return;
    }
    let Ok(request) = coffer_wire::protocol::decode_request::<
        coffer_wire::secretsmanager::ListSecretsRequest,
    >(value) else {
        return;
    };
    let filters: Vec<Filter> = request
        .filters
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| Some(Filter::new(FilterKey::parse(&f.key)?, f.values)))
        .collect();
    let secret = SecretMeta {
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
    };
    let _ = Filters::compile(&filters).matches(&secret);
});
