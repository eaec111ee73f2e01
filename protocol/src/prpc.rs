//! Xandeum pRPC: the JSON-RPC 2.0 API that pNodes answer at `POST http://<ip>:6000/rpc`.
//!
//! Upstream data is not trusted. Every field is read on its own: a field of the wrong type, a
//! negative number or an absurd value is dropped (and counted in [`ParseTally`]) while the rest
//! of the record is kept; a pod without a usable `address` is dropped whole. Nothing here
//! panics on any input.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const METHOD_GET_VERSION: &str = "get-version";
pub const METHOD_GET_STATS: &str = "get-stats";
pub const METHOD_GET_PODS_WITH_STATS: &str = "get-pods-with-stats";
pub const METHOD_GET_PODS: &str = "get-pods";

/// The JSON-RPC error code of a method the node does not know.
pub const METHOD_NOT_FOUND: i64 = -32601;

/// The largest value accepted for a byte count (1 EiB): anything above is a broken reporter.
const MAX_BYTES: u64 = 1 << 60;
/// The largest accepted uptime: 50 years, in seconds.
const MAX_UPTIME_SECS: u64 = 50 * 365 * 86_400;
/// Timestamps outside 2000-01-01 .. 2100-01-01 are not believed.
const MIN_TIMESTAMP: i64 = 946_684_800;
const MAX_TIMESTAMP: i64 = 4_102_444_800;
const MAX_ADDRESS_CHARS: usize = 64;
const MAX_PUBKEY_CHARS: usize = 128;
const MAX_VERSION_CHARS: usize = 96;
/// Pods beyond this many in one answer are dropped (and counted).
pub const MAX_PODS_PER_ANSWER: usize = 100_000;

/// A JSON-RPC 2.0 request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcRequest {
    pub jsonrpc: String,
    pub method: String,
    #[serde(default)]
    pub id: Value,
}

impl RpcRequest {
    pub fn new(method: &str, id: u64) -> RpcRequest {
        RpcRequest {
            jsonrpc: "2.0".to_owned(),
            method: method.to_owned(),
            id: Value::from(id),
        }
    }
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcAnswerError {
    #[error("answer is not JSON: {0}")]
    NotJson(String),
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("answer has neither result nor error")]
    NoResult,
}

/// The `result` of a JSON-RPC answer, or its error.
pub fn parse_answer(body: &[u8]) -> Result<Value, RpcAnswerError> {
    let mut answer: Value =
        serde_json::from_slice(body).map_err(|error| RpcAnswerError::NotJson(error.to_string()))?;
    let Some(object) = answer.as_object_mut() else {
        return Err(RpcAnswerError::NoResult);
    };
    if let Some(error) = object.get("error").filter(|error| !error.is_null()) {
        return Err(RpcAnswerError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        });
    }
    match object.remove("result") {
        Some(result) if !result.is_null() => Ok(result),
        _ => Err(RpcAnswerError::NoResult),
    }
}

/// What was dropped while reading one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParseTally {
    /// Fields dropped for a wrong type or an impossible value.
    pub rejected_fields: u32,
    /// Pods dropped whole (no usable address, or over the per-answer cap).
    pub rejected_pods: u32,
}

impl ParseTally {
    pub fn add(&mut self, other: ParseTally) {
        self.rejected_fields += other.rejected_fields;
        self.rejected_pods += other.rejected_pods;
    }
}

/// One pod as a seed reports it. Every field but the address may be unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PodReport {
    pub address: String,
    pub pubkey: Option<String>,
    pub version: Option<String>,
    pub last_seen_timestamp: Option<i64>,
    pub is_public: Option<bool>,
    pub rpc_port: Option<u16>,
    pub storage_committed: Option<u64>,
    pub storage_used: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub uptime: Option<u64>,
}

/// A seed's own statistics (`get-stats`), flat or in the older `metadata`/`stats` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStats {
    pub active_streams: Option<u64>,
    pub cpu_percent: Option<f64>,
    pub current_index: Option<u64>,
    pub file_size: Option<u64>,
    pub last_updated: Option<i64>,
    pub packets_received: Option<u64>,
    pub packets_sent: Option<u64>,
    pub ram_total: Option<u64>,
    pub ram_used: Option<u64>,
    pub total_bytes: Option<u64>,
    pub total_pages: Option<u64>,
    pub uptime: Option<u64>,
}

/// The `version` of a `get-version` result.
pub fn parse_version(result: &Value, tally: &mut ParseTally) -> Option<String> {
    bounded_text(result.get("version"), MAX_VERSION_CHARS, tally)
}

/// A `get-stats` result. Live nodes answer flat; older documentation nests the figures under
/// `metadata` and `stats`: both are read, the flat field first.
pub fn parse_stats(result: &Value, tally: &mut ParseTally) -> NodeStats {
    let empty = Map::new();
    let flat = result.as_object().unwrap_or(&empty);
    let nested: Vec<&Map<String, Value>> = ["stats", "metadata"]
        .iter()
        .filter_map(|key| flat.get(*key).and_then(Value::as_object))
        .collect();
    let field = |name: &str| -> Option<&Value> {
        flat.get(name)
            .filter(|value| !value.is_object())
            .or_else(|| nested.iter().find_map(|map| map.get(name)))
    };
    NodeStats {
        active_streams: count(field("active_streams"), MAX_BYTES, tally),
        cpu_percent: ratio(field("cpu_percent"), 100.0 * 1024.0, tally),
        current_index: count(field("current_index"), MAX_BYTES, tally),
        file_size: count(field("file_size"), MAX_BYTES, tally),
        last_updated: timestamp_or_zero(field("last_updated"), tally),
        packets_received: count(field("packets_received"), MAX_BYTES, tally),
        packets_sent: count(field("packets_sent"), MAX_BYTES, tally),
        ram_total: count(field("ram_total"), MAX_BYTES, tally),
        ram_used: count(field("ram_used"), MAX_BYTES, tally),
        total_bytes: count(field("total_bytes"), MAX_BYTES, tally),
        total_pages: count(field("total_pages"), MAX_BYTES, tally),
        uptime: count(field("uptime"), MAX_UPTIME_SECS, tally),
    }
}

/// The pods of a `get-pods-with-stats` or `get-pods` result (`{"pods":[…]}` or a bare array).
pub fn parse_pods(result: &Value, tally: &mut ParseTally) -> Vec<PodReport> {
    let pods = match result {
        Value::Array(pods) => pods,
        Value::Object(object) => match object.get("pods") {
            Some(Value::Array(pods)) => pods,
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    if pods.len() > MAX_PODS_PER_ANSWER {
        tally.rejected_pods += u32::try_from(pods.len() - MAX_PODS_PER_ANSWER).unwrap_or(u32::MAX);
    }
    pods.iter()
        .take(MAX_PODS_PER_ANSWER)
        .filter_map(|pod| {
            let parsed = parse_pod(pod, tally);
            if parsed.is_none() {
                tally.rejected_pods += 1;
            }
            parsed
        })
        .collect()
}

fn parse_pod(pod: &Value, tally: &mut ParseTally) -> Option<PodReport> {
    let pod = pod.as_object()?;
    let address = pod
        .get("address")
        .and_then(Value::as_str)
        .filter(|address| valid_address(address))?
        .to_owned();
    let used = count(pod.get("storage_used"), MAX_BYTES, tally);
    Some(PodReport {
        address,
        pubkey: bounded_text(pod.get("pubkey"), MAX_PUBKEY_CHARS, tally),
        version: bounded_text(pod.get("version"), MAX_VERSION_CHARS, tally),
        last_seen_timestamp: timestamp(pod.get("last_seen_timestamp"), tally),
        is_public: flag(pod.get("is_public"), tally),
        rpc_port: count(pod.get("rpc_port"), u64::from(u16::MAX), tally)
            .and_then(|port| u16::try_from(port).ok()),
        storage_committed: count(pod.get("storage_committed"), MAX_BYTES, tally),
        storage_used: used,
        storage_usage_percent: ratio(pod.get("storage_usage_percent"), 100.0, tally),
        uptime: count(pod.get("uptime"), MAX_UPTIME_SECS, tally),
    })
}

/// `host:port` with a non-empty host of printable characters and a port that parses.
fn valid_address(address: &str) -> bool {
    if address.is_empty() || address.len() > MAX_ADDRESS_CHARS {
        return false;
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        && port.parse::<u16>().is_ok()
}

/// Absent and null are "unknown" and not counted; anything else unusable is counted.
fn reject<T>(value: Option<&Value>, tally: &mut ParseTally) -> Option<T> {
    if value.is_some_and(|value| !value.is_null()) {
        tally.rejected_fields += 1;
    }
    None
}

fn count(value: Option<&Value>, max: u64, tally: &mut ParseTally) -> Option<u64> {
    let parsed = value.and_then(|value| match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            // Some reporters send whole numbers as floats.
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f <= max as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    });
    match parsed.filter(|n| *n <= max) {
        Some(n) => Some(n),
        None => reject(value, tally),
    }
}

fn ratio(value: Option<&Value>, max: f64, tally: &mut ParseTally) -> Option<f64> {
    match value
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite() && (0.0..=max).contains(f))
    {
        Some(f) => Some(f),
        None => reject(value, tally),
    }
}

fn timestamp(value: Option<&Value>, tally: &mut ParseTally) -> Option<i64> {
    match value
        .and_then(Value::as_i64)
        .filter(|t| (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(t))
    {
        Some(t) => Some(t),
        None => reject(value, tally),
    }
}

/// A node that has not updated yet reports `last_updated: 0`; that is "unknown", not wrong.
fn timestamp_or_zero(value: Option<&Value>, tally: &mut ParseTally) -> Option<i64> {
    if value.and_then(Value::as_i64) == Some(0) {
        return None;
    }
    timestamp(value, tally)
}

fn flag(value: Option<&Value>, tally: &mut ParseTally) -> Option<bool> {
    match value.and_then(Value::as_bool) {
        Some(b) => Some(b),
        None => reject(value, tally),
    }
}

fn bounded_text(value: Option<&Value>, max_chars: usize, tally: &mut ParseTally) -> Option<String> {
    match value.and_then(Value::as_str).filter(|text| {
        !text.is_empty() && text.len() <= max_chars && !text.contains(char::is_control)
    }) {
        Some(text) => Some(text.to_owned()),
        None => reject(value, tally),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_give_their_result_or_their_error() {
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":1,"result":{"version":"0.8.0"}}"#),
            Ok(json!({"version":"0.8.0"}))
        );
        assert_eq!(
            parse_answer(
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#
            ),
            Err(RpcAnswerError::Rpc {
                code: METHOD_NOT_FOUND,
                message: "Method not found".into()
            })
        );
        assert!(matches!(
            parse_answer(b"<html>"),
            Err(RpcAnswerError::NotJson(_))
        ));
        assert_eq!(parse_answer(b"[1,2]"), Err(RpcAnswerError::NoResult));
        assert_eq!(
            parse_answer(br#"{"result":null}"#),
            Err(RpcAnswerError::NoResult)
        );
    }

    #[test]
    fn stats_are_read_flat_and_nested() {
        let mut tally = ParseTally::default();
        let flat = parse_stats(
            &json!({"active_streams":2,"cpu_percent":6.63,"current_index":14,"file_size":558000000000u64,
                    "last_updated":1764953798,"packets_received":7218,"packets_sent":5965,
                    "ram_total":12567232512u64,"ram_used":5399207936u64,"total_bytes":94633,
                    "total_pages":0,"uptime":154484}),
            &mut tally,
        );
        assert_eq!(flat.uptime, Some(154_484));
        assert_eq!(flat.ram_used, Some(5_399_207_936));
        assert_eq!(flat.last_updated, Some(1_764_953_798));
        let nested = parse_stats(
            &json!({"metadata":{"total_bytes":94633,"total_pages":0,"last_updated":0},
                    "stats":{"cpu_percent":2.5,"ram_used":100,"ram_total":400,"uptime":99,
                             "packets_received":1,"packets_sent":2,"active_streams":3},
                    "file_size":10}),
            &mut tally,
        );
        assert_eq!(nested.cpu_percent, Some(2.5));
        assert_eq!(nested.uptime, Some(99));
        assert_eq!(nested.total_bytes, Some(94_633));
        assert_eq!(nested.last_updated, None, "0 means not updated yet");
        assert_eq!(nested.file_size, Some(10));
        assert_eq!(tally, ParseTally::default());
    }

    #[test]
    fn pods_keep_good_fields_and_drop_bad_ones() {
        let mut tally = ParseTally::default();
        let pods = parse_pods(
            &json!({"pods":[
                {"address":"192.190.136.37:9001","is_public":true,"last_seen_timestamp":1765209387,
                 "pubkey":"Aj6A","rpc_port":6000,"storage_committed":183000000000u64,
                 "storage_usage_percent":0.0000517,"storage_used":94633,"uptime":1461,"version":"0.7.0-trynet"},
                {"address":"10.0.0.2:9001","is_public":null,"pubkey":null,"uptime":-5,
                 "storage_used":"lots","storage_usage_percent":250.0,"version":7},
                {"address":"10.0.0.3:9001","last_seen_timestamp":1765209000,"pubkey":"B","version":"0.6.0"},
                {"address":null,"pubkey":"C"},
                {"pubkey":"D"},
                {"address":"no-port"},
                "not an object"
            ],"total_count":7}),
            &mut tally,
        );
        assert_eq!(pods.len(), 3);
        assert_eq!(pods[0].storage_committed, Some(183_000_000_000));
        assert_eq!(pods[0].rpc_port, Some(6000));
        assert_eq!(pods[1].uptime, None);
        assert_eq!(pods[1].storage_used, None);
        assert_eq!(pods[1].storage_usage_percent, None);
        assert_eq!(pods[1].version, None);
        assert_eq!(pods[1].is_public, None);
        assert_eq!(pods[2].last_seen_timestamp, Some(1_765_209_000));
        assert_eq!(pods[2].storage_committed, None);
        // uptime -5, "lots", 250 %, version 7: four fields; nulls are unknown, not wrong.
        assert_eq!(tally.rejected_fields, 4);
        assert_eq!(tally.rejected_pods, 4);
    }

    #[test]
    fn absurd_values_and_non_answers_are_refused() {
        let mut tally = ParseTally::default();
        let pods = parse_pods(
            &json!([{"address":"1.2.3.4:1","storage_committed":1e300,"last_seen_timestamp":99,
                     "pubkey":"x".repeat(500)}]),
            &mut tally,
        );
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].storage_committed, None);
        assert_eq!(pods[0].last_seen_timestamp, None);
        assert_eq!(pods[0].pubkey, None);
        assert_eq!(tally.rejected_fields, 3);
        assert!(parse_pods(&json!("pods"), &mut tally).is_empty());
        assert!(parse_pods(&json!({"pods":{}}), &mut tally).is_empty());
        assert_eq!(
            parse_version(&json!({"version":"0.8.0"}), &mut tally).as_deref(),
            Some("0.8.0")
        );
        assert_eq!(parse_version(&json!([]), &mut tally), None);
    }
}
