//! Back-off on failed sign-in steps, per key (an account or typed e-mail, and the client
//! address): the first few failures are free, then each further attempt must wait 2^(n-free)
//! seconds (at most 15 min) after the last failure. It slows guessing to a crawl without a
//! lockout: another address is unaffected, and a success clears the count. In memory, per
//! replica (a replica that restarts forgets; guessing stays slow on each).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub const FREE_ATTEMPTS: u32 = 5;
const MAX_WAIT_SECS: u64 = 900;
const MAX_ENTRIES: usize = 100_000;

/// The failures of one gatehouse instance (in its app state; per replica).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The key of one form for one account (or typed e-mail) from one address. The client address
/// is [`crate::http::client::client_ip`]'s: behind a trusted reverse proxy the forwarded one
/// (else every client would share the proxy's back-off), never a header a client wrote itself.
pub fn key(form: &str, who: &str, req: &actix_web::HttpRequest) -> String {
    let state = req.app_data::<actix_web::web::Data<crate::startup::AppState>>();
    let proxies = state.map_or(&[][..], |s| s.settings.trusted_proxies.as_slice());
    let peer = crate::http::client::client_key(req, proxies);
    format!("{form}|{who}|{peer}")
}

impl Backoff {
    /// Seconds still to wait before the next attempt, if any.
    pub fn wait(&self, key: &str) -> Option<u64> {
        let map = self.failures.lock().ok()?;
        let (n, at) = map.get(key)?;
        if *n < FREE_ATTEMPTS {
            return None;
        }
        let wait = 2u64.saturating_pow(n - FREE_ATTEMPTS).min(MAX_WAIT_SECS);
        let elapsed = at.elapsed().as_secs();
        (elapsed < wait).then(|| wait - elapsed)
    }

    pub fn record(&self, key: &str, ok: bool) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if ok {
            map.remove(key);
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed().as_secs() < MAX_WAIT_SECS);
            // Still full (a flood from many sources): the oldest entry makes room, so the
            // table stays bounded and the newest failures always count.
            if map.len() >= MAX_ENTRIES {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_attempts_then_waits_and_a_success_clears() {
        let b = Backoff::default();
        let k = "test|someone|127.0.0.9";
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(b.wait(k), None);
            b.record(k, false);
        }
        assert_eq!(b.wait(k), Some(1));
        b.record(k, false);
        assert_eq!(b.wait(k), Some(2));
        assert_eq!(
            b.wait("test|someone|127.0.0.10"),
            None,
            "another address is unaffected"
        );
        b.record(k, true);
        assert_eq!(b.wait(k), None);
    }
}
