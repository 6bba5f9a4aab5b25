//! Signed, expiring tokens that grant read or read-write per apartment
//! (optionally narrowed to buildings), and global keys separately.
//!
//! A token is `gs1.<claims>.<signature>`: the claims as base64url JSON, the
//! signature an HMAC-SHA256 of `gs1.<claims>` with the relay's secret.
//! Tokens travel in a hello or an `Authorization: Bearer` header, never in
//! a URL. A token in a file served with a site is public to every visitor:
//! fine for a demo; a real deployment hands each user a short-lived token
//! from its own backend.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gaesup_protocol::{StreamId, code};
use gaesup_state_core::{ApartmentId, BuildingId, FullKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "gs1.";
/// Longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// What a token may do with an apartment or the global keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read only.
    R,
    /// Read and write.
    Rw,
}

/// A grant on one apartment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Read or read-write.
    pub access: Access,
    /// When set, only keys of these buildings (building and private
    /// scope); apartment-scope keys need a grant on the whole apartment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildings: Option<Vec<BuildingId>>,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who it was issued to (logs, metrics).
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Grants by apartment.
    #[serde(default)]
    pub apartments: BTreeMap<ApartmentId, Grant>,
    /// Access to global keys, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Access>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Absent, malformed, or not signed with this relay's secret.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// Past its expiry.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// Its expiry (s).
        exp: u64,
        /// Now (s).
        now: u64,
    },
}

impl TokenError {
    /// The protocol code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => code::UNAUTHORIZED,
            Self::Expired { .. } => code::TOKEN_EXPIRED,
        }
    }
}

fn mac(secret: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC accepts keys of any length; this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{PREFIX}{body}");
    let signature = mac(secret).map_or_else(String::new, |mut mac| {
        mac.update(signed.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    });
    format!("{signed}.{signature}")
}

/// Checks a token's signature and expiry (`now` in seconds).
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Invalid("too long"));
    }
    let rest = token
        .strip_prefix(PREFIX)
        .ok_or(TokenError::Invalid("not a gs1 token"))?;
    let (body, signature) = rest
        .split_once('.')
        .ok_or(TokenError::Invalid("no signature"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid("signature is not base64url"))?;
    let mut mac = mac(secret).ok_or(TokenError::Invalid("no usable secret"))?;
    mac.update(&token.as_bytes()[..PREFIX.len() + body.len()]);
    // Constant time.
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Invalid("bad signature"))?;
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Invalid("claims are not base64url"))?;
    let claims: Claims =
        serde_json::from_slice(&json).map_err(|_| TokenError::Invalid("claims do not parse"))?;
    claims.check_expiry(now)?;
    Ok(claims)
}

impl Claims {
    /// [`TokenError::Expired`] once `now` (seconds since the Unix epoch)
    /// reaches the expiry: checked at the hello and, on a socket that
    /// stays open, on every push and heartbeat after it.
    pub fn check_expiry(&self, now: u64) -> Result<(), TokenError> {
        if self.exp <= now {
            return Err(TokenError::Expired { exp: self.exp, now });
        }
        Ok(())
    }

    /// Whether the token may read `stream` at all (a building-narrowed
    /// grant reads part of it; see [`Claims::can_read_key`]).
    pub fn can_read(&self, stream: &StreamId) -> bool {
        match stream {
            StreamId::Global => self.global.is_some(),
            StreamId::Apartment(id) => self.apartments.contains_key(id),
        }
    }

    /// Whether the token may read `key`.
    pub fn can_read_key(&self, key: &FullKey) -> bool {
        self.grant_for(key).is_some()
    }

    /// Whether the token may write `key`.
    pub fn can_write_key(&self, key: &FullKey) -> bool {
        self.grant_for(key) == Some(Access::Rw)
    }

    fn grant_for(&self, key: &FullKey) -> Option<Access> {
        let Some(apartment) = key.apartment() else {
            return self.global;
        };
        let grant = self
            .apartments
            .iter()
            .find(|(id, _)| id.as_str() == apartment)
            .map(|(_, grant)| grant)?;
        match &grant.buildings {
            None => Some(grant.access),
            Some(buildings) => {
                let building = key.building()?;
                buildings
                    .iter()
                    .any(|b| b.as_str() == building)
                    .then_some(grant.access)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "device".into(),
            exp: 2_000,
            apartments: BTreeMap::from([
                (
                    "main".parse().unwrap(),
                    Grant {
                        access: Access::Rw,
                        buildings: None,
                    },
                ),
                (
                    "annex".parse().unwrap(),
                    Grant {
                        access: Access::Rw,
                        buildings: Some(vec!["shop".parse().unwrap()]),
                    },
                ),
            ]),
            global: Some(Access::R),
        }
    }

    #[test]
    fn signed_tokens_verify_and_forged_or_expired_ones_do_not() {
        let token = mint(b"secret", &claims());
        assert_eq!(verify(b"secret", &token, 1_000).unwrap(), claims());
        assert!(matches!(
            verify(b"other", &token, 1_000),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify(b"secret", &token, 2_000),
            Err(TokenError::Expired { .. })
        ));
        // Changing the claims breaks the signature.
        let (head, signature) = token.rsplit_once('.').unwrap();
        let mut forged = claims();
        forged.global = Some(Access::Rw);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let _ = head;
        let tampered = format!("{PREFIX}{body}.{signature}");
        assert!(verify(b"secret", &tampered, 1_000).is_err());
        for garbage in ["", "gs1.", "gs1.x.y", "Bearer x", &"a".repeat(10_000)] {
            assert!(verify(b"secret", garbage, 1_000).is_err(), "{garbage}");
        }
    }

    #[test]
    fn grants_cover_apartments_buildings_and_global_keys() {
        let c = claims();
        let key = |text: &str| FullKey::parse(text).unwrap();
        assert!(c.can_write_key(&key("apartment/main/cart")));
        assert!(c.can_write_key(&key("building/annex/shop/count")));
        assert!(!c.can_read_key(&key("building/annex/desk/count")));
        assert!(!c.can_read_key(&key("apartment/annex/cart")));
        assert!(!c.can_read_key(&key("apartment/other/cart")));
        assert!(c.can_read_key(&key("global/theme")));
        assert!(!c.can_write_key(&key("global/theme")));
    }
}
