//! ListSecrets and BatchGetSecretValue filters: which secrets a list of `Filters` selects.
//!
//! Filters are ANDed and the values of one filter are ORed. A value that starts with `!`
//! is negated. Keys match in one of two ways:
//!
//! * prefix match on the whole attribute (`name`, `tag-key`, `tag-value`,
//!   `primary-region`), case-sensitive;
//! * word match (`description`, `owning-service`, `all`), not case-sensitive: the value
//!   and the attribute are broken into words, and every word of the value must be the
//!   prefix of some word of the attribute. `a secret` therefore matches "an secret" but
//!   not "asecret", as observed on AWS.
//!
//! Word splitting follows moto, which reproduced what AWS does: whitespace separates
//! terms, then a term is split on one of `/ - _ + = . @` (a term that mixes two of them
//! is kept whole) and on case changes (`MyTest` is `My` and `Test`).

use crate::model::SecretMeta;

/// The filter keys the service model allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterKey {
    Description,
    Name,
    TagKey,
    TagValue,
    PrimaryRegion,
    OwningService,
    All,
}

impl FilterKey {
    /// Reads a key as it appears on the wire; `None` for anything the model does not list.
    pub fn parse(s: &str) -> Option<FilterKey> {
        match s {
            "description" => Some(FilterKey::Description),
            "name" => Some(FilterKey::Name),
            "tag-key" => Some(FilterKey::TagKey),
            "tag-value" => Some(FilterKey::TagValue),
            "primary-region" => Some(FilterKey::PrimaryRegion),
            "owning-service" => Some(FilterKey::OwningService),
            "all" => Some(FilterKey::All),
            _ => None,
        }
    }

    /// The wire name of the key.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKey::Description => "description",
            FilterKey::Name => "name",
            FilterKey::TagKey => "tag-key",
            FilterKey::TagValue => "tag-value",
            FilterKey::PrimaryRegion => "primary-region",
            FilterKey::OwningService => "owning-service",
            FilterKey::All => "all",
        }
    }
}

/// One entry of a request's `Filters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: FilterKey,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(key: FilterKey, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Filter { key, values: values.into_iter().map(Into::into).collect() }
    }

    /// True when `secret` matches at least one of this filter's values.
    pub fn matches(&self, secret: &SecretMeta) -> bool {
        Filters::compile(std::slice::from_ref(self)).matches(secret)
    }
}

/// True when `secret` matches every filter (filters are ANDed; the values of one filter are ORed).
/// Compiles the filters for this one call: a listing compiles them once with
/// [`Filters::compile`] instead.
pub fn matches_all(secret: &SecretMeta, filters: &[Filter]) -> bool {
    Filters::compile(filters).matches(secret)
}

/// A request's filters prepared once: each value's negation read and, for word matches,
/// its words split and lowercased. Matching a secret then splits each of the secret's
/// attributes at most once, whatever the number of filters and values: before, every
/// value re-split itself and every attribute, for every secret of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    filters: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    key: FilterKey,
    values: Vec<Value>,
}

#[derive(Debug, Clone)]
struct Value {
    negated: bool,
    /// The value without its `!`, for prefix matches.
    text: String,
    /// Its lowercased words, for word matches (empty: the value selects nothing).
    words: Vec<String>,
}

impl Filters {
    pub fn compile(filters: &[Filter]) -> Filters {
        let filters = filters
            .iter()
            .map(|f| Compiled {
                key: f.key,
                values: f
                    .values
                    .iter()
                    .map(|v| {
                        let (negated, text) = match v.strip_prefix('!') {
                            Some(rest) => (true, rest),
                            None => (false, v.as_str()),
                        };
                        Value { negated, text: text.to_string(), words: lowercase_words(text) }
                    })
                    .collect(),
            })
            .collect();
        Filters { filters }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters as one unambiguous string (each key and value length-prefixed, in
    /// request order): what a paging token is bound to, so it is refused with others.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for f in &self.filters {
            let key = f.key.as_str();
            out.push_str(&format!("{}:{key}{}[", key.len(), f.values.len()));
            for v in &f.values {
                let neg = if v.negated { "!" } else { "" };
                out.push_str(&format!("{}:{neg}{}", v.text.len() + neg.len(), v.text));
            }
            out.push(']');
        }
        out
    }

    /// An upper bound of the work of matching `secret`: how many (value, attribute string)
    /// pairs the filters may compare. A listing charges it against its budget, so that
    /// ten filters of ten values over secrets with fifty tags each examine fewer secrets
    /// per call than one short filter does.
    pub fn cost(&self, secret: &SecretMeta) -> usize {
        let tags = secret.tags.as_ref().map_or(0, Vec::len);
        self.filters
            .iter()
            .map(|f| {
                let attributes = match f.key {
                    FilterKey::Name | FilterKey::PrimaryRegion => 1,
                    FilterKey::Description | FilterKey::OwningService => 1,
                    FilterKey::TagKey | FilterKey::TagValue => tags,
                    FilterKey::All => 2 + 2 * tags,
                };
                f.values.len() * attributes
            })
            .sum()
    }

    /// True when `secret` matches every filter.
    pub fn matches(&self, secret: &SecretMeta) -> bool {
        let mut words = Words::default();
        self.filters.iter().all(|f| f.matches(secret, &mut words))
    }
}

/// One attribute string of a secret for word matching, its lowercased forms worked out on
/// first use and kept for the other values and filters of the same match.
struct Attr<'s> {
    text: &'s str,
    /// The ASCII-lowercased text, for ASCII text: a quick test that a word cannot match.
    lower: Option<String>,
    words: Option<Vec<String>>,
}

impl<'s> Attr<'s> {
    fn new(text: &'s str) -> Attr<'s> {
        Attr { text, lower: None, words: None }
    }

    /// False when no word of this attribute can start with `word` (lowercased): every
    /// word of ASCII text is a piece of it, so its lowercase is a piece of the lowercased
    /// text. Most attributes fail here without being split into words at all.
    fn may_hold(&mut self, word: &str) -> bool {
        if !self.text.is_ascii() {
            return true;
        }
        let text = self.text;
        self.lower.get_or_insert_with(|| text.to_ascii_lowercase()).contains(word)
    }

    fn words(&mut self) -> &[String] {
        let text = self.text;
        self.words.get_or_insert_with(|| lowercase_words(text))
    }

    /// Whether every word of `value` is the prefix of some word of this attribute.
    fn holds(&mut self, value: &Value) -> bool {
        // A value made only of separators says nothing, and selects nothing.
        if value.words.is_empty() || !value.words.iter().all(|w| self.may_hold(w)) {
            return false;
        }
        let words = self.words();
        value.words.iter().all(|v| words.iter().any(|a| a.starts_with(v.as_str())))
    }
}

/// The word-matching attributes of one secret, by group, made on first use.
#[derive(Default)]
struct Words<'s> {
    name: Option<Vec<Attr<'s>>>,
    description: Option<Vec<Attr<'s>>>,
    owning_service: Option<Vec<Attr<'s>>>,
    tag_keys: Option<Vec<Attr<'s>>>,
    tag_values: Option<Vec<Attr<'s>>>,
}

fn group<'a, 's>(
    slot: &'a mut Option<Vec<Attr<'s>>>,
    texts: impl IntoIterator<Item = &'s str>,
) -> &'a mut Vec<Attr<'s>> {
    slot.get_or_insert_with(|| texts.into_iter().map(Attr::new).collect())
}

impl Compiled {
    fn matches<'s>(&self, secret: &'s SecretMeta, words: &mut Words<'s>) -> bool {
        let tags = secret.tags.as_deref().unwrap_or_default();
        match self.key {
            FilterKey::Name => prefix_match(&self.values, &[secret.name.as_str()]),
            FilterKey::TagKey => {
                let keys: Vec<&str> = tags.iter().map(|t| t.key.as_str()).collect();
                prefix_match(&self.values, &keys)
            }
            FilterKey::TagValue => {
                let values: Vec<&str> = tags.iter().map(|t| t.value.as_str()).collect();
                prefix_match(&self.values, &values)
            }
            // The attribute is the PrimaryRegion the secret shows: a replica's primary's
            // region, a primary's own. A secret never replicated shows none, so like an
            // untagged secret under a tag filter it matches no value, negated or not.
            FilterKey::PrimaryRegion => {
                let primary = secret.replication.primary_region.as_deref();
                prefix_match(&self.values, &non_empty(primary))
            }
            FilterKey::Description => {
                let attrs = group(&mut words.description, non_empty(secret.description.as_deref()));
                word_match(&self.values, &mut [attrs])
            }
            FilterKey::OwningService => {
                let attrs =
                    group(&mut words.owning_service, non_empty(secret.owning_service.as_deref()));
                word_match(&self.values, &mut [attrs])
            }
            FilterKey::All => {
                let Words { name, description, tag_keys, tag_values, .. } = words;
                let mut groups = [
                    group(name, [secret.name.as_str()]),
                    group(description, non_empty(secret.description.as_deref())),
                    group(tag_keys, tags.iter().map(|t| t.key.as_str())),
                    group(tag_values, tags.iter().map(|t| t.value.as_str())),
                ];
                word_match(&self.values, &mut groups)
            }
        }
    }
}

/// An optional attribute as a list: absent and empty attributes both match nothing.
fn non_empty(attribute: Option<&str>) -> Vec<&str> {
    attribute.filter(|s| !s.is_empty()).into_iter().collect()
}

/// Prefix matching of a filter's values against a secret's attribute strings, the way
/// moto does.
///
/// A negated value matches when *some* attribute string does not match it, so on a
/// multi-valued attribute such as tag keys `!prod` selects every secret with at least one
/// tag key that does not start with `prod`. A secret without the attribute at all matches
/// neither plain nor negated values.
fn prefix_match(values: &[Value], attributes: &[&str]) -> bool {
    values.iter().any(|v| attributes.iter().any(|a| a.starts_with(v.text.as_str()) != v.negated))
}

/// Word matching: a value matches an attribute when every word of the value is the
/// prefix of some word of the attribute; negation as in [`prefix_match`]. `groups` are
/// the secret's attributes for the filter's key.
fn word_match(values: &[Value], groups: &mut [&mut Vec<Attr<'_>>]) -> bool {
    values.iter().any(|v| {
        groups.iter_mut().any(|g| g.iter_mut().any(|attribute| attribute.holds(v) != v.negated))
    })
}

/// Splits first, then lowercases: case changes are word boundaries, so the order matters.
fn lowercase_words(s: &str) -> Vec<String> {
    split_words(s).into_iter().map(str::to_lowercase).collect()
}

/// The separators a term is split on, in moto's order.
const SEPARATORS: [char; 7] = ['/', '-', '_', '+', '=', '.', '@'];

/// Breaks a string into the words that word-match filters compare.
fn split_words(s: &str) -> Vec<&str> {
    s.split_whitespace().flat_map(split_term).collect()
}

/// Splits one whitespace-free term. A term that contains two different separators
/// (`my/secret+value`) is kept whole, as moto observed AWS to do.
fn split_term(term: &str) -> Vec<&str> {
    let mut present = SEPARATORS.iter().filter(|c| term.contains(**c));
    match (present.next(), present.next()) {
        (None, _) => split_by_case(term),
        (Some(&separator), None) => term.split(separator).flat_map(split_by_case).collect(),
        (Some(_), Some(_)) => vec![term],
    }
}

/// Splits where a word starts: at a character that is not an ASCII lowercase letter and
/// is followed by one (`MyTest` is `My`, `Test`; `ABCdef` is `AB`, `Cdef`), and after the
/// lowercase run of such a word. This is `re.split(r"([^a-z][a-z]+)", s)` in moto.
fn split_by_case(term: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = term.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(term.len(), |(pos, _)| *pos);
    let is_lower = |i: usize| chars.get(i).is_some_and(|(_, c)| c.is_ascii_lowercase());
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut i = 0;
    while i < chars.len() {
        if !is_lower(i) && is_lower(i + 1) {
            let mut end = i + 1;
            while is_lower(end) {
                end += 1;
            }
            pieces.push(&term[piece_start..byte_at(i)]);
            pieces.push(&term[byte_at(i)..byte_at(end)]);
            piece_start = byte_at(end);
            i = end;
        } else {
            i += 1;
        }
    }
    pieces.push(&term[piece_start..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Scope, Tag};

    fn secret(name: &str) -> SecretMeta {
        SecretMeta {
            scope: Scope::new("123456789012", "us-east-1"),
            arn: format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"),
            name: name.to_string(),
            seq: 0,
            description: None,
            kms_key_id: None,
            tags: None,
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

    fn described(name: &str, description: &str) -> SecretMeta {
        SecretMeta { description: Some(description.to_string()), ..secret(name) }
    }

    fn tagged(name: &str, tags: &[(&str, &str)]) -> SecretMeta {
        let tags = tags.iter().map(|(k, v)| Tag { key: k.to_string(), value: v.to_string() });
        SecretMeta { tags: Some(tags.collect()), ..secret(name) }
    }

    fn one(key: FilterKey, values: &[&str]) -> Vec<Filter> {
        vec![Filter::new(key, values.iter().copied())]
    }

    fn hits(secret: &SecretMeta, key: FilterKey, values: &[&str]) -> bool {
        matches_all(secret, &one(key, values))
    }

    #[test]
    fn compiled_filters_match_as_before_and_have_an_unambiguous_canonical_form() {
        let s = tagged("prod/db", &[("Team", "Infra"), ("env", "prod")]);
        let filters = vec![
            Filter::new(FilterKey::All, ["infra", "!nothing"]),
            Filter::new(FilterKey::TagKey, ["en"]),
        ];
        let compiled = Filters::compile(&filters);
        assert!(compiled.matches(&s));
        assert!(!Filters::compile(&one(FilterKey::All, &["nothing"])).matches(&s));
        assert!(Filters::compile(&[]).matches(&s));
        let canon = |f: &[Filter]| Filters::compile(f).canonical();
        assert_ne!(
            canon(&one(FilterKey::Name, &["a", "b"])),
            canon(&one(FilterKey::Name, &["ab"]))
        );
        assert_ne!(canon(&one(FilterKey::Name, &["!a"])), canon(&one(FilterKey::Name, &["a"])));
        assert_ne!(canon(&one(FilterKey::Name, &["a"])), canon(&one(FilterKey::TagKey, &["a"])));
        assert_eq!(canon(&filters), canon(&filters.clone()));
    }

    #[test]
    fn every_wire_key_parses_and_round_trips() {
        for name in [
            "description",
            "name",
            "tag-key",
            "tag-value",
            "primary-region",
            "owning-service",
            "all",
        ] {
            assert_eq!(FilterKey::parse(name).map(FilterKey::as_str), Some(name));
        }
    }

    #[test]
    fn unknown_or_miscased_keys_do_not_parse() {
        for name in ["Name", "tag_key", "tags", "", "ALL"] {
            assert_eq!(FilterKey::parse(name), None, "{name}");
        }
    }

    #[test]
    fn name_is_a_case_sensitive_prefix_of_the_whole_name() {
        let s = secret("/testing2/one");
        assert!(hits(&s, FilterKey::Name, &["/"]));
        assert!(hits(&s, FilterKey::Name, &["/testing2/o"]));
        assert!(!hits(&s, FilterKey::Name, &["testing2"]));
        assert!(!hits(&s, FilterKey::Name, &["/Testing2"]));
    }

    #[test]
    fn name_with_a_space_matches_nothing() {
        for name in ["testing1", "testing1one", "testing1-one", "testing1/one"] {
            assert!(!hits(&secret(name), FilterKey::Name, &["testing1 one"]), "{name}");
        }
    }

    #[test]
    fn values_of_one_filter_are_ored() {
        let s = secret("beta-service");
        assert!(hits(&s, FilterKey::Name, &["alpha", "beta"]));
        assert!(!hits(&s, FilterKey::Name, &["alpha", "gamma"]));
    }

    #[test]
    fn several_filters_are_anded() {
        let s = SecretMeta {
            description: Some("database password".into()),
            ..tagged("prod/db", &[("env", "prod")])
        };
        let both = vec![
            Filter::new(FilterKey::Name, ["prod"]),
            Filter::new(FilterKey::Description, ["data"]),
        ];
        assert!(matches_all(&s, &both));
        let one_fails =
            vec![Filter::new(FilterKey::Name, ["prod"]), Filter::new(FilterKey::TagValue, ["dev"])];
        assert!(!matches_all(&s, &one_fails));
    }

    #[test]
    fn no_filters_match_every_secret() {
        assert!(matches_all(&secret("anything"), &[]));
    }

    #[test]
    fn negated_name_matches_names_without_the_prefix() {
        assert!(hits(&secret("dev/app"), FilterKey::Name, &["!prod"]));
        assert!(!hits(&secret("prod/app"), FilterKey::Name, &["!prod"]));
    }

    #[test]
    fn negated_and_plain_values_of_one_filter_are_ored() {
        let filter = ["!prod", "prod/app"];
        assert!(hits(&secret("prod/app"), FilterKey::Name, &filter));
        assert!(hits(&secret("dev/app"), FilterKey::Name, &filter));
        assert!(!hits(&secret("prod/db"), FilterKey::Name, &filter));
    }

    #[test]
    fn description_matches_when_every_term_prefixes_some_word() {
        let filter = ["a secret"];
        assert!(hits(&described("x", "a secret"), FilterKey::Description, &filter));
        assert!(hits(&described("x", "an secret"), FilterKey::Description, &filter));
        assert!(!hits(&described("x", "asecret"), FilterKey::Description, &filter));
        assert!(hits(&described("x", "secret for a service"), FilterKey::Description, &filter));
        assert!(!hits(&described("x", "a password"), FilterKey::Description, &filter));
    }

    #[test]
    fn description_is_not_case_sensitive() {
        let s = described("x", "Database Password");
        assert!(hits(&s, FilterKey::Description, &["database pass"]));
        assert!(hits(&s, FilterKey::Description, &["DATA"]));
    }

    #[test]
    fn description_words_are_split_on_separators_and_case_changes() {
        let s = described("x", "rds-instance for MyTeamApp");
        assert!(hits(&s, FilterKey::Description, &["instance"]));
        assert!(hits(&s, FilterKey::Description, &["team"]));
        assert!(hits(&s, FilterKey::Description, &["app rds"]));
        assert!(!hits(&s, FilterKey::Description, &["stance"]));
    }

    #[test]
    fn a_term_with_two_different_separators_stays_one_word() {
        let s = described("x", "key my/secret+value");
        assert!(hits(&s, FilterKey::Description, &["my/secret+v"]));
        assert!(hits(&s, FilterKey::Description, &["my"]));
        assert!(!hits(&s, FilterKey::Description, &["secret"]));
        assert!(!hits(&s, FilterKey::Description, &["value"]));
    }

    #[test]
    fn description_value_made_of_separators_matches_nothing() {
        assert!(!hits(&described("x", "a/b"), FilterKey::Description, &["/"]));
    }

    #[test]
    fn missing_or_empty_description_matches_nothing_even_negated() {
        for s in [secret("x"), described("x", "")] {
            assert!(!hits(&s, FilterKey::Description, &["a"]));
            assert!(!hits(&s, FilterKey::Description, &["!a"]));
        }
    }

    #[test]
    fn negated_description_matches_descriptions_without_the_words() {
        assert!(hits(&described("x", "staging key"), FilterKey::Description, &["!prod"]));
        assert!(!hits(&described("x", "production key"), FilterKey::Description, &["!prod"]));
    }

    #[test]
    fn tag_key_is_a_case_sensitive_prefix_of_any_key() {
        let s = tagged("x", &[("Environment", "prod"), ("team", "core")]);
        assert!(hits(&s, FilterKey::TagKey, &["Env"]));
        assert!(hits(&s, FilterKey::TagKey, &["te"]));
        assert!(!hits(&s, FilterKey::TagKey, &["env"]));
        assert!(!hits(&s, FilterKey::TagKey, &["prod"]));
    }

    #[test]
    fn tag_value_is_a_case_sensitive_prefix_of_any_value() {
        let s = tagged("x", &[("Environment", "prod"), ("team", "core")]);
        assert!(hits(&s, FilterKey::TagValue, &["pro"]));
        assert!(hits(&s, FilterKey::TagValue, &["core"]));
        assert!(!hits(&s, FilterKey::TagValue, &["Prod"]));
        assert!(!hits(&s, FilterKey::TagValue, &["Env"]));
    }

    #[test]
    fn negated_tag_key_matches_when_some_key_lacks_the_prefix() {
        let mixed = tagged("x", &[("prod-owner", "a"), ("cost", "b")]);
        let only_prod = tagged("x", &[("prod-owner", "a"), ("prod-cost", "b")]);
        assert!(hits(&mixed, FilterKey::TagKey, &["!prod"]));
        assert!(!hits(&only_prod, FilterKey::TagKey, &["!prod"]));
    }

    #[test]
    fn untagged_secrets_match_no_tag_filter_even_negated() {
        for s in [secret("x"), tagged("x", &[])] {
            for key in [FilterKey::TagKey, FilterKey::TagValue] {
                assert!(!hits(&s, key, &["a"]));
                assert!(!hits(&s, key, &["!a"]));
            }
        }
    }

    #[test]
    fn secrets_never_replicated_match_no_primary_region_filter() {
        let s = secret("x");
        assert!(s.replication.primary_region.is_none());
        for value in ["us-east-1", "us-", "!eu-west-1", "!us-east-1"] {
            assert!(!hits(&s, FilterKey::PrimaryRegion, &[value]), "{value}");
        }
    }

    #[test]
    fn primary_region_is_a_prefix_of_a_primarys_own_region() {
        let mut s = secret("x");
        s.replication.primary_region = Some(s.scope.region.clone());
        assert!(hits(&s, FilterKey::PrimaryRegion, &["us-east-1"]));
        assert!(hits(&s, FilterKey::PrimaryRegion, &["us-"]));
        assert!(!hits(&s, FilterKey::PrimaryRegion, &["eu-west-1"]));
        assert!(hits(&s, FilterKey::PrimaryRegion, &["!eu-west-1"]));
    }

    #[test]
    fn a_replica_matches_its_primarys_region_not_its_own() {
        let mut s = secret("x");
        s.scope.region = "eu-west-1".into();
        s.replication.primary_region = Some("us-east-1".into());
        assert!(s.is_replica());
        assert!(hits(&s, FilterKey::PrimaryRegion, &["us-east-1"]));
        assert!(!hits(&s, FilterKey::PrimaryRegion, &["eu-west-1"]));
        assert!(hits(&s, FilterKey::PrimaryRegion, &["!eu-west-1"]));
    }

    #[test]
    fn owning_service_matches_words_of_the_owning_service() {
        let s = SecretMeta { owning_service: Some("appflow".into()), ..secret("x") };
        assert!(hits(&s, FilterKey::OwningService, &["appflow"]));
        assert!(hits(&s, FilterKey::OwningService, &["APPF"]));
        assert!(!hits(&s, FilterKey::OwningService, &["rds"]));
        assert!(hits(&s, FilterKey::OwningService, &["!rds"]));
    }

    #[test]
    fn secrets_without_an_owning_service_match_no_owning_service_filter() {
        assert!(!hits(&secret("x"), FilterKey::OwningService, &["rds"]));
        assert!(!hits(&secret("x"), FilterKey::OwningService, &["!rds"]));
    }

    #[test]
    fn all_matches_words_of_name_description_tag_keys_and_tag_values() {
        let s = SecretMeta {
            description: Some("Billing credentials".into()),
            ..tagged("/payments/stripe", &[("CostCenter", "Finance")])
        };
        for value in ["stripe", "PAY", "billing cred", "center", "cost", "fin"] {
            assert!(hits(&s, FilterKey::All, &[value]), "{value}");
        }
        for value in ["ripe", "missing", "billing missing"] {
            assert!(!hits(&s, FilterKey::All, &[value]), "{value}");
        }
    }

    #[test]
    fn all_requires_every_term_within_one_attribute() {
        let s = SecretMeta { description: Some("billing".into()), ..secret("stripe") };
        assert!(!hits(&s, FilterKey::All, &["stripe billing"]));
    }

    #[test]
    fn negated_all_matches_when_some_attribute_lacks_the_words() {
        let s = SecretMeta { description: Some("prod database".into()), ..secret("prod") };
        assert!(!hits(&s, FilterKey::All, &["!prod"]));
        assert!(hits(&s, FilterKey::All, &["!database"]));
    }

    #[test]
    fn case_changes_split_like_moto() {
        assert_eq!(split_by_case("MyTest"), ["My", "Test"]);
        assert_eq!(split_by_case("ABCdef"), ["AB", "Cdef"]);
        assert_eq!(split_by_case("abcDEFghi"), ["abcDE", "Fghi"]);
        assert_eq!(split_by_case("Abc1"), ["Abc", "1"]);
        assert_eq!(split_by_case("abc1"), ["abc1"]);
        assert_eq!(split_by_case("test1abc"), ["test", "1abc"]);
        assert_eq!(split_by_case("éclair"), ["éclair"]);
        assert_eq!(split_by_case("ÉCOLEx"), ["ÉCOL", "Ex"]);
    }

    #[test]
    fn terms_split_on_a_single_kind_of_separator() {
        assert_eq!(split_words("/testing2/one"), ["testing2", "one"]);
        assert_eq!(split_words("a.b.CdEf"), ["a", "b", "Cd", "Ef"]);
        assert_eq!(split_words("a-b c_d"), ["a", "b", "c", "d"]);
        assert_eq!(split_words("a-b_c"), ["a-b_c"]);
        assert_eq!(split_words("  "), Vec::<&str>::new());
    }
}
