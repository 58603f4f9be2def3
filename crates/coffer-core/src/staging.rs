//! Staging labels: the one place where labels move between versions.
//!
//! Architecture invariant: once a secret has a version, AWSCURRENT is on exactly
//! one version, and every label is on at most one version. Every handler that
//! changes labels goes through [`add_version`] or [`move_label`].

use crate::error::{AwsError, ErrorCode};
use crate::model::{AWSCURRENT, AWSPREVIOUS, Millis, VersionMeta};
use std::collections::{BTreeMap, BTreeSet};

/// The labels of every version of one secret, by version id.
pub type Labels = BTreeMap<String, BTreeSet<String>>;

/// A secret may carry at most this many staging labels across all its versions (AWS's
/// quota); so a version may carry at most as many (the model's list limit).
pub const MAX_LABELS_PER_SECRET: usize = 20;
/// A version may carry at most this many labels (the model's list limit).
pub const MAX_LABELS_PER_VERSION: usize = MAX_LABELS_PER_SECRET;

/// How many labels the versions of a secret carry in all (each label is on one version).
pub fn label_count(labels: &Labels) -> usize {
    labels.values().map(BTreeSet::len).sum()
}

/// Refuses a change that would leave more than [`MAX_LABELS_PER_SECRET`] labels.
fn within_secret_quota(labels: &Labels) -> Result<(), AwsError> {
    if label_count(labels) > MAX_LABELS_PER_SECRET { Err(too_many_labels()) } else { Ok(()) }
}
/// Versions beyond this count are pruned, or refused when none can be.
pub const MAX_VERSIONS: usize = 100;
/// Deprecated versions younger than this are never pruned.
pub const PRUNE_MIN_AGE_MS: Millis = 24 * 3600 * 1000;

/// Builds the label map of a secret from its versions.
pub fn labels_of(versions: &[VersionMeta]) -> Labels {
    versions.iter().map(|v| (v.version_id.clone(), v.stages.clone())).collect()
}

/// The version that holds `label`, if any.
pub fn holder<'a>(labels: &'a Labels, label: &str) -> Option<&'a str> {
    labels.iter().find(|(_, stages)| stages.contains(label)).map(|(id, _)| id.as_str())
}

/// Adds a new version with the requested labels (AWSCURRENT when none are
/// requested) and moves labels as PutSecretValue, UpdateSecret and CreateSecret do.
///
/// * Each requested label is moved off whichever version had it.
/// * The first version of a secret always gets AWSCURRENT.
/// * When AWSCURRENT moves, the version that had it is left with exactly
///   `[AWSPREVIOUS]` (its other labels go, as observed on AWS), and the former
///   AWSPREVIOUS holder loses that label.
///
/// Returns the new version's labels.
pub fn add_version(
    labels: &mut Labels,
    new_version_id: &str,
    requested: Option<&[String]>,
) -> Result<BTreeSet<String>, AwsError> {
    let mut after = labels.clone();
    let stages = add_version_unchecked(&mut after, new_version_id, requested)?;
    within_secret_quota(&after)?;
    *labels = after;
    Ok(stages)
}

fn add_version_unchecked(
    labels: &mut Labels,
    new_version_id: &str,
    requested: Option<&[String]>,
) -> Result<BTreeSet<String>, AwsError> {
    let mut stages: BTreeSet<String> = match requested {
        Some(list) => list.iter().cloned().collect(),
        None => BTreeSet::from([AWSCURRENT.to_string()]),
    };
    let old_current = holder(labels, AWSCURRENT).map(str::to_string);
    if old_current.is_none() {
        stages.insert(AWSCURRENT.to_string());
    }
    if stages.len() > MAX_LABELS_PER_VERSION {
        return Err(too_many_labels());
    }
    for version_stages in labels.values_mut() {
        for label in &stages {
            version_stages.remove(label);
        }
    }
    if stages.contains(AWSCURRENT)
        && let Some(old) = old_current
    {
        for version_stages in labels.values_mut() {
            version_stages.remove(AWSPREVIOUS);
        }
        let demoted = labels.entry(old).or_default();
        demoted.clear();
        if !stages.contains(AWSPREVIOUS) {
            demoted.insert(AWSPREVIOUS.to_string());
        }
    }
    labels.insert(new_version_id.to_string(), stages.clone());
    Ok(stages)
}

/// UpdateSecretVersionStage: removes `label` from `remove_from` and/or attaches it
/// to `move_to`. Moving AWSCURRENT gives the version it left AWSPREVIOUS; the
/// version it reaches keeps its other labels.
pub fn move_label(
    labels: &mut Labels,
    label: &str,
    remove_from: Option<&str>,
    move_to: Option<&str>,
) -> Result<(), AwsError> {
    let mut after = labels.clone();
    move_label_unchecked(&mut after, label, remove_from, move_to)?;
    within_secret_quota(&after)?;
    *labels = after;
    Ok(())
}

fn move_label_unchecked(
    labels: &mut Labels,
    label: &str,
    remove_from: Option<&str>,
    move_to: Option<&str>,
) -> Result<(), AwsError> {
    for id in [remove_from, move_to].into_iter().flatten() {
        if !labels.contains_key(id) {
            return Err(AwsError::invalid_parameter(format!("Not a valid version: {id}")));
        }
    }
    let current_holder = holder(labels, label).map(str::to_string);
    if let Some(from) = remove_from
        && current_holder.as_deref() != Some(from)
    {
        return Err(AwsError::invalid_parameter(format!(
            "Version stage {label} not found in version {from}"
        )));
    }
    if remove_from.is_none()
        && let Some(attached) = &current_holder
        && Some(attached.as_str()) != move_to
    {
        return Err(AwsError::invalid_parameter(format!(
            "The parameter RemoveFromVersionId can't be empty. Staging label {label} is currently attached to version {attached}, so you must explicitly reference that version in RemoveFromVersionId."
        )));
    }
    if label == AWSCURRENT && move_to.is_none() {
        return Err(AwsError::invalid_parameter(
            "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.",
        ));
    }
    if remove_from.is_some() && remove_from == move_to {
        return Ok(());
    }
    if let Some(to) = move_to
        && !labels[to].contains(label)
        && labels[to].len() >= MAX_LABELS_PER_VERSION
    {
        return Err(too_many_labels());
    }
    if let Some(from) = remove_from {
        labels.get_mut(from).expect("checked above").remove(label);
    }
    if let Some(to) = move_to {
        labels.get_mut(to).expect("checked above").insert(label.to_string());
    }
    if label == AWSCURRENT
        && let (Some(from), Some(to)) = (remove_from, move_to)
    {
        for stages in labels.values_mut() {
            stages.remove(AWSPREVIOUS);
        }
        if from != to {
            labels.get_mut(from).expect("checked above").insert(AWSPREVIOUS.to_string());
        }
    }
    Ok(())
}

/// Chooses the deprecated versions to delete so that at most [`MAX_VERSIONS`]
/// remain, oldest first, never one younger than a day. Fails with
/// LimitExceededException when that is not enough.
pub fn versions_to_prune(versions: &[VersionMeta], now: Millis) -> Result<Vec<String>, AwsError> {
    if versions.len() <= MAX_VERSIONS {
        return Ok(Vec::new());
    }
    let mut candidates: Vec<&VersionMeta> = versions
        .iter()
        .filter(|v| v.is_deprecated() && now - v.created_ms >= PRUNE_MIN_AGE_MS)
        .collect();
    candidates.sort_by_key(|v| (v.created_ms, v.version_id.clone()));
    let excess = versions.len() - MAX_VERSIONS;
    if candidates.len() < excess {
        return Err(AwsError::new(
            ErrorCode::LimitExceeded,
            format!(
                "The request failed because it would exceed the quota of {MAX_VERSIONS} versions for this secret. Secrets Manager removes versions without staging labels only once they are more than 24 hours old."
            ),
        ));
    }
    Ok(candidates.into_iter().take(excess).map(|v| v.version_id.clone()).collect())
}

fn too_many_labels() -> AwsError {
    AwsError::new(
        ErrorCode::LimitExceeded,
        format!(
            "A secret can have at most {MAX_LABELS_PER_SECRET} staging labels across all of its versions."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("L{i}")).collect()
    }

    #[test]
    fn a_secret_carries_at_most_twenty_labels_across_its_versions() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", None).unwrap();
        add_version(&mut labels, "v2", None).unwrap();
        // AWSCURRENT on v2 and AWSPREVIOUS on v1: 18 more fit, spread over versions.
        add_version(&mut labels, "v3", Some(&labelled(10))).unwrap();
        add_version(&mut labels, "v4", Some(&labelled(18)[10..])).unwrap();
        assert_eq!(label_count(&labels), 20);
        let before = labels.clone();
        let err = add_version(&mut labels, "v5", Some(&["ONE_MORE".to_string()])).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert_eq!(labels, before, "a refused change changes nothing");
        // Moving an existing label keeps the count: allowed.
        add_version(&mut labels, "v5", Some(&["L0".to_string()])).unwrap();
        assert_eq!(label_count(&labels), 20);
        let err = move_label(&mut labels, "EXTRA", None, Some("v1")).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert_eq!(label_count(&labels), 20);
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_version_gets_awscurrent_even_when_other_labels_are_requested() {
        let mut labels = Labels::new();
        let stages = add_version(&mut labels, "v1", Some(&strings(&["AWSPENDING"]))).unwrap();
        assert_eq!(stages, set(&["AWSCURRENT", "AWSPENDING"]));
    }

    #[test]
    fn default_put_demotes_current_to_exactly_previous() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", None).unwrap();
        labels.get_mut("v1").unwrap().insert("AWSPENDING".into());
        add_version(&mut labels, "v2", None).unwrap();
        assert_eq!(labels["v1"], set(&["AWSPREVIOUS"]));
        assert_eq!(labels["v2"], set(&["AWSCURRENT"]));
        add_version(&mut labels, "v3", None).unwrap();
        assert!(labels["v1"].is_empty());
        assert_eq!(labels["v2"], set(&["AWSPREVIOUS"]));
    }

    #[test]
    fn custom_labels_move_without_touching_current() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", None).unwrap();
        add_version(&mut labels, "v2", Some(&strings(&["one", "two", "three"]))).unwrap();
        add_version(&mut labels, "v3", Some(&strings(&["one", "two", "four"]))).unwrap();
        assert_eq!(labels["v1"], set(&["AWSCURRENT"]));
        assert_eq!(labels["v2"], set(&["three"]));
        add_version(&mut labels, "v4", Some(&strings(&["one", "two", "three", "four"]))).unwrap();
        assert!(labels["v2"].is_empty());
        assert!(labels["v3"].is_empty());
    }

    #[test]
    fn moving_awscurrent_keeps_custom_labels_on_both_sides() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", Some(&strings(&["AWSCURRENT", "PUT0"]))).unwrap();
        add_version(&mut labels, "v2", Some(&strings(&["AWSPENDING", "PUT1"]))).unwrap();
        move_label(&mut labels, "AWSCURRENT", Some("v1"), Some("v2")).unwrap();
        assert_eq!(labels["v1"], set(&["AWSPREVIOUS", "PUT0"]));
        assert_eq!(labels["v2"], set(&["AWSCURRENT", "AWSPENDING", "PUT1"]));
    }

    #[test]
    fn awscurrent_cannot_be_removed_without_a_destination() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", None).unwrap();
        let err = move_label(&mut labels, "AWSCURRENT", Some("v1"), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameter);
        assert_eq!(labels["v1"], set(&["AWSCURRENT"]));
    }

    #[test]
    fn moving_an_attached_label_requires_remove_from() {
        let mut labels = Labels::new();
        add_version(&mut labels, "v1", None).unwrap();
        add_version(&mut labels, "v2", Some(&strings(&["X"]))).unwrap();
        add_version(&mut labels, "v3", Some(&strings(&["Y"]))).unwrap();
        let err = move_label(&mut labels, "X", None, Some("v3")).unwrap_err();
        assert!(err.message.contains("currently attached to version v2"), "{}", err.message);
        move_label(&mut labels, "X", Some("v2"), Some("v3")).unwrap();
        assert_eq!(labels["v3"], set(&["X", "Y"]));
        move_label(&mut labels, "X", Some("v3"), None).unwrap();
        assert_eq!(labels["v3"], set(&["Y"]));
    }

    #[test]
    fn pruning_takes_oldest_deprecated_versions_older_than_a_day() {
        let day = PRUNE_MIN_AGE_MS;
        let mut versions: Vec<VersionMeta> = (0..101)
            .map(|i| VersionMeta {
                version_id: format!("v{i:03}"),
                stages: BTreeSet::new(),
                created_ms: i,
                last_accessed_ms: None,
                kms_key_id: None,
            })
            .collect();
        versions[100].stages.insert("AWSCURRENT".into());
        assert_eq!(versions_to_prune(&versions, day + 100).unwrap(), vec!["v000".to_string()]);
        let err = versions_to_prune(&versions, 50).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
    }
}
