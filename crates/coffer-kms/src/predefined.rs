//! AWS's predefined managed aliases (`alias/aws/*`), which real KMS lists in every account and
//! region whether or not their AWS managed key exists yet, merged into ListAliases.
//!
//! Only `alias/aws/secretsmanager` ever gets a stored alias record (with its key, when
//! Secrets Manager first needs it); the others are listed by name only, with no TargetKeyId
//! and no dates, as AWS answers for a managed key not created yet. They are never stored,
//! so nothing else (resolution, CreateAlias/UpdateAlias/DeleteAlias refusals) changes.

use crate::error::KmsError;
use crate::model::{AliasRecord, Page};
use crate::service::{Kms, decode_marker, encode_marker};
use coffer_core::Scope;
use coffer_store::ReadTxn;

/// The AWS managed aliases every account and region lists, in byte order (the order the
/// store lists alias records in, so the merge below is one sort).
pub const PREDEFINED_ALIASES: [&str; 14] = [
    "alias/aws/acm",
    "alias/aws/dynamodb",
    "alias/aws/ebs",
    "alias/aws/elasticfilesystem",
    "alias/aws/es",
    "alias/aws/glue",
    "alias/aws/kinesisvideo",
    "alias/aws/lambda",
    "alias/aws/rds",
    "alias/aws/redshift",
    "alias/aws/s3",
    "alias/aws/secretsmanager",
    "alias/aws/ssm",
    "alias/aws/xray",
];

/// One ListAliases entry: a stored alias, or a predefined one whose key does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedAlias {
    Stored(AliasRecord),
    /// Listed by name only: no TargetKeyId and no dates.
    Predefined(&'static str),
}

impl ListedAlias {
    pub fn name(&self) -> &str {
        match self {
            ListedAlias::Stored(alias) => &alias.name,
            ListedAlias::Predefined(name) => name,
        }
    }
}

impl Kms {
    /// ListAliases as AWS answers it: the stored aliases and, without `key_id`, the
    /// predefined ones not stored, in name order; `key_id` lists only that key's stored
    /// aliases (a predefined alias without a key has no key to match). The marker is the
    /// last listed name, so a page may end on either kind and the next resumes after it.
    pub fn list_aliases_with_predefined(
        &self,
        tx: &dyn ReadTxn,
        scope: &Scope,
        key_id: Option<&str>,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListedAlias>, KmsError> {
        if key_id.is_some() {
            let page = self.list_aliases(tx, scope, key_id, marker, limit)?;
            let items = page.items.into_iter().map(ListedAlias::Stored).collect();
            return Ok(Page { items, next_marker: page.next_marker });
        }
        let limit = limit.max(1);
        let after = marker.map(decode_marker).transpose()?;
        let stored = self.list_aliases(tx, scope, None, marker, limit)?;
        // A truncated stored page covers every stored name up to its last one: predefined
        // names past it wait for a later page (where any stored twin is seen too).
        let bound = match stored.next_marker {
            Some(_) => stored.items.last().map(|alias| alias.name.clone()),
            None => None,
        };
        let mut items: Vec<ListedAlias> = PREDEFINED_ALIASES
            .into_iter()
            .filter(|name| after.as_deref().is_none_or(|after| *name > after))
            .filter(|name| bound.as_deref().is_none_or(|bound| *name <= bound))
            .filter(|name| !stored.items.iter().any(|alias| alias.name == *name))
            .map(ListedAlias::Predefined)
            .collect();
        let more_stored = stored.next_marker.is_some();
        items.extend(stored.items.into_iter().map(ListedAlias::Stored));
        items.sort_by(|a, b| a.name().cmp(b.name()));
        let more = more_stored || items.len() > limit;
        items.truncate(limit);
        let next_marker = match items.last() {
            Some(last) if more => Some(encode_marker(last.name())),
            _ => None,
        };
        Ok(Page { items, next_marker })
    }
}
