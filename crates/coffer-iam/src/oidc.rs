//! OpenID Connect identity providers (IAM's `oidc-provider`): the issuers whose tokens
//! AssumeRoleWithWebIdentity accepts, with the audiences (client ids) they may carry.
//!
//! A provider is an `iam-oidc-provider` record under `<account>/<host and path>` (the
//! URL without `https://`, which is also how its ARN and the trust-policy condition keys
//! `<host and path>:sub` / `:aud` name it). Where its signing keys come from is the
//! server's business: the issuer's discovery document, or (a Coffer extension, for
//! issuers the server cannot reach, such as a Kubernetes API server) a JWKS file named by
//! the provider's tag `coffer:jwks-file`.

use super::{IamError, decode, encode, read, user_key};
use crate::Iam;
use crate::directory::Tag;
use coffer_core::validation::{self, Constraint, Violation};
use coffer_store::{ReadTxn, Store, StoreError};
use serde::{Deserialize, Serialize};

pub const OIDC_KIND: &str = "iam-oidc-provider";
/// The tag naming a local JWKS file for a provider (a Coffer extension).
pub const JWKS_FILE_TAG: &str = "coffer:jwks-file";
const MAX_CLIENT_IDS: usize = 100;
const MAX_THUMBPRINTS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcProvider {
    pub account: String,
    /// The issuer URL as given (`https://host/path`).
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl OidcProvider {
    /// The URL without its scheme: the ARN's resource and the condition-key prefix.
    pub fn host_path(&self) -> &str {
        host_path(&self.url)
    }

    pub fn arn(&self) -> String {
        OidcProvider::arn_of(&self.account, &self.url)
    }

    /// The ARN of the provider of `account` for `url`, as IAM's records keep it.
    pub fn arn_of(account: &str, url: &str) -> String {
        let resource = format!("oidc-provider/{}", host_path(url));
        coffer_auth::principal::STORED.arn("iam", "", account, &resource)
    }

    /// The JWKS file a `coffer:jwks-file` tag names, if any.
    pub fn jwks_file(&self) -> Option<&str> {
        self.tags.iter().find(|t| t.key == JWKS_FILE_TAG).map(|t| t.value.as_str())
    }
}

/// `https://host/path/` -> `host/path`.
pub fn host_path(url: &str) -> &str {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    rest.trim_end_matches('/')
}

fn invalid(message: impl Into<String>) -> IamError {
    IamError::Invalid(message.into())
}

/// `arn:aws:iam::<account>:oidc-provider/<host/path>` -> (account, host/path).
pub fn provider_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = crate::directory::strip_stored_iam_prefix(arn)?;
    let (account, rest) = rest.split_once(':')?;
    let hp = rest.strip_prefix("oidc-provider/")?;
    (crate::is_account_id(account) && !hp.is_empty()).then_some((account, hp))
}

/// The model's length bounds on CreateOpenIDConnectProvider's members, every one broken
/// reported in one message, in IAM's words and order.
fn check_bounds(url: &str, client_ids: &[String], thumbprints: &[String]) -> Result<(), IamError> {
    let mut broken = Vec::new();
    if client_ids.iter().any(|c| c.is_empty() || c.len() > 255) {
        const EACH: &[Constraint<'_>] = &[Constraint::MaxLength(255), Constraint::MinLength(1)];
        broken.push(Violation::unnamed("clientIDList", Constraint::Members(EACH)));
    }
    if thumbprints.iter().any(|t| t.len() != 40) {
        const EACH: &[Constraint<'_>] = &[Constraint::MaxLength(40), Constraint::MinLength(40)];
        broken.push(Violation::unnamed("thumbprintList", Constraint::Members(EACH)));
    }
    if url.is_empty() {
        broken.push(Violation::unnamed("url", Constraint::MinLength(1)));
    } else if url.len() > 255 {
        broken.push(Violation::unnamed("url", Constraint::MaxLength(255)));
    }
    if broken.is_empty() { Ok(()) } else { Err(invalid(validation::detected(&broken))) }
}

/// IAM's answer for a provider ARN that names none (also one of another partition).
pub fn not_found(arn: &str) -> IamError {
    let arn = coffer_auth::sigv4::echo(arn);
    IamError::NotFound(format!("OpenIDConnect Provider not found for arn {arn}"))
}

/// The provider of `account` for issuer `host_path`, in `tx`.
pub fn provider_in(
    tx: &dyn ReadTxn,
    account: &str,
    host_path: &str,
) -> Result<Option<OidcProvider>, StoreError> {
    tx.record(OIDC_KIND, &user_key(account, host_path))?.map(|b| decode(&b)).transpose()
}

impl Iam {
    #[allow(clippy::too_many_arguments)]
    pub fn create_oidc_provider(
        &self,
        store: &dyn Store,
        account: &str,
        url: &str,
        client_ids: Vec<String>,
        thumbprints: Vec<String>,
        tags: Vec<Tag>,
        now_ms: i64,
    ) -> Result<OidcProvider, IamError> {
        check_bounds(url, &client_ids, &thumbprints)?;
        // AWS takes https only; Coffer also takes http, for issuers on a private network
        // (the keys are still verified; only their transport is not).
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || host_path(url).is_empty() || url.contains(['?', '#']) {
            return Err(invalid("Invalid Open ID Connect Provider URL"));
        }
        if thumbprints.len() > MAX_THUMBPRINTS {
            return Err(IamError::InvalidInput(
                "Thumbprint list must contain fewer than 5 entries.".into(),
            ));
        }
        if client_ids.len() > MAX_CLIENT_IDS {
            return Err(IamError::Limit(format!(
                "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}"
            )));
        }
        if thumbprints.iter().any(|t| !t.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(invalid("Invalid value for ThumbprintList: each is 40 hex characters."));
        }
        if let Some(path) = tags.iter().find(|t| t.key == JWKS_FILE_TAG).map(|t| &t.value) {
            // Only an absolute path to a .json file: the server reads it as a key set.
            if !path.starts_with('/') || !path.ends_with(".json") || path.contains("/../") {
                return Err(invalid(format!(
                    "The tag {JWKS_FILE_TAG} must name an absolute path to a .json file."
                )));
            }
        }
        let provider = OidcProvider {
            account: account.to_string(),
            url: url.trim_end_matches('/').to_string(),
            client_ids,
            thumbprints,
            created_ms: now_ms,
            tags,
        };
        let key = user_key(account, provider.host_path());
        self.write(store, |tx| {
            if tx.record(OIDC_KIND, &key)?.is_some() {
                return Err(IamError::Exists(format!(
                    "Provider with url {} already exists.",
                    provider.url
                )));
            }
            tx.put_record(OIDC_KIND, &key, &encode(&provider))?;
            Ok(())
        })?;
        Ok(provider)
    }

    pub fn get_oidc_provider(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
    ) -> Result<OidcProvider, IamError> {
        let Some((owner, hp)) = provider_arn_parts(arn).filter(|(a, _)| *a == account) else {
            return Err(not_found(arn));
        };
        read(store, |tx| provider_in(tx, owner, hp))?.ok_or_else(|| not_found(arn))
    }

    pub fn oidc_providers_in(
        &self,
        store: &dyn Store,
        account: &str,
    ) -> Result<Vec<OidcProvider>, IamError> {
        let prefix = format!("{account}/");
        Ok(read(store, |tx| {
            tx.records(OIDC_KIND, &prefix, None, 1000)?.iter().map(|(_, b)| decode(b)).collect()
        })?)
    }

    pub fn delete_oidc_provider(
        &self,
        store: &dyn Store,
        account: &str,
        arn: &str,
    ) -> Result<(), IamError> {
        let Some((owner, hp)) = provider_arn_parts(arn).filter(|(a, _)| *a == account) else {
            return Err(not_found(arn));
        };
        let key = user_key(owner, hp);
        // Deleting a provider that does not exist (any more) succeeds, as on AWS: the call
        // is idempotent.
        self.write(store, |tx| {
            if tx.record(OIDC_KIND, &key)?.is_some() {
                tx.delete_record(OIDC_KIND, &key)?;
            }
            Ok(())
        })
    }
}
