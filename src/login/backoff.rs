//! Back-off on failed sign-in steps, per key (an account or typed e-mail, and the client
//! address): the first few failures are free, then each further attempt must wait 2^(n-free)
//! seconds (at most 15 min) after the last failure. It slows guessing to a crawl without a
//! lockout: another address is unaffected, and a success clears the count. In memory, per
//! replica (a replica that restarts forgets; guessing stays slow on each).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub const FREE_ATTEMPTS: u32 = 5;
const MAX_WAIT_SECS: u64 = 900;
const MAX_ENTRIES: usize = 100_000;

type Failures = Mutex<HashMap<String, (u32, Instant)>>;

fn failures() -> &'static Failures {
    static FAILURES: OnceLock<Failures> = OnceLock::new();
    FAILURES.get_or_init(Default::default)
}

/// The key of one form for one account (or typed e-mail) from one address.
pub fn key(form: &str, who: &str, req: &actix_web::HttpRequest) -> String {
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    format!("{form}|{who}|{peer}")
}

/// Seconds still to wait before the next attempt, if any.
pub fn wait(key: &str) -> Option<u64> {
    let map = failures().lock().ok()?;
    let (n, at) = map.get(key)?;
    if *n < FREE_ATTEMPTS {
        return None;
    }
    let wait = 2u64.saturating_pow(n - FREE_ATTEMPTS).min(MAX_WAIT_SECS);
    let elapsed = at.elapsed().as_secs();
    (elapsed < wait).then(|| wait - elapsed)
}

pub fn record(key: &str, ok: bool) {
    let Ok(mut map) = failures().lock() else {
        return;
    };
    if ok {
        map.remove(key);
        return;
    }
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, (_, at)| at.elapsed().as_secs() < MAX_WAIT_SECS);
    }
    let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
    e.0 += 1;
    e.1 = Instant::now();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_attempts_then_waits_and_a_success_clears() {
        let k = "test|someone|127.0.0.9";
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(wait(k), None);
            record(k, false);
        }
        assert_eq!(wait(k), Some(1));
        record(k, false);
        assert_eq!(wait(k), Some(2));
        assert_eq!(
            wait("test|someone|127.0.0.10"),
            None,
            "another address is unaffected"
        );
        record(k, true);
        assert_eq!(wait(k), None);
    }
}
