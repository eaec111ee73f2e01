//! The streaming protocol's contract with clients: Motience's frames, string ids, refusals.

use serde_json::Value;

use super::*;

fn decode(text: &str) -> Result<ClientFrame, FrameRefusal> {
    ClientFrame::decode(text.as_bytes(), Encoding::Json)
}

#[test]
fn a_motience_data_frame_decodes_and_an_ack_encodes_as_motience_reads_it() {
    let frame = decode(r#"{"type":"data","payload":{"cpu":12.5}}"#).unwrap();
    assert_eq!(
        frame,
        ClientFrame::data(serde_json::json!({"cpu": 12.5}), None)
    );
    let ack = ServerFrame::Ack {
        subscriber_count: 1,
        seq: 7,
        id: None,
    };
    let text = String::from_utf8(encode_frame(&ack, Encoding::Json).unwrap()).unwrap();
    assert_eq!(text, r#"{"type":"ack","subscriberCount":1,"seq":7}"#);
}

#[test]
fn extra_fields_that_motience_devices_send_are_ignored() {
    let frame = decode(
        r#"{"type":"data","device_id":"pi-1","timestamp":"2025-01-01T00:00:00Z","payload":1}"#,
    )
    .unwrap();
    assert_eq!(frame, ClientFrame::data(serde_json::json!(1), None));
}

#[test]
fn null_payloads_differ_from_missing_ones() {
    let null = decode(r#"{"type":"data","payload":null}"#).unwrap();
    assert_eq!(null, ClientFrame::data(Value::Null, None));
    let missing = decode(r#"{"type":"data","id":"m1"}"#).unwrap_err();
    assert_eq!(missing.code, StreamErrorCode::BadFrame);
    assert_eq!(missing.id.as_deref(), Some("m1"));
}

#[test]
fn producer_ids_may_be_strings_of_digits() {
    assert_eq!(
        decode(r#"{"type":"subscribe","producer_id":"17"}"#).unwrap(),
        ClientFrame::subscribe(17)
    );
    assert_eq!(
        decode(r#"{"type":"unsubscribe","producer_id":17}"#).unwrap(),
        ClientFrame::unsubscribe(17)
    );
    for bad in [r#""17a""#, r#""""#, r#""-3""#, "1.5", "true"] {
        let refusal =
            decode(&format!(r#"{{"type":"subscribe","producer_id":{bad}}}"#)).unwrap_err();
        assert_eq!(refusal.code, StreamErrorCode::BadFrame, "{bad}");
        assert!(refusal.message.starts_with("producer_id:"), "{refusal:?}");
    }
    let body: SubscribeRequest = serde_json::from_str(r#"{"producer_id":"5"}"#).unwrap();
    assert_eq!(body.producer_id, 5);
}

#[test]
fn unknown_types_and_malformed_frames_get_different_codes_in_the_clients_terms() {
    let unknown = decode(r#"{"type":"telemetry","payload":1}"#).unwrap_err();
    assert_eq!(unknown.code, StreamErrorCode::UnknownType);
    let syntax = decode("{not json").unwrap_err();
    assert_eq!(syntax.code, StreamErrorCode::BadFrame);
    assert!(syntax.message.starts_with("not valid JSON"), "{syntax:?}");
    let array = decode("[1,2]").unwrap_err();
    assert_eq!(array.code, StreamErrorCode::BadFrame);
    assert!(!array.message.contains("WireFrame"), "{array:?}");
    let wrong_type = decode(r#"{"type":"data","payload":1,"id":5}"#).unwrap_err();
    assert!(wrong_type.message.starts_with("id:"), "{wrong_type:?}");
    let untyped = decode(r#"{"payload":1}"#).unwrap_err();
    assert_eq!(untyped.code, StreamErrorCode::BadFrame);
    let long_id = decode(&format!(
        r#"{{"type":"data","payload":1,"id":"{}"}}"#,
        "x".repeat(129)
    ))
    .unwrap_err();
    assert_eq!(long_id.code, StreamErrorCode::BadFrame);
}

#[test]
fn messagepack_frames_are_named_maps_of_the_same_shape() {
    let frame = ClientFrame::data(serde_json::json!({"t": 21}), Some("m1".into()));
    let bytes = frame.encode(Encoding::MessagePack).unwrap();
    // A map (0x8N) whose first key is "type".
    assert_eq!(bytes[0] & 0xf0, 0x80);
    assert_eq!(
        ClientFrame::decode(&bytes, Encoding::MessagePack).unwrap(),
        frame
    );
    let refresh = ClientFrame::Refresh {
        token: "abc".into(),
    };
    let text = String::from_utf8(refresh.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(text, r#"{"type":"refresh","token":"abc"}"#);
    assert_eq!(decode(&text).unwrap(), refresh);
}

#[test]
fn rate_limited_errors_carry_a_retry_hint() {
    let frame = ServerFrame::Error {
        code: "rate_limited".into(),
        message: "slow down".into(),
        id: None,
        retry_after_ms: Some(250),
    };
    let text = String::from_utf8(encode_frame(&frame, Encoding::Json).unwrap()).unwrap();
    assert!(text.contains(r#""retry_after_ms":250"#), "{text}");
}
