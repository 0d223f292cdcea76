//! Instance signing keys, kept in the database so every replica serves the same SP
//! certificate and JWKS: the SAML SP key (RSA-2048 + self-signed certificate) and the
//! identity-JWT key (ECDSA P-256, ES256). Private keys are sealed with the instance key.
//! Rotation adds a new key and keeps publishing the previous one during an overlap.

use anyhow::Context;
use diesel::prelude::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};
use serde::Serialize;
use zeroize::Zeroizing;

use super::Result;
use crate::crypto::SecretKey;
use crate::db::ids::KeyId;
use crate::db::schema::signing_keys;
use crate::db::{lock_named, write_tx, DbConn};

/// How long a retired key is still published after `keys rotate`.
pub const ROTATION_OVERLAP_SECS: i64 = 7 * 24 * 3600;
const SP_CERT_DAYS: u32 = 3650;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SamlSp,
    Jwt,
    /// The OpenID Provider's ID tokens for apps that ask for RS256 (the OIDC default).
    OidcRs256,
    /// The OpenID Provider's ID tokens for apps that ask for ES256.
    OidcEs256,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Purpose::SamlSp,
        Purpose::Jwt,
        Purpose::OidcRs256,
        Purpose::OidcEs256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::SamlSp => "saml_sp",
            Purpose::Jwt => "jwt",
            Purpose::OidcRs256 => "oidc_rs256",
            Purpose::OidcEs256 => "oidc_es256",
        }
    }

    fn algorithm(self) -> &'static str {
        match self {
            Purpose::SamlSp | Purpose::OidcRs256 => "RS256",
            Purpose::Jwt | Purpose::OidcEs256 => "ES256",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = signing_keys)]
pub struct SigningKey {
    #[diesel(deserialize_as = String)]
    pub id: KeyId,
    pub purpose: String,
    pub algorithm: String,
    #[serde(skip)]
    pub private_key_enc: String,
    pub public_pem: String,
    pub certificate_pem: Option<String>,
    pub created_at: i64,
    pub not_after: Option<i64>,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
}

impl SigningKey {
    fn context(&self) -> String {
        seal_context(&self.id)
    }

    /// The private key, unsealed (only in memory, only where it signs).
    pub fn private_key(&self, key: &SecretKey) -> anyhow::Result<PKey<Private>> {
        let der = Zeroizing::new(key.open(&self.private_key_enc, &self.context())?);
        PKey::private_key_from_der(&der).context("stored private key is not valid DER")
    }
}

fn seal_context(id: &KeyId) -> String {
    format!("signing_keys:{id}")
}

#[derive(Insertable)]
#[diesel(table_name = signing_keys)]
struct NewKey<'a> {
    id: &'a str,
    purpose: &'a str,
    algorithm: &'a str,
    private_key_enc: String,
    public_pem: String,
    certificate_pem: Option<String>,
    created_at: i64,
    not_after: Option<i64>,
}

fn generate(
    conn: &mut DbConn,
    key: &SecretKey,
    purpose: Purpose,
    now: i64,
) -> anyhow::Result<KeyId> {
    let id = KeyId::new();
    let (pkey, certificate_pem, not_after) = match purpose {
        Purpose::SamlSp => {
            let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
            let cert = self_signed(&pkey, "gatehouse SAML SP")?;
            let pem = String::from_utf8(cert.to_pem()?)?;
            (
                pkey,
                Some(pem),
                Some(now + i64::from(SP_CERT_DAYS) * 86_400),
            )
        }
        Purpose::OidcRs256 => (PKey::from_rsa(Rsa::generate(2048)?)?, None, None),
        Purpose::Jwt | Purpose::OidcEs256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            (PKey::from_ec_key(EcKey::generate(&group)?)?, None, None)
        }
    };
    let der = Zeroizing::new(pkey.private_key_to_der()?);
    diesel::insert_into(signing_keys::table)
        .values(&NewKey {
            id: id.as_str(),
            purpose: purpose.as_str(),
            algorithm: purpose.algorithm(),
            private_key_enc: key.seal(&der, &seal_context(&id)),
            public_pem: String::from_utf8(pkey.public_key_to_pem()?)?,
            certificate_pem,
            created_at: now,
            not_after,
        })
        .execute(conn)?;
    Ok(id)
}

fn self_signed(pkey: &PKey<Private>, cn: &str) -> anyhow::Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(SP_CERT_DAYS)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(pkey)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(pkey, MessageDigest::sha256())?;
    Ok(b.build())
}

/// The key in use for `purpose`, if any.
pub fn current(conn: &mut DbConn, purpose: Purpose) -> Result<Option<SigningKey>> {
    Ok(signing_keys::table
        .filter(signing_keys::purpose.eq(purpose.as_str()))
        .filter(signing_keys::retired_at.is_null())
        .order(signing_keys::created_at.desc())
        .select(SigningKey::as_select())
        .first(conn)
        .optional()?)
}

/// Keys to publish (current and those still in their overlap), newest first.
pub fn published(conn: &mut DbConn, purpose: Purpose, now: i64) -> Result<Vec<SigningKey>> {
    Ok(signing_keys::table
        .filter(signing_keys::purpose.eq(purpose.as_str()))
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::publish_until.gt(now)),
        )
        .order(signing_keys::created_at.desc())
        .select(SigningKey::as_select())
        .load(conn)?)
}

/// At start-up: makes sure each purpose has a key (one replica generates, the others wait).
pub fn ensure(conn: &mut DbConn, key: &SecretKey, now: i64) -> Result<Vec<&'static str>> {
    write_tx(conn, |conn| {
        lock_named(conn, "signing_keys")?;
        let mut created = Vec::new();
        for purpose in Purpose::ALL {
            if current(conn, purpose)?.is_none() {
                generate(conn, key, purpose, now)?;
                created.push(purpose.as_str());
            }
        }
        Ok(created)
    })
}

/// Retires the current keys (published until `now + overlap`) and adds new ones.
pub fn rotate(conn: &mut DbConn, key: &SecretKey, now: i64, overlap: i64) -> Result<Vec<KeyId>> {
    write_tx(conn, |conn| {
        lock_named(conn, "signing_keys")?;
        diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
            .set((
                signing_keys::retired_at.eq(Some(now)),
                signing_keys::publish_until.eq(Some(now + overlap)),
            ))
            .execute(conn)?;
        let mut ids = Vec::new();
        for purpose in Purpose::ALL {
            ids.push(generate(conn, key, purpose, now)?);
        }
        Ok(ids)
    })
}

pub fn list(conn: &mut DbConn) -> Result<Vec<SigningKey>> {
    Ok(signing_keys::table
        .order((signing_keys::purpose.asc(), signing_keys::created_at.desc()))
        .select(SigningKey::as_select())
        .load(conn)?)
}
