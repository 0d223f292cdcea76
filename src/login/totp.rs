//! RFC 6238 TOTP (SHA-1, 6 digits, 30 s, ±1 step) for instance admins and break-glass
//! accounts. Single use is enforced by the caller storing the accepted step.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

pub const STEP_SECS: u64 = 30;

fn totp(seed: &[u8], account: &str) -> anyhow::Result<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        seed.to_vec(),
        Some("gatehouse".to_string()),
        account.to_string(),
    )
    .map_err(|e| anyhow::anyhow!("invalid TOTP seed: {e}"))
}

/// A new 160-bit seed.
pub fn new_seed() -> Vec<u8> {
    match Secret::generate_secret().to_bytes() {
        Ok(bytes) => bytes,
        Err(_) => {
            use rand::RngCore;
            let mut b = vec![0u8; 20];
            rand::rngs::OsRng.fill_bytes(&mut b);
            b
        }
    }
}

/// The `otpauth://` URI an authenticator app imports.
pub fn otpauth_uri(seed: &[u8], account: &str) -> anyhow::Result<String> {
    Ok(totp(seed, account)?.get_url())
}

/// The otpauth URI as a QR code in SVG, for an authenticator app to scan (inline in a page:
/// no script, no style attribute, so the CSP stays as it is).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // Inline in HTML: without the XML declaration.
    Some(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

/// The otpauth URI as a QR code in text (two rows of modules per line), for a terminal.
pub fn qr_text(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// The code for `unix_time` (tests and tools).
pub fn code_at(seed: &[u8], unix_time: u64) -> anyhow::Result<String> {
    Ok(totp(seed, "x")?.generate(unix_time))
}

/// The time step the code matches (current ±1), if any.
pub fn matching_step(seed: &[u8], code: &str, unix_time: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let t = totp(seed, "x").ok()?;
    let current = unix_time / STEP_SECS;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find(|step| {
            let expected = t.generate(step * STEP_SECS);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
        .map(|s| s as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_within_one_step() {
        let seed = new_seed();
        let now = 1_800_000_000u64;
        let code = code_at(&seed, now).unwrap();
        assert_eq!(matching_step(&seed, &code, now), Some((now / 30) as i64));
        assert!(matching_step(&seed, &code, now + 30).is_some());
        assert!(matching_step(&seed, &code, now + 90).is_none());
        assert!(matching_step(&seed, "abcdef", now).is_none());
        let uri = otpauth_uri(&seed, "ops@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/"));
    }
}
