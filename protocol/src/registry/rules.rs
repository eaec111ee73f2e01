//! The registry's limits and the label selector, shared by every API that takes them.

use std::collections::BTreeMap;

/// The longest node name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Labels per node.
pub const MAX_LABELS: usize = 64;
/// A label key: 1 to 63 characters; a value: at most 200.
const MAX_LABEL_KEY_CHARS: usize = 63;
const MAX_LABEL_VALUE_CHARS: usize = 200;
/// A node's metadata, as JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The largest page of a listing.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// A node name: 1 to 200 characters, no control characters, not blank.
pub fn validate_name(name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS || name.trim().is_empty() {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(())
}

fn valid_label_key(key: &str) -> bool {
    (1..=MAX_LABEL_KEY_CHARS).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
}

/// At most 64 labels; keys of `[A-Za-z0-9_.-/]` (1–63), values of at most 200 characters
/// without control characters or `,` and `=` (which the selector syntax uses).
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        if !valid_label_key(key) {
            return Err(format!(
                "label key {key:?} must be 1 to {MAX_LABEL_KEY_CHARS} characters of letters, digits, '_', '.', '-', '/'"
            ));
        }
        if value.chars().count() > MAX_LABEL_VALUE_CHARS
            || value
                .chars()
                .any(|c| c.is_control() || c == ',' || c == '=')
        {
            return Err(format!(
                "label {key:?}: a value is at most {MAX_LABEL_VALUE_CHARS} characters, without ',' '=' or control characters"
            ));
        }
    }
    Ok(())
}

/// The documented form of the labels [`validate_labels`] accepts (`nullable` for a PATCH, where
/// `null` leaves them as they are). Attributes cannot put patterns on a map's keys and values.
#[cfg(feature = "openapi")]
fn labels_schema(nullable: bool) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let schema_type = if nullable {
        SchemaType::from_iter([Type::Object, Type::Null])
    } else {
        SchemaType::Type(Type::Object)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .max_properties(Some(MAX_LABELS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_./-]{1,63}$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_LABEL_VALUE_CHARS))
                // No control characters, nor `,` and `=`, which the selector syntax uses.
                .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f,=]*$")),
        ))
        .description(Some(
            "At most 64 labels; keys of `[A-Za-z0-9_./-]` (1–63), values of at most 200 \
             characters without control characters, `,` or `=`.",
        ))
        .build()
}

#[cfg(feature = "openapi")]
pub(super) fn required_labels_schema() -> utoipa::openapi::schema::Object {
    labels_schema(false)
}

#[cfg(feature = "openapi")]
pub(super) fn optional_labels_schema() -> utoipa::openapi::schema::Object {
    labels_schema(true)
}

/// The largest magnitude of a number in metadata. Postgres keeps JSON numbers as decimals and
/// writes them back in full; one near `f64::MAX` written back as 309 digits no longer reads as
/// a finite double.
pub const MAX_METADATA_NUMBER: f64 = 1e300;

/// Metadata: any JSON of at most 16 KiB, its numbers within ±[`MAX_METADATA_NUMBER`].
pub fn validate_metadata(metadata: &serde_json::Value) -> Result<(), String> {
    // An object, as the seed's platform kept it (and as the contract documents it).
    if !metadata.is_object() {
        return Err("metadata must be a JSON object".to_owned());
    }
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"
        ));
    }
    if has_huge_number(metadata) {
        return Err(format!(
            "metadata numbers must be within ±{MAX_METADATA_NUMBER:e}"
        ));
    }
    Ok(())
}

/// Whether a JSON value holds a number Postgres's `jsonb` would give back unreadable (beyond
/// ±[`MAX_METADATA_NUMBER`]).
pub fn has_huge_number(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) => number
            .as_f64()
            .is_none_or(|number| number.abs() > MAX_METADATA_NUMBER),
        serde_json::Value::Array(items) => items.iter().any(has_huge_number),
        serde_json::Value::Object(fields) => fields.values().any(has_huge_number),
        _ => false,
    }
}

/// `k=v,k2=v2`: nodes carrying every one of these labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub BTreeMap<String, String>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut labels = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(LabelSelector(labels));
        }
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "label selector part {part:?} is not key=value (as in env=prod,tier=web)"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if !valid_label_key(key) {
                return Err(format!(
                    "label selector key {key:?} is not a valid label key"
                ));
            }
            labels.insert(key.to_owned(), value.to_owned());
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} labels in a selector"));
        }
        Ok(LabelSelector(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let selector = LabelSelector::parse("env=prod, tier=web").unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("env".to_owned(), "prod".to_owned());
        assert!(!selector.matches(&labels));
        labels.insert("tier".to_owned(), "web".to_owned());
        assert!(selector.matches(&labels));
        for bad in ["env", "=x", "a b=c", "env=prod,"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?}");
        }
        assert!(LabelSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn names_labels_and_metadata_have_limits() {
        assert!(validate_name("web-01").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("  ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(201)).is_err());
        let mut labels = BTreeMap::new();
        labels.insert("env".to_owned(), "a,b".to_owned());
        assert!(validate_labels(&labels).is_err());
        let big = serde_json::Value::String("x".repeat(MAX_METADATA_BYTES));
        assert!(validate_metadata(&big).is_err());
        // Found by schemathesis: stored, this came back as a number no double can hold.
        let huge = serde_json::json!({"a": [1, {"b": 1.7976931348623157e308}]});
        assert!(validate_metadata(&huge).is_err());
        assert!(validate_metadata(&serde_json::json!({"a": -5.45e16, "b": u64::MAX})).is_ok());
        // An object, nothing else (the contract says so, and gRPC carries a Struct).
        for other in [
            serde_json::json!([null, null]),
            serde_json::json!("text"),
            serde_json::json!(4),
        ] {
            assert!(validate_metadata(&other).is_err(), "{other}");
        }
    }
}
