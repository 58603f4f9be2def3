//! Carrying rotations out: the four steps of each rotation, off the request thread, one
//! at a time per secret, with a bounded retry; and the scheduler that starts due rotations
//! and resumes interrupted ones on the node holding the background lease.
//!
//! Every state change is one store transaction on the secret's rotation record, so a node
//! killed between steps leaves a record that says which step is next; whoever claims it
//! next (a claim expires after [`CLAIM_TTL_MS`]) resumes there. Steps are idempotent, as
//! AWS requires of rotation functions, so a step cut short is simply run again.

use super::{STEPS, TEST_STEP, apply_labels, event_name, save};
use crate::{App, clock, store_error};
use coffer_core::model::{AWSCURRENT, AWSPENDING, InFlight, Millis};
use coffer_core::{AwsError, staging};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How many times a failed rotation is tried in all before it is left for the next window.
pub const MAX_ATTEMPTS: u32 = 3;
/// The first retry's delay; each further one doubles it.
pub const FIRST_BACKOFF_MS: Millis = 1_000;
/// How long a node's claim on a rotation lasts without progress (renewed at each step),
/// until the background work sets it to the background lease's length.
pub const CLAIM_TTL_MS: Millis = 90_000;
/// How many due rotations one scheduler round looks at.
const SCAN_LIMIT: usize = 1000;

/// The rotations this process is carrying out, and a way back to the app for starting one.
pub struct Hub {
    app: Weak<App>,
    running: Mutex<HashSet<String>>,
    node: String,
    claim_ttl_ms: AtomicI64,
}

impl Hub {
    pub fn new(app: Weak<App>) -> Hub {
        let node = format!("{}:{:08x}", std::process::id(), rand::random::<u32>());
        Hub {
            app,
            running: Mutex::new(HashSet::new()),
            node,
            claim_ttl_ms: AtomicI64::new(CLAIM_TTL_MS),
        }
    }

    /// How long a claim lasts: a rotation of a node that died is taken over after it.
    /// Background work sets it to its lease's length (three rounds).
    pub fn set_claim_ttl(&self, ttl: Duration) {
        self.claim_ttl_ms.store(ttl.as_millis() as Millis, Ordering::Relaxed);
    }

    fn claim_ttl(&self) -> Millis {
        self.claim_ttl_ms.load(Ordering::Relaxed)
    }

    /// Starts carrying out the rotation of `arn`, unless this process already is. Without
    /// a runtime (unit tests) nothing starts; the scheduler finds the rotation later.
    pub fn kick(&self, arn: &str) {
        let (Some(app), Ok(handle)) = (self.app.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        if !self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(arn.to_string()) {
            return;
        }
        handle.spawn(drive(app, arn.to_string()));
    }

    fn done(&self, arn: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(arn);
    }
}

/// What a claimed rotation is about.
struct Job {
    function: String,
    token: String,
    test_only: bool,
    next_step: u8,
}

/// Runs `f` on the blocking pool (store transactions may wait for a disk or a network).
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, AwsError> + Send + 'static,
) -> Result<T, AwsError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app)).await.unwrap_or_else(|_| Err(AwsError::internal()))
}

async fn drive(app: Arc<App>, arn: String) {
    loop {
        let node = app.rotation.node.clone();
        let a = arn.clone();
        let job = match blocking(&app, move |app| claim(app, &a, &node, clock::now_ms())).await {
            Ok(Some(job)) => job,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e.message, "could not claim a rotation");
                break;
            }
        };
        let mut failed = None;
        let steps = if job.test_only { TEST_STEP..TEST_STEP + 1 } else { job.next_step..4 };
        for step in steps {
            let outcome = run_step(&app, &arn, &job, step).await;
            if let Err(why) = outcome {
                failed = Some((step, why));
                break;
            }
            let (a, t) = (arn.clone(), job.token.clone());
            match blocking(&app, move |app| progress(app, &a, &t, step, clock::now_ms())).await {
                Ok(true) => {}
                Ok(false) => {
                    app.rotation.done(&arn);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e.message, "could not record rotation progress");
                    failed = Some((step, "internal error".into()));
                    break;
                }
            }
        }
        let (a, t) = (arn.clone(), job.token.clone());
        let retry = match failed {
            None => match blocking(&app, move |app| finish(app, &a, &t)).await {
                Ok(None) => None,
                Ok(Some(why)) => {
                    let (a, t) = (arn.clone(), job.token.clone());
                    blocking(&app, move |app| fail(app, &a, &t, 3, &why)).await.ok().flatten()
                }
                Err(e) => {
                    tracing::error!(error = %e.message, "could not finish a rotation");
                    None
                }
            },
            Some((step, why)) => {
                blocking(&app, move |app| fail(app, &a, &t, step, &why)).await.ok().flatten()
            }
        };
        match retry {
            Some(delay) => tokio::time::sleep(Duration::from_millis(delay as u64)).await,
            None => break,
        }
    }
    app.rotation.done(&arn);
}

async fn run_step(app: &Arc<App>, arn: &str, job: &Job, step: u8) -> Result<(), String> {
    let name = STEPS[step as usize];
    if super::builtin::builtin_kind(&job.function, arn).is_some() {
        return super::builtin::run(app, &job.function, arn, &job.token, name).await;
    }
    let event = serde_json::json!({
        "Step": name,
        "SecretId": arn,
        "ClientRequestToken": job.token,
        "RotationToken": uuid::Uuid::new_v4().to_string(),
    });
    super::lambda::invoke_step(app, &job.function, event.to_string().into_bytes()).await
}

/// Claims the rotation of `arn` for `node`: `None` if there is none to carry out now.
fn claim(app: &App, arn: &str, node: &str, now: Millis) -> Result<Option<Job>, AwsError> {
    app.write_unrecorded(|tx| {
        let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else {
            tx.delete_record(super::DUE_KIND, arn).map_err(store_error)?;
            return Ok(None);
        };
        let Some(config) = meta.rotation.as_mut() else { return Ok(None) };
        let function = config.lambda_arn.clone().unwrap_or_default();
        let Some(flight) = config.in_flight.as_mut() else { return Ok(None) };
        let mine = flight.claimed_by.as_deref() == Some(node);
        if (!mine && flight.claimed_until_ms > now) || flight.not_before_ms > now {
            return Ok(None);
        }
        flight.claimed_by = Some(node.to_string());
        flight.claimed_until_ms = now + app.rotation.claim_ttl();
        let job = Job {
            function,
            token: flight.token.clone(),
            test_only: flight.test_only,
            next_step: flight.next_step,
        };
        let versions = tx.versions(arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        Ok(Some(job))
    })
}

/// Records that `step` of the rotation to `token` succeeded; false when the rotation is
/// no longer to be carried out (abandoned or cancelled meanwhile).
fn progress(app: &App, arn: &str, token: &str, step: u8, now: Millis) -> Result<bool, AwsError> {
    app.write_unrecorded(|tx| {
        let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else { return Ok(false) };
        let Some(flight) = meta.rotation.as_mut().and_then(|r| r.in_flight.as_mut()) else {
            return Ok(false);
        };
        if flight.token != token {
            return Ok(false);
        }
        flight.next_step = step + 1;
        flight.claimed_until_ms = now + app.rotation.claim_ttl();
        let versions = tx.versions(arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        Ok(true)
    })
}

/// Ends a rotation whose steps all succeeded. `Some(reason)` when it did not in fact
/// succeed (finishSecret left AWSCURRENT where it was).
fn finish(app: &App, arn: &str, token: &str) -> Result<Option<String>, AwsError> {
    app.write_unrecorded(|tx| {
        let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else { return Ok(None) };
        let Some(config) = meta.rotation.as_mut() else { return Ok(None) };
        let Some(flight) = config.in_flight.clone().filter(|f| f.token == token) else {
            return Ok(None);
        };
        let now = clock::now_ms();
        let versions = tx.versions(arn).map_err(store_error)?;
        if flight.test_only {
            // "This test creates an AWSPENDING version of the secret and then removes it."
            tx.delete_version(arn, token).map_err(store_error)?;
        } else {
            let current =
                versions.iter().any(|v| v.version_id == token && v.stages.contains(AWSCURRENT));
            if !current {
                return Ok(Some(format!(
                    "finishSecret did not move AWSCURRENT to version {token}"
                )));
            }
            config.last_rotated_ms = Some(now);
        }
        config.in_flight = None;
        let versions = tx.versions(arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        let name = event_name(flight.test_only, "Succeeded");
        crate::audit::record_rotation_event(app, tx, &meta.scope, &name, arn, None, now)?;
        Ok(None)
    })
}

/// Records a failed step. Returns the delay before the whole rotation is tried again, or
/// `None` once it has been tried [`MAX_ATTEMPTS`] times: AWSPENDING then stays where it is
/// (as on AWS) and the scheduler reattempts the rotation at its next window.
fn fail(
    app: &App,
    arn: &str,
    token: &str,
    step: u8,
    why: &str,
) -> Result<Option<Millis>, AwsError> {
    app.write_unrecorded(|tx| {
        let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else { return Ok(None) };
        let Some(config) = meta.rotation.as_mut() else { return Ok(None) };
        let function = config.lambda_arn.clone().unwrap_or_default();
        let Some(flight) = config.in_flight.as_mut().filter(|f| f.token == token) else {
            return Ok(None);
        };
        let now = clock::now_ms();
        let test_only = flight.test_only;
        let step_name = STEPS[step.min(3) as usize];
        // The message AWS writes into the trail; the function's own error text is not
        // copied (it is the function's to log, and might quote a value).
        let message = format!("Error when executing lambda {function} during {step_name} step");
        tracing::warn!(secret = %arn, step = step_name, reason = %truncate(why), "rotation step failed");
        flight.attempts += 1;
        let retry = if !test_only && flight.attempts < MAX_ATTEMPTS {
            let delay = FIRST_BACKOFF_MS << (flight.attempts - 1);
            flight.next_step = 0;
            flight.not_before_ms = now + delay;
            flight.claimed_by = None;
            flight.claimed_until_ms = 0;
            Some(delay)
        } else {
            config.in_flight = None;
            None
        };
        if test_only {
            tx.delete_version(arn, token).map_err(store_error)?;
        }
        let versions = tx.versions(arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        let name = event_name(test_only, "Failed");
        crate::audit::record_rotation_event(app, tx, &meta.scope, &name, arn, Some(message), now)?;
        Ok(retry)
    })
}

/// At most 200 characters of a failure reason, for the log.
fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// One scheduler round (on the node holding the background lease): starts the rotations
/// whose window has opened by `now` (also those that opened while no node was running)
/// and resumes interrupted ones. Returns how many it started or resumed.
pub fn sweep(app: &App, now: Millis) -> Result<usize, AwsError> {
    let due: Vec<String> = app.read(|tx| {
        let records = tx.records(super::DUE_KIND, "", None, SCAN_LIMIT).map_err(store_error)?;
        Ok(records
            .into_iter()
            .filter(|(_, v)| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<Millis>().ok())
                    .is_some_and(|d| d <= now)
            })
            .map(|(k, _)| k)
            .collect())
    })?;
    let mut n = 0;
    for arn in due {
        if start_due(app, &arn, now)? {
            app.rotation.kick(&arn);
            n += 1;
        }
    }
    Ok(n)
}

/// Starts the scheduled rotation of `arn` if it is due (or finds one to resume): true if
/// there is a rotation to carry out. A version still labelled AWSPENDING from a rotation
/// that failed is rotated again under its own token ("that rotation will be reattempted").
pub fn start_due(app: &App, arn: &str, now: Millis) -> Result<bool, AwsError> {
    app.write_unrecorded(|tx| {
        let Some(mut meta) = tx.secret_by_arn(arn).map_err(store_error)? else {
            tx.delete_record(super::DUE_KIND, arn).map_err(store_error)?;
            return Ok(false);
        };
        if meta.is_scheduled_for_deletion() {
            return Ok(false);
        }
        let versions = tx.versions(arn).map_err(store_error)?;
        let Some(config) = meta.rotation.as_mut() else {
            tx.delete_record(super::DUE_KIND, arn).map_err(store_error)?;
            return Ok(false);
        };
        if config.in_flight.is_some() {
            return Ok(true);
        }
        if config.lambda_arn.is_none() {
            // Managed rotation: carried out outside Coffer, never started here.
            tx.delete_record(super::DUE_KIND, arn).map_err(store_error)?;
            return Ok(false);
        }
        // Due at the secret's moment in the window (AWS: a random time within it).
        if !config.enabled
            || super::next_window(config, &versions).is_none_or(|w| w.moment(arn) > now)
        {
            super::index(tx, &meta, &versions)?;
            return Ok(false);
        }
        let token = match super::pending_version(&versions) {
            Some(p) => p.version_id.clone(),
            None => {
                let token = uuid::Uuid::new_v4().to_string();
                let mut labels = staging::labels_of(&versions);
                staging::add_version(&mut labels, &token, Some(&[AWSPENDING.to_string()]))?;
                apply_labels(tx, arn, &versions, &labels)?;
                let version = coffer_core::VersionMeta {
                    version_id: token.clone(),
                    stages: [AWSPENDING.to_string()].into(),
                    created_ms: now,
                    last_accessed_ms: None,
                    kms_key_id: meta.kms_key_id.clone(),
                };
                tx.insert_version(arn, &version, &coffer_store::SealedValue(Vec::new()))
                    .map_err(store_error)?;
                token
            }
        };
        let config = meta.rotation.as_mut().ok_or_else(AwsError::internal)?;
        config.in_flight = Some(InFlight { token, not_before_ms: now, ..Default::default() });
        let versions = tx.versions(arn).map_err(store_error)?;
        save(tx, &meta, &versions)?;
        crate::audit::record_rotation_event(
            app,
            tx,
            &meta.scope,
            "RotationStarted",
            arn,
            None,
            now,
        )?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::builtin::RANDOM_PASSWORD;
    use crate::{Config, KeyRing, RequestContext};
    use coffer_core::Scope;
    use coffer_core::model::DAY_MS;
    use coffer_crypto::MasterKey;
    use coffer_store::MemoryStore;
    use coffer_wire::protocol::SensitiveString;
    use coffer_wire::secretsmanager as wire;

    const FUNCTION: &str =
        "arn:aws:lambda:us-east-1:000000000000:function:coffer-builtin-random-password";

    fn app() -> Arc<App> {
        let store = Arc::new(MemoryStore::new());
        let keys = KeyRing::open(MasterKey::generate(), store.as_ref()).unwrap();
        App::new(store, keys, Config::default())
    }

    fn ctx() -> RequestContext {
        RequestContext::new(
            Scope::new("000000000000", "us-east-1"),
            "AKIDEXAMPLE".into(),
            "test".into(),
        )
    }

    /// A secret with a value and rotation configured with `rules` (its first rotation
    /// carried out), returning its ARN.
    fn rotating(app: &App, name: &str, rules: serde_json::Value) -> String {
        let created = crate::secrets::create_secret(
            app,
            &ctx(),
            wire::CreateSecretRequest {
                name: name.into(),
                client_request_token: Some(uuid::Uuid::new_v4().to_string()),
                secret_string: Some(SensitiveString::new("value".into())),
                ..Default::default()
            },
        )
        .unwrap();
        crate::rotation::rotate_secret(
            app,
            &ctx(),
            wire::RotateSecretRequest {
                secret_id: name.into(),
                client_request_token: Some(uuid::Uuid::new_v4().to_string()),
                rotation_lambda_arn: Some(FUNCTION.into()),
                rotation_rules: Some(rules),
                ..Default::default()
            },
        )
        .unwrap();
        run(app, &created.secret.arn, "node-a", clock::now_ms());
        created.secret.arn
    }

    /// Carries out a claimed rotation's steps here, as `drive` does.
    fn run(app: &App, arn: &str, node: &str, now: Millis) -> bool {
        let Some(job) = claim(app, arn, node, now).unwrap() else { return false };
        assert_eq!(job.function.rsplit(':').next(), Some(RANDOM_PASSWORD));
        for step in job.next_step..4 {
            builtin_step(app, &job.function, arn, &job.token, STEPS[step as usize]);
            assert!(progress(app, arn, &job.token, step, now).unwrap());
        }
        assert_eq!(finish(app, arn, &job.token).unwrap(), None);
        true
    }

    /// Runs one built-in step to completion on a runtime of its own.
    fn builtin_step(app: &App, function: &str, arn: &str, token: &str, step: &str) {
        let app = app.rotation.app.upgrade().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(super::super::builtin::run(&app, function, arn, token, step)).unwrap();
    }

    fn rotation(app: &App, arn: &str) -> coffer_core::model::RotationConfig {
        let meta = app.read(|tx| Ok(tx.secret_by_arn(arn).unwrap().unwrap())).unwrap();
        *meta.rotation.unwrap()
    }

    #[test]
    fn a_rotation_falls_due_after_its_days_and_runs_once() {
        let app = app();
        let arn = rotating(&app, "days", serde_json::json!({"AutomaticallyAfterDays": 2}));
        let first = rotation(&app, &arn).last_rotated_ms.unwrap();
        let now = clock::now_ms();
        // Not due the next day; due two days on (00:00 UTC of the day), also long after.
        assert_eq!(sweep(&app, now + DAY_MS).unwrap(), 0);
        let window = now - now.rem_euclid(DAY_MS) + 2 * DAY_MS;
        assert_eq!(sweep(&app, window - 1).unwrap(), 0);
        assert_eq!(sweep(&app, window + 30 * DAY_MS).unwrap(), 1);
        // A second sweep finds the same rotation (resumed, not started twice).
        assert_eq!(sweep(&app, window + 30 * DAY_MS).unwrap(), 1);
        let versions = app.read(|tx| Ok(tx.versions(&arn).unwrap())).unwrap();
        assert_eq!(
            versions
                .iter()
                .filter(|v| v.stages.contains(AWSPENDING) && !v.stages.contains(AWSCURRENT))
                .count(),
            1
        );
        assert!(run(&app, &arn, "node-a", window + 30 * DAY_MS));
        assert!(rotation(&app, &arn).last_rotated_ms.unwrap() > first);
        assert!(rotation(&app, &arn).in_flight.is_none());
    }

    #[test]
    fn schedules_in_hours_and_cron_fall_due_at_their_windows() {
        let app = app();
        let cron = rotating(
            &app,
            "cron",
            serde_json::json!({"ScheduleExpression": "cron(0 4 * * ? *)", "Duration": "2h"}),
        );
        let hours =
            rotating(&app, "hours", serde_json::json!({"ScheduleExpression": "rate(6 hours)"}));
        let window = |arn: &str| {
            let (meta, versions) = app
                .read(|tx| Ok((tx.secret_by_arn(arn).unwrap().unwrap(), tx.versions(arn).unwrap())))
                .unwrap();
            super::super::next_window(meta.rotation.as_ref().unwrap(), &versions).unwrap()
        };
        let (w_cron, w_hours) = (window(&cron), window(&hours));
        let hour = 3_600_000;
        // cron(0 4 …) opens at 04:00 for 2h; rate(6 hours) at 00, 06, 12 or 18 for 1h.
        assert_eq!(w_cron.start_ms.rem_euclid(DAY_MS), 4 * hour);
        assert_eq!(w_cron.end_ms - w_cron.start_ms, 2 * hour);
        assert_eq!(w_hours.start_ms.rem_euclid(6 * hour), 0);
        assert_eq!(w_hours.end_ms - w_hours.start_ms, hour);
        // Neither is due before its window; each is by the window's last second.
        assert_eq!(sweep(&app, w_cron.start_ms.min(w_hours.start_ms) - 1).unwrap(), 0);
        let (first, second) = if w_hours.start_ms < w_cron.start_ms {
            ((&hours, w_hours), (&cron, w_cron))
        } else {
            ((&cron, w_cron), (&hours, w_hours))
        };
        assert_eq!(sweep(&app, first.1.next_rotation_date()).unwrap(), 1);
        assert!(rotation(&app, first.0).in_flight.is_some());
        assert!(rotation(&app, second.0).in_flight.is_none());
        assert_eq!(sweep(&app, second.1.next_rotation_date().max(first.1.end_ms)).unwrap(), 2);
        assert!(rotation(&app, &hours).in_flight.is_some());
        assert!(rotation(&app, &cron).in_flight.is_some());
    }

    /// AWS rotates at a random time within the window: each secret at its own moment,
    /// the same on every node, never after NextRotationDate.
    #[test]
    fn a_scheduled_rotation_starts_at_its_moment_in_the_window() {
        let app = app();
        let rules = serde_json::json!({"AutomaticallyAfterDays": 2, "Duration": "4h"});
        let mut later_than_start = 0;
        for i in 0..4 {
            let arn = rotating(&app, &format!("moment-{i}"), rules.clone());
            let (meta, versions) = app
                .read(|tx| {
                    Ok((tx.secret_by_arn(&arn).unwrap().unwrap(), tx.versions(&arn).unwrap()))
                })
                .unwrap();
            let window =
                super::super::next_window(meta.rotation.as_ref().unwrap(), &versions).unwrap();
            let moment = window.moment(&arn);
            assert!(moment >= window.start_ms && moment <= window.next_rotation_date());
            // The scheduler's index holds that moment, so any node finds it due then.
            let indexed = app
                .read(|tx| Ok(tx.records(super::super::DUE_KIND, "", None, 100).unwrap()))
                .unwrap()
                .into_iter()
                .find(|(k, _)| k == &arn)
                .map(|(_, v)| String::from_utf8(v).unwrap());
            assert_eq!(indexed, Some(moment.to_string()));
            if moment > window.start_ms {
                later_than_start += 1;
                assert!(
                    !start_due(&app, &arn, window.start_ms).unwrap(),
                    "not due at the window's start"
                );
                assert!(!start_due(&app, &arn, moment - 1).unwrap());
            }
            assert!(start_due(&app, &arn, moment).unwrap());
            assert!(rotation(&app, &arn).in_flight.is_some());
        }
        assert!(later_than_start >= 3, "moments spread over the window");
    }

    #[test]
    fn another_node_takes_over_a_claim_only_once_it_has_expired() {
        let app = app();
        let arn = rotating(&app, "claimed", serde_json::json!({"AutomaticallyAfterDays": 1}));
        let later = clock::now_ms() + 3 * DAY_MS;
        assert_eq!(sweep(&app, later).unwrap(), 1);
        // Node a claims it and completes createSecret, then dies.
        let job = claim(&app, &arn, "node-a", later).unwrap().unwrap();
        builtin_step(&app, &job.function, &arn, &job.token, "createSecret");
        assert!(progress(&app, &arn, &job.token, 0, later).unwrap());
        let claimed_until = rotation(&app, &arn).in_flight.unwrap().claimed_until_ms;
        assert!(claim(&app, &arn, "node-b", later).unwrap().is_none());
        // Once the claim has run out node b resumes after the step that was done.
        let resumed = claim(&app, &arn, "node-b", claimed_until + 1).unwrap().unwrap();
        assert_eq!((resumed.token.as_str(), resumed.next_step), (job.token.as_str(), 1));
        assert!(run(&app, &arn, "node-b", claimed_until + 1));
        let versions = app.read(|tx| Ok(tx.versions(&arn).unwrap())).unwrap();
        assert_eq!(versions.iter().filter(|v| v.stages.contains(AWSCURRENT)).count(), 1);
        assert!(
            versions.iter().any(|v| v.version_id == job.token && v.stages.contains(AWSCURRENT))
        );
    }

    #[test]
    fn a_cancelled_rotation_is_not_due() {
        let app = app();
        let arn = rotating(&app, "off", serde_json::json!({"AutomaticallyAfterDays": 1}));
        crate::rotation::cancel_rotate_secret(
            &app,
            &ctx(),
            wire::SecretIdRequest { secret_id: arn.clone() },
        )
        .unwrap();
        assert_eq!(sweep(&app, clock::now_ms() + 100 * DAY_MS).unwrap(), 0);
    }
}
