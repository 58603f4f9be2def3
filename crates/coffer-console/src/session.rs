//! Console sessions (server-side, idle and absolute expiry), their CSRF tokens, and the
//! sign-in rate limit. A session cookie holds only a random id; the session's access key id
//! stays here (its secret is checked once at sign-in and not kept; the key itself is
//! looked up again for every call, see `backend::Principal`).

use crate::backend::Principal;
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "coffer_console";
/// The sign-in form's CSRF cookie (double submit: there is no session yet).
pub const SIGNIN_COOKIE: &str = "coffer_console_signin";

/// How long sessions live and how fast sign-in may be tried.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A session unused this long is over.
    pub idle: Duration,
    /// A session this old is over, used or not.
    pub absolute: Duration,
    /// Sign-in attempts allowed per source address in [`Limits::signin_window`].
    pub signin_attempts: u32,
    pub signin_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(8 * 60 * 60),
            signin_attempts: 10,
            signin_window: Duration::from_secs(60),
        }
    }
}

/// One signed-in principal.
pub struct Session {
    pub who: Principal,
    pub arn: String,
    pub account: String,
    pub csrf: String,
    created: Instant,
    last_seen: Mutex<Instant>,
}

/// The most sessions kept at once; past it the oldest is dropped.
const MAX_SESSIONS: usize = 10_000;
/// The most source addresses the rate limit remembers at once.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// A fresh random token (256 bits, hex).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens without stopping at the first difference.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Opens a session; answers its id (the cookie value).
    pub fn open(&self, who: Principal, arn: String, account: String) -> String {
        let id = token();
        let now = Instant::now();
        let session =
            Session { who, arn, account, csrf: token(), created: now, last_seen: Mutex::new(now) };
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = (map.len() >= MAX_SESSIONS)
            .then(|| map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| k.clone()))
            .flatten();
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
        map.insert(id.clone(), Arc::new(session));
        id
    }

    /// The live session `id`, touched; an expired one is removed and answers `None`.
    pub fn get(&self, id: &str, limits: &Limits) -> Option<Arc<Session>> {
        let now = Instant::now();
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get(id)?;
        let last_seen = *session.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(last_seen) > limits.idle
            || now.duration_since(session.created) > limits.absolute
        {
            map.remove(id);
            return None;
        }
        *session.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Whether `ip` may try to sign in: fewer than the limit of failed attempts in the window.
    pub fn allow_signin(&self, ip: IpAddr, limits: &Limits) -> bool {
        let now = Instant::now();
        let map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some((start, failures)) if now.duration_since(*start) < limits.signin_window => {
                *failures < limits.signin_attempts
            }
            _ => true,
        }
    }

    /// Counts a failed sign-in from `ip`.
    pub fn note_failed_signin(&self, ip: IpAddr, limits: &Limits) {
        let now = Instant::now();
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, (start, _)| now.duration_since(*start) < limits.signin_window);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= limits.signin_window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Principal {
        Principal::Dev {
            scope: coffer_core::Scope::new("111122223333", "us-east-1"),
            access_key_id: "111122223333".into(),
        }
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let sessions = Sessions::default();
        let id = sessions.open(creds(), "arn".into(), "1".into());
        let live = Limits::default();
        assert!(sessions.get(&id, &live).is_some());
        let idle = Limits { idle: Duration::ZERO, ..live };
        std::thread::sleep(Duration::from_millis(2));
        assert!(sessions.get(&id, &idle).is_none());
        assert!(sessions.get(&id, &live).is_none(), "an expired session is gone");
        let id = sessions.open(creds(), "arn".into(), "1".into());
        std::thread::sleep(Duration::from_millis(2));
        let absolute = Limits { absolute: Duration::ZERO, ..live };
        assert!(sessions.get(&id, &absolute).is_none());
    }

    #[test]
    fn signin_rate_limit() {
        let sessions = Sessions::default();
        let limits = Limits { signin_attempts: 2, ..Limits::default() };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(sessions.allow_signin(ip, &limits));
        sessions.note_failed_signin(ip, &limits);
        assert!(sessions.allow_signin(ip, &limits));
        sessions.note_failed_signin(ip, &limits);
        assert!(!sessions.allow_signin(ip, &limits));
        assert!(sessions.allow_signin("127.0.0.2".parse().unwrap(), &limits));
    }

    #[test]
    fn tokens() {
        let a = token();
        assert_eq!(a.len(), 64);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &token()));
        assert!(!same_token(&a, ""));
    }
}
