//! Identifiers (`producer_id`) as Motience clients send them: an integer, or a string of
//! digits (`"17"`). Anything else is refused.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// An id read leniently; serialises as a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LenientId(pub i64);

impl<'de> Deserialize<'de> for LenientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IdVisitor).map(LenientId)
    }
}

/// For `#[serde(deserialize_with = "lenient_id::deserialize")]` on an `i64` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    LenientId::deserialize(deserializer).map(|id| id.0)
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = i64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an integer id (or a string of digits)")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::custom("the id is too large"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
        let digits = !value.is_empty()
            && value.len() <= 19
            && value.bytes().all(|byte| byte.is_ascii_digit());
        if !digits {
            return Err(E::custom("expected an integer id (or a string of digits)"));
        }
        value.parse().map_err(|_| E::custom("the id is too large"))
    }
}
