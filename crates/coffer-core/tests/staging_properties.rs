//! Property test of the staging-label state machine against an independent model.
//!
//! Random sequences of PutSecretValue/UpdateSecret (`add_version`) and
//! UpdateSecretVersionStage (`move_label`) calls run against `coffer_core::staging` and
//! against [`Model`], a second, declarative statement of the rules written from
//! aws-behaviours.md §4 and the doc comments of `staging.rs`. After every step the label
//! maps must agree and the invariants must hold.

use coffer_core::ErrorCode;
use coffer_core::model::{AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use coffer_core::staging::{self, Labels, MAX_LABELS_PER_SECRET, MAX_LABELS_PER_VERSION};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeSet;

/// The labels most operations draw from: the three AWS labels and three custom ones.
const COMMON_LABELS: [&str; 6] = [AWSCURRENT, AWSPREVIOUS, AWSPENDING, "PENDING", "PUT0", "PUT1"];

/// Version ids that no call ever creates, to exercise the unknown-version errors.
const UNKNOWN_VERSIONS: [&str; 2] = ["ghost-1", "ghost-2"];

/// Every label a test may use: the common ones plus enough extra ones to reach the
/// 20-label limit of a version.
fn all_labels() -> Vec<String> {
    let extra = (0..=MAX_LABELS_PER_VERSION).map(|i| format!("L{i:02}"));
    COMMON_LABELS.iter().map(|s| s.to_string()).chain(extra).collect()
}

fn common_labels() -> Vec<String> {
    COMMON_LABELS.iter().map(|s| s.to_string()).collect()
}

/// A version named by a test step, resolved against the versions that exist when it runs.
#[derive(Debug, Clone)]
enum VersionRef {
    /// The existing version at this index modulo the number of versions.
    Existing(usize),
    /// One of [`UNKNOWN_VERSIONS`].
    Unknown(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// PutSecretValue or UpdateSecret with a value; the runner picks a fresh version id.
    Put { requested: Option<Vec<String>> },
    /// UpdateSecretVersionStage.
    Move { label: String, remove_from: Option<VersionRef>, move_to: Option<VersionRef> },
}

fn version_ref() -> impl Strategy<Value = VersionRef> {
    prop_oneof![
        6 => (0..64usize).prop_map(VersionRef::Existing),
        1 => (0..UNKNOWN_VERSIONS.len()).prop_map(VersionRef::Unknown),
    ]
}

/// A request for about 20 labels, so the per-version limit is met often: a run of the
/// extra labels, some common ones, and the odd duplicate (a set counts each label once).
fn near_limit_labels() -> impl Strategy<Value = Vec<String>> {
    (17..=MAX_LABELS_PER_VERSION + 1, vec(select(common_labels()), 0..4)).prop_map(
        |(extra, common)| {
            let mut labels: Vec<String> = (0..extra).map(|i| format!("L{i:02}")).collect();
            labels.extend(common);
            labels
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let requested = prop_oneof![
        3 => Just(None),
        6 => vec(select(common_labels()), 0..4).prop_map(Some),
        2 => near_limit_labels().prop_map(Some),
    ];
    let label = prop_oneof![4 => select(common_labels()), 1 => select(all_labels())];
    prop_oneof![
        2 => requested.prop_map(|requested| Op::Put { requested }),
        3 => (label, proptest::option::weighted(0.8, version_ref()),
              proptest::option::weighted(0.8, version_ref()))
            .prop_map(|(label, remove_from, move_to)| Op::Move { label, remove_from, move_to }),
    ]
}

/// The rules, stated per version as "what this version holds after the call".
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    versions: Labels,
}

impl Model {
    fn holder(&self, label: &str) -> Option<&str> {
        self.versions.iter().find(|(_, ls)| ls.contains(label)).map(|(id, _)| id.as_str())
    }

    /// PutSecretValue / UpdateSecret with a value, creating version `id`.
    fn put(&self, id: &str, requested: Option<&[String]>) -> Result<Model, ErrorCode> {
        // §4.1: no VersionStages means AWSCURRENT.
        let mut new_labels: BTreeSet<String> = match requested {
            Some(list) => list.iter().cloned().collect(),
            None => BTreeSet::from([AWSCURRENT.to_string()]),
        };
        // The first version of a secret is always current.
        if self.versions.is_empty() {
            new_labels.insert(AWSCURRENT.to_string());
        }
        let takes_current = new_labels.contains(AWSCURRENT);
        let old_current = self.holder(AWSCURRENT);
        let mut next = Labels::new();
        for (version, labels) in &self.versions {
            let after: BTreeSet<String> = if takes_current && Some(version.as_str()) == old_current
            {
                // §4.1 and §4.3: the old current is left with exactly [AWSPREVIOUS], unless
                // the new version asked for AWSPREVIOUS itself (a label is on one version).
                BTreeSet::from([AWSPREVIOUS.to_string()])
                    .into_iter()
                    .filter(|l| !new_labels.contains(l))
                    .collect()
            } else {
                // §4.2: every requested label moves to the new version. §4.1: when
                // AWSCURRENT moves, the former AWSPREVIOUS holder loses that label.
                labels
                    .iter()
                    .filter(|l| !new_labels.contains(*l))
                    .filter(|l| !(takes_current && l.as_str() == AWSPREVIOUS))
                    .cloned()
                    .collect()
            };
            next.insert(version.clone(), after);
        }
        next.insert(id.to_string(), new_labels);
        check_limit(next)
    }

    /// UpdateSecretVersionStage.
    fn move_label(
        &self,
        label: &str,
        remove_from: Option<&str>,
        move_to: Option<&str>,
    ) -> Result<Model, ErrorCode> {
        // Both version ids must name versions of this secret.
        if [remove_from, move_to].into_iter().flatten().any(|id| !self.versions.contains_key(id)) {
            return Err(ErrorCode::InvalidParameter);
        }
        let holder = self.holder(label);
        // RemoveFromVersionId must name the version that holds the label.
        if remove_from.is_some() && remove_from != holder {
            return Err(ErrorCode::InvalidParameter);
        }
        // A label attached elsewhere can't be taken without naming where it comes from.
        if remove_from.is_none() && holder.is_some() && holder != move_to {
            return Err(ErrorCode::InvalidParameter);
        }
        // AWSCURRENT can only move, never be removed outright.
        if label == AWSCURRENT && move_to.is_none() {
            return Err(ErrorCode::InvalidParameter);
        }
        // The label limit is checked on the destination before anything moves: a version
        // that already has 20 labels can't receive another, even AWSCURRENT onto a version
        // that would give up AWSPREVIOUS in the same call and so end with 20 again.
        // Neither aws-behaviours.md nor the service model settles that corner; this is
        // the choice staging.rs makes, pinned by the test at the end of this file.
        if let Some(to) = move_to
            && !self.versions[to].contains(label)
            && self.versions[to].len() >= MAX_LABELS_PER_VERSION
        {
            return Err(ErrorCode::LimitExceeded);
        }
        // §4.4: moving AWSCURRENT to another version leaves AWSPREVIOUS on the version
        // it left, and only there; every other label stays where it was.
        let current_moves = label == AWSCURRENT
            && remove_from.is_some()
            && move_to.is_some()
            && remove_from != move_to;
        let mut next = Labels::new();
        for (version, labels) in &self.versions {
            let version_ref = Some(version.as_str());
            let mut after = labels.clone();
            if version_ref == remove_from {
                after.remove(label);
            }
            if version_ref == move_to {
                after.insert(label.to_string());
            }
            if current_moves {
                after.remove(AWSPREVIOUS);
                if version_ref == remove_from {
                    after.insert(AWSPREVIOUS.to_string());
                }
            }
            next.insert(version.clone(), after);
        }
        check_limit(next)
    }
}

/// A call that would leave the secret with more than 20 labels across its versions (AWS's
/// quota, which also bounds each version) is refused as a whole.
fn check_limit(versions: Labels) -> Result<Model, ErrorCode> {
    let total: usize = versions.values().map(BTreeSet::len).sum();
    if total > MAX_LABELS_PER_SECRET {
        return Err(ErrorCode::LimitExceeded);
    }
    Ok(Model { versions })
}

/// Checks the invariants every label map must keep after any call, failed or not.
fn check_invariants(labels: &Labels) -> Result<(), TestCaseError> {
    if !labels.is_empty() {
        let current = labels.values().filter(|ls| ls.contains(AWSCURRENT)).count();
        prop_assert_eq!(current, 1, "AWSCURRENT must be on exactly one version: {:?}", labels);
    }
    let mut seen = BTreeSet::new();
    for stages in labels.values() {
        for label in stages {
            prop_assert!(seen.insert(label), "{} is on two versions: {:?}", label, labels);
        }
        prop_assert!(stages.len() <= MAX_LABELS_PER_VERSION, "too many labels: {:?}", labels);
    }
    prop_assert!(seen.len() <= MAX_LABELS_PER_SECRET, "too many labels: {:?}", labels);
    Ok(())
}

fn resolve(reference: &VersionRef, existing: &[String]) -> String {
    match reference {
        VersionRef::Existing(i) if !existing.is_empty() => existing[i % existing.len()].clone(),
        VersionRef::Existing(i) | VersionRef::Unknown(i) => {
            UNKNOWN_VERSIONS[i % UNKNOWN_VERSIONS.len()].to_string()
        }
    }
}

/// Runs one sequence, checking both implementations agree after every step.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut labels = Labels::new();
    let mut model = Model::default();
    let mut created = 0usize;
    for (step, op) in ops.iter().enumerate() {
        let before = labels.clone();
        let existing: Vec<String> = labels.keys().cloned().collect();
        let (actual, expected) = match op {
            Op::Put { requested } => {
                created += 1;
                let id = format!("v{created:03}");
                let expected = model.put(&id, requested.as_deref());
                let actual = staging::add_version(&mut labels, &id, requested.as_deref());
                // The labels add_version reports are the ones the new version now holds.
                if let Ok(stages) = &actual {
                    prop_assert_eq!(Some(stages), labels.get(&id), "step {}: {:?}", step, op);
                }
                (actual.map(|_| ()), expected)
            }
            Op::Move { label, remove_from, move_to } => {
                let from = remove_from.as_ref().map(|r| resolve(r, &existing));
                let to = move_to.as_ref().map(|r| resolve(r, &existing));
                let expected = model.move_label(label, from.as_deref(), to.as_deref());
                let actual =
                    staging::move_label(&mut labels, label, from.as_deref(), to.as_deref());
                (actual, expected)
            }
        };
        match (actual, expected) {
            // (c) A successful call leaves exactly the labels the model predicts.
            (Ok(()), Ok(next)) => {
                prop_assert_eq!(&labels, &next.versions, "step {}: {:?}", step, op);
                model = next;
            }
            // (d) A refused call changes nothing, and is refused for the model's reason.
            (Err(err), Err(code)) => {
                prop_assert_eq!(err.code, code, "step {}: {:?}: {}", step, op, err.message);
                prop_assert_eq!(&labels, &before, "step {}: failed call changed labels", step);
            }
            (Ok(()), Err(code)) => {
                return Err(TestCaseError::fail(format!(
                    "step {step}: {op:?} succeeded but the model refuses it with {code:?}; \
                     labels before {before:?}, after {labels:?}"
                )));
            }
            (Err(err), Ok(next)) => {
                return Err(TestCaseError::fail(format!(
                    "step {step}: {op:?} failed with {err} but the model expects {:?}; \
                     labels before {before:?}",
                    next.versions
                )));
            }
        }
        // (a), (b) and (e) hold after every step.
        check_invariants(&labels)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn staging_labels_follow_the_model_and_keep_their_invariants(ops in vec(op(), 1..40)) {
        run(&ops)?;
    }
}

/// The corner the per-secret quota decides. The secret holds 20 labels, 19 custom ones
/// on v2 and AWSCURRENT on v1. Moving AWSCURRENT to v2 would also give v1 AWSPREVIOUS:
/// 21 labels, so the move is refused as a whole. Neither aws-behaviours.md nor the model
/// settles this corner (AWS publishes 20 staging labels across all versions of a secret);
/// if the lead decides otherwise, flip this test and the rule in the model together.
#[test]
fn a_secret_at_its_label_quota_cannot_gain_awsprevious_by_moving_awscurrent() {
    let requested: Vec<String> = (0..19).map(|i| format!("L{i:02}")).collect();
    let mut labels = Labels::new();
    staging::add_version(&mut labels, "v1", None).unwrap();
    staging::add_version(&mut labels, "v2", Some(&requested)).unwrap();
    assert_eq!(staging::label_count(&labels), MAX_LABELS_PER_SECRET);
    let before = labels.clone();
    let err = staging::move_label(&mut labels, AWSCURRENT, Some("v1"), Some("v2")).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(labels, before);
    let model = Model { versions: before.clone() };
    assert_eq!(model.move_label(AWSCURRENT, Some("v1"), Some("v2")), Err(ErrorCode::LimitExceeded));
    // A 21st label through PutSecretValue is refused too.
    let err = staging::add_version(&mut labels, "v3", Some(&["NEW".to_string()])).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert_eq!(labels, before);
}
