//! Request quotas: AWS's per-account, per-region request rates, enforced after the caller
//! is known and before the handler, so a call over its quota changes nothing and is
//! answered `ThrottlingException` / `Rate exceeded`, which the SDKs retry with backoff.
//!
//! Each [`QuotaGroup`] (the operation table's data) has one keyed GCRA limiter from
//! `governor`, keyed by the caller's (account, region): a token bucket refilled at the
//! group's rate per second, holding one second's worth. Keys whose bucket is full again
//! are dropped every `SWEEP_EVERY` checks, so the state is bounded by the keys seen
//! within about a second, whatever regions callers sign with.

use coffer_core::{AwsError, ErrorCode, Scope};
pub use coffer_wire::operation::QuotaGroup;
use coffer_wire::operation::{Operation, Service};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// KMS's message for a throttled call.
pub const KMS_THROTTLED: &str =
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.";

/// How many checks pass between sweeps of the limiters' idle keys.
const SWEEP_EVERY: u64 = 1024;

/// How quotas are configured (`--quotas`, `--quota`, `--quota-scale`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether calls are throttled at all (off with `--dev` unless asked for).
    pub enabled: bool,
    /// Multiplies every default rate that `overrides` does not set (at least 1/s remains).
    pub scale: f64,
    /// Rates (requests per second) set per group, taken as given.
    pub overrides: Vec<(QuotaGroup, u32)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { enabled: false, scale: 1.0, overrides: Vec::new() }
    }
}

impl Settings {
    /// The rate `group` is held to.
    pub fn rate(&self, group: QuotaGroup) -> u32 {
        if let Some((_, rate)) = self.overrides.iter().rev().find(|(g, _)| *g == group) {
            return *rate;
        }
        let scaled = (f64::from(group.default_rate()) * self.scale).round();
        // Saturating: a huge scale means "practically unlimited", never a wrap.
        if scaled >= f64::from(u32::MAX) { u32::MAX } else { (scaled as u32).max(1) }
    }
}

/// Parses `--quota GROUP=RATE` (RATE a whole number of requests per second, at least 1).
pub fn parse_override(s: &str) -> Result<(QuotaGroup, u32), String> {
    let (name, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not GROUP=RATE (e.g. secretsmanager-create=2)"))?;
    let group = QuotaGroup::from_name(name.trim()).ok_or_else(|| {
        let names: Vec<_> = QuotaGroup::all().map(|g| g.name().into_owned()).collect();
        format!("unknown quota group `{name}`; the groups are: {}", names.join(", "))
    })?;
    let rate: u32 = rate.trim().parse().ok().filter(|r| *r >= 1).ok_or_else(|| {
        format!("the rate of `{name}` must be a whole number of requests per second, at least 1")
    })?;
    Ok((group, rate))
}

/// The limiters of a running server.
pub struct Quotas {
    limiters: Option<HashMap<QuotaGroup, DefaultKeyedRateLimiter<(String, String)>>>,
    checks: AtomicU64,
}

impl Quotas {
    pub fn new(settings: &Settings) -> Quotas {
        let limiters = settings.enabled.then(|| {
            QuotaGroup::all()
                .map(|group| {
                    let rate = NonZeroU32::new(settings.rate(group)).unwrap_or(NonZeroU32::MIN);
                    (group, DefaultKeyedRateLimiter::hashmap(Quota::per_second(rate)))
                })
                .collect()
        });
        Quotas { limiters, checks: AtomicU64::new(0) }
    }

    /// Counts a call of `op` by a caller of `scope` (the caller's own account, even when
    /// the resource is another's, as AWS counts cross-account calls); `Err` if it is over
    /// its quota.
    pub fn check(&self, scope: &Scope, op: Operation) -> Result<(), AwsError> {
        let Some(limiters) = &self.limiters else { return Ok(()) };
        let Some(limiter) = op.quota_group().and_then(|g| limiters.get(&g)) else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in limiters.values() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        let key = (scope.account.clone(), scope.region.clone());
        limiter.check_key(&key).map_err(|_| {
            tracing::debug!(operation = op.name(), account = %scope.account, "throttled");
            match op.service() {
                // KMS words it its own way (developer guide, "Throttling AWS KMS requests").
                Service::Kms => AwsError::new(ErrorCode::Throttling, KMS_THROTTLED),
                _ => AwsError::throttled(),
            }
        })
    }

    /// How many (account, region, group) buckets are held (for tests).
    pub fn buckets(&self) -> usize {
        self.limiters.as_ref().map_or(0, |l| l.values().map(|l| l.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_wire::operation::{KmsOp, SecretsManagerOp};

    fn tight(group: &str, rate: u32) -> Quotas {
        Quotas::new(&Settings {
            enabled: true,
            overrides: vec![parse_override(&format!("{group}={rate}")).unwrap()],
            ..Settings::default()
        })
    }

    #[test]
    fn calls_over_a_quota_are_throttled_as_aws_words_it() {
        let quotas = tight("secretsmanager-create", 2);
        let scope = Scope::new("111111111111", "us-east-1");
        let create = Operation::from(SecretsManagerOp::CreateSecret);
        // The bucket holds one second's worth: two calls pass at once, the third does not
        // (unless a whole half second passed in between, which a test cannot rule out on a
        // busy machine, so it tries a burst larger than what could refill).
        let results: Vec<_> = (0..50).map(|_| quotas.check(&scope, create)).collect();
        assert!(results[0].is_ok() && results[1].is_ok());
        let throttled = results.iter().find_map(|r| r.as_ref().err()).expect("throttled");
        assert_eq!(throttled.code, ErrorCode::Throttling);
        assert_eq!(throttled.code.as_str(), "ThrottlingException");
        assert_eq!(throttled.message, "Rate exceeded");
        assert_eq!(throttled.code.http_status(), 400);
    }

    #[test]
    fn accounts_regions_and_groups_have_their_own_buckets() {
        let quotas = tight("secretsmanager-create", 1);
        let a = Scope::new("111111111111", "us-east-1");
        let create = Operation::from(SecretsManagerOp::CreateSecret);
        while quotas.check(&a, create).is_ok() {}
        assert!(quotas.check(&Scope::new("222222222222", "us-east-1"), create).is_ok());
        assert!(quotas.check(&Scope::new("111111111111", "eu-west-1"), create).is_ok());
        assert!(quotas.check(&a, SecretsManagerOp::DeleteSecret.into()).is_ok());
    }

    #[test]
    fn kms_words_its_throttling_its_own_way() {
        let quotas = tight("kms-cryptographic", 1);
        let scope = Scope::new("111111111111", "us-east-1");
        let error = (0..50)
            .find_map(|_| quotas.check(&scope, KmsOp::GenerateRandom.into()).err())
            .expect("throttled");
        assert_eq!((error.code, error.message.as_str()), (ErrorCode::Throttling, KMS_THROTTLED));
    }

    #[test]
    fn disabled_quotas_never_throttle() {
        let quotas = Quotas::new(&Settings {
            overrides: vec![parse_override("kms-cryptographic=1").unwrap()],
            ..Settings::default()
        });
        let scope = Scope::new("111111111111", "us-east-1");
        assert!((0..100).all(|_| quotas.check(&scope, KmsOp::Encrypt.into()).is_ok()));
        assert_eq!(quotas.buckets(), 0);
    }

    #[test]
    fn idle_buckets_are_swept() {
        let quotas = tight("kms-cryptographic", 1_000_000);
        let encrypt = Operation::from(KmsOp::Encrypt);
        // Every check is in a fresh region: a full bucket afterwards is indistinguishable
        // from none, so the sweep drops (nearly) all of them.
        for i in 0..(3 * SWEEP_EVERY) {
            let _ = quotas.check(&Scope::new("111111111111", format!("r-{i}")), encrypt);
        }
        assert!(quotas.buckets() < (2 * SWEEP_EVERY) as usize, "{}", quotas.buckets());
    }

    #[test]
    fn overrides_and_scale_set_the_rates() {
        let settings = Settings {
            enabled: true,
            scale: 0.1,
            overrides: vec![parse_override("secretsmanager-list=7").unwrap()],
        };
        assert_eq!(settings.rate(QuotaGroup::SecretsManagerList), 7);
        assert_eq!(settings.rate(QuotaGroup::SecretsManagerGet), 1_000);
        assert_eq!(settings.rate(QuotaGroup::Kms(KmsOp::CreateAlias)), 1);
        assert!(parse_override("secretsmanager-list=0").is_err());
        assert!(parse_override("nothing=3").is_err());
        assert!(parse_override("secretsmanager-list").is_err());
        assert_eq!(parse_override("kms-CreateKey=9"), Ok((QuotaGroup::Kms(KmsOp::CreateKey), 9)));
    }
}
