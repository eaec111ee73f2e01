//! What the pNode API's query parameters share: the closed sets of names some of them take,
//! how such a name is read, ranges, and the error of a value that is not acceptable.
//!
//! A parameter that cannot be read at all (`limit=abc`, `public=maybe`) fails when the query
//! string is deserialised, and the server answers `bad_request`. A parameter that was read but
//! is not acceptable (a number out of its range, NaN, a name outside its closed set) is an
//! [`InvalidQuery`], answered `validation_failed`: the client wrote a well-formed request for
//! something that does not exist.

use std::fmt::Display;

use serde::de::value::StrDeserializer;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

/// A query parameter that was read but is not acceptable; the message says why, in the
/// client's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

/// A query parameter whose values form a closed set (a serde enum `T`), as read.
///
/// Reading it never fails: a name outside the set is kept with the names the set holds, so
/// that it is refused as [`InvalidQuery`] like any other unacceptable value, and not as an
/// unreadable query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice<T> {
    Known(T),
    Unknown {
        sent: String,
        expected: &'static [&'static str],
    },
}

impl<T: Copy> Choice<T> {
    /// The value read for the parameter `name`.
    pub fn value(&self, name: &str) -> Result<T, InvalidQuery> {
        match self {
            Choice::Known(value) => Ok(*value),
            Choice::Unknown { sent, expected } => Err(InvalidQuery(format!(
                "{name} must be one of {}, not {sent:?}",
                expected.join(", ")
            ))),
        }
    }
}

/// The value of the closed-set parameter `name`, `default` when it was not sent.
pub fn chosen<T: Copy>(
    name: &str,
    sent: Option<&Choice<T>>,
    default: T,
) -> Result<T, InvalidQuery> {
    sent.map_or(Ok(default), |sent| sent.value(name))
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sent = String::deserialize(deserializer)?;
        let name: StrDeserializer<'_, NotInSet> = sent.as_str().into_deserializer();
        Ok(match T::deserialize(name) {
            Ok(value) => Choice::Known(value),
            Err(NotInSet { expected }) => Choice::Unknown { sent, expected },
        })
    }
}

/// Why a name is not one of a closed set's: serde's derive tells the names the set holds.
#[derive(Debug)]
struct NotInSet {
    expected: &'static [&'static str],
}

impl Display for NotInSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not one of {}", self.expected.join(", "))
    }
}

impl std::error::Error for NotInSet {}

impl serde::de::Error for NotInSet {
    fn custom<M: Display>(_: M) -> Self {
        NotInSet { expected: &[] }
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        NotInSet { expected }
    }
}

/// Which nodes `/pnodes` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Online,
    Offline,
    All,
}

/// What `/pnodes` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PnodeSortKey {
    LastSeen,
    Uptime,
    Score,
    StorageUsed,
    StorageUsagePercent,
    FirstSeen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// What `/network/consistency` sorts by: consistency ascending (the least consistent first),
/// disappearances descending, or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsistencySortKey {
    ConsistencyScore,
    GossipDisappearances,
    Address,
}

/// The value of the parameter `name`, `default` when it was not sent, refused outside
/// `min..=max`.
pub fn in_range<T: PartialOrd + Display + Copy>(
    name: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, InvalidQuery> {
    let value = value.unwrap_or(default);
    // Written so that NaN, which compares false with everything, is refused too.
    if !(value >= min && value <= max) {
        return Err(InvalidQuery(format!(
            "{name} must be between {min} and {max}, not {value}"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
        DeepBlue,
    }

    #[derive(Debug, Deserialize)]
    struct Query {
        colour: Option<Choice<Colour>>,
    }

    fn read(text: &str) -> Option<Choice<Colour>> {
        let query: Query = serde_json::from_str(text).expect("a readable query");
        query.colour
    }

    #[test]
    fn choices_read_known_names_and_refuse_others_naming_the_set() {
        assert_eq!(
            read(r#"{"colour": "deep_blue"}"#),
            Some(Choice::Known(Colour::DeepBlue))
        );
        assert_eq!(read("{}"), None);
        let unknown = read(r#"{"colour": "Red"}"#);
        let refused = chosen("colour", unknown.as_ref(), Colour::Red);
        assert_eq!(
            refused,
            Err(InvalidQuery(
                "colour must be one of red, deep_blue, not \"Red\"".into()
            ))
        );
        assert_eq!(chosen("colour", None, Colour::Red), Ok(Colour::Red));
    }

    #[test]
    fn ranges_refuse_values_outside_them_and_nan() {
        assert_eq!(in_range("limit", None, 100, 1, 1_000), Ok(100));
        assert_eq!(in_range("limit", Some(1_000), 100, 1, 1_000), Ok(1_000));
        assert_eq!(
            in_range("limit", Some(0), 100, 1, 1_000),
            Err(InvalidQuery(
                "limit must be between 1 and 1000, not 0".into()
            ))
        );
        assert!(in_range("days", Some(f64::NAN), 7.0, 0.0, 3_650.0).is_err());
    }
}
