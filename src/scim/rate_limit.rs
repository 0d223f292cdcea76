//! A per-token token bucket: `rate` requests per second with bursts up to 3 × rate. Beyond it
//! the client gets 429 with an integer `Retry-After` (Okta and Entra back off and retry). Per
//! process: with several replicas each allows the rate.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

struct Bucket {
    tokens: f64,
    at: Instant,
}

static BUCKETS: OnceLock<Mutex<HashMap<String, Bucket>>> = OnceLock::new();

/// `Ok(())` when the request may proceed, else the seconds to wait.
pub fn check(token_id: &str, rate: u32) -> Result<(), u64> {
    if rate == 0 {
        return Ok(());
    }
    let rate = f64::from(rate);
    let burst = rate * 3.0;
    let now = Instant::now();
    let Ok(mut buckets) = BUCKETS.get_or_init(|| Mutex::new(HashMap::new())).lock() else {
        return Ok(()); // a poisoned lock must not take provisioning down
    };
    let b = buckets.entry(token_id.to_string()).or_insert(Bucket {
        tokens: burst,
        at: now,
    });
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
    }
}
