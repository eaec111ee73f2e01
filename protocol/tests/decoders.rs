//! Every decoder of data from outside the process, fed deterministic mutations of a seed corpus
//! (`protocol/fuzz-corpus/`): it may refuse, it may not panic, and what it accepts survives a
//! round trip. Bounded by count (`NODEGRID_FUZZ_ITERATIONS` mutants per seed, 1,500 by
//! default), so it runs with the ordinary tests; raise the count for a longer search.

#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use nodegrid_protocol::prpc::{ParseTally, parse_answer, parse_pods, parse_stats, parse_version};
use nodegrid_protocol::registry::{LabelSelector, NodeEvent, grpc};
use nodegrid_protocol::stream::ClientFrame;
use nodegrid_protocol::stream::wire::Encoding;
use prost::Message as _;

/// xorshift64*: deterministic, dependency-free, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn iterations() -> usize {
    std::env::var("NODEGRID_FUZZ_ITERATIONS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_500)
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

fn read_all(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut found: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| wanted(&entry.file_name().to_string_lossy()))
                .map(|entry| std::fs::read(entry.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    read_all(&corpus_dir().join(target), |_| true)
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let prefix = format!("{target}-");
    read_all(&corpus_dir().join("regressions"), |name| {
        name.starts_with(&prefix)
    })
}

/// Bytes decoders tend to trip on.
const INTERESTING: [u8; 13] = [
    0, 0xff, b'"', b'{', b'}', b'[', b']', b'\\', b'0', b'-', 0xc0, 0xdc, 0xdf,
];

/// One mutant of `seed` (sometimes spliced with `other`).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(bytes.len() + 1);
                bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes.remove(at);
            }
            3 => bytes.truncate(rng.below(bytes.len() + 1)),
            4 if !bytes.is_empty() => {
                let from = rng.below(bytes.len());
                let to = (from + rng.below(16)).min(bytes.len());
                let chunk = bytes[from..to].to_vec();
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(bytes.len() + 1);
                let from = rng.below(other.len());
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[from..]);
            }
            _ if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            _ => bytes.push(rng.next() as u8),
        }
    }
    bytes
}

/// Runs `check` on every regression and on mutants of every seed; a panic names the input.
fn fuzz(target: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    let run = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let hex: String = input.iter().map(|byte| format!("{byte:02x}")).collect();
            panic!(
                "{target}: a decoder panicked on this input (save it under fuzz-corpus/regressions/): {hex}"
            );
        }
    };
    for input in regressions(target) {
        run(&input);
    }
    for (index, seed) in seeds.iter().enumerate() {
        run(seed);
        let other = &seeds[(index + 1) % seeds.len()];
        for _ in 0..iterations() {
            run(&mutate(&mut rng, seed, other));
        }
    }
}

fn client_frames(encoding: Encoding) -> impl Fn(&[u8]) {
    move |bytes: &[u8]| {
        if let Ok(frame) = ClientFrame::decode(bytes, encoding) {
            let again = ClientFrame::decode(&frame.encode(encoding).unwrap(), encoding).unwrap();
            assert_eq!(again, frame, "a decoded frame survives a round trip");
        }
    }
}

#[test]
fn client_frames_in_json_never_panic_and_round_trip() {
    fuzz(
        "client-json",
        &seeds("client-json"),
        client_frames(Encoding::Json),
    );
}

#[test]
fn client_frames_in_messagepack_never_panic_and_round_trip() {
    let seeds: Vec<Vec<u8>> = seeds("client-json")
        .iter()
        .map(|json| {
            ClientFrame::decode(json, Encoding::Json)
                .unwrap()
                .encode(Encoding::MessagePack)
                .unwrap()
        })
        .collect();
    fuzz(
        "client-msgpack",
        &seeds,
        client_frames(Encoding::MessagePack),
    );
}

#[test]
fn prpc_answers_never_panic() {
    fuzz("prpc", &seeds("prpc"), |bytes| {
        if let Ok(result) = parse_answer(bytes) {
            let mut tally = ParseTally::default();
            let _ = parse_version(&result, &mut tally);
            let _ = parse_stats(&result, &mut tally);
            let _ = parse_pods(&result, &mut tally);
        }
    });
}

#[test]
fn registry_events_never_panic_in_json_or_protobuf() {
    fuzz("node-event", &seeds("node-event"), |bytes| {
        if let Ok(event) = serde_json::from_slice::<NodeEvent>(bytes) {
            let wire = grpc::NodeEvent::from(&event);
            let back = NodeEvent::try_from(&wire).unwrap();
            assert_eq!(back.event_id, event.event_id);
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = LabelSelector::parse(text);
        }
    });
    let protobuf: Vec<Vec<u8>> = seeds("node-event")
        .iter()
        .map(|json| {
            let event: NodeEvent = serde_json::from_slice(json).unwrap();
            grpc::NodeEvent::from(&event).encode_to_vec()
        })
        .collect();
    fuzz("node-protobuf", &protobuf, |bytes| {
        if let Ok(event) = grpc::NodeEvent::decode(bytes) {
            let _ = NodeEvent::try_from(&event);
        }
    });
}

/// Signed documents a child reads from its mother: a lease, an answer, a pushed frame, a
/// session token. The seeds are valid ones signed with a fixed key; checking a mutant may
/// refuse it (it nearly always does: the signature covers every byte of the signed text) but
/// never panic, and nothing whose signed text changed is accepted.
#[test]
fn leases_answers_frames_and_sessions_never_panic() {
    use ed25519_dalek::SigningKey;
    use nodegrid_protocol::children::control::ControlFrame;
    use nodegrid_protocol::children::lease::{Expectation, PublicKeyView, verify_lease};
    use nodegrid_protocol::children::signing::{encode_public_key, key_id, sign_document};
    use nodegrid_protocol::children::users::{session_token, verify_answer, verify_session};

    let key = SigningKey::from_bytes(&[11; 32]);
    let id = key_id(&key.verifying_key());
    let keys = vec![PublicKeyView {
        key_id: id.clone(),
        algorithm: "ed25519".into(),
        public_key: encode_public_key(&key.verifying_key()),
        current: true,
    }];
    let child = uuid::Uuid::from_u128(5);
    let lease = format!(
        r#"{{"child_id":"{child}","seq":3,"issued_at":"2026-01-01T00:00:00Z","valid_until":"2999-01-01T00:00:00Z","nonce":"n-0123456789abcdef","status":"active","version_status":"ok","min_version":null,"latest_version":null,"maintenance":{{"enabled":false,"message":null,"until":null}},"license":{{"plan":"p","limits":{{"max_children":1,"max_users":1}},"features":[],"expires_at":null,"status":"active"}},"blocked_users_version":0,"config":{{}},"config_hash":"h","key_id":"{id}","heartbeat_interval_s":30}}"#
    );
    let signed_lease = format!(
        r#"{{"lease":{lease},"signature":"{}"}}"#,
        sign_document(&key, lease.as_bytes())
    );
    let frame = format!(
        r#"{{"child_id":"{child}","issued_at":"2026-01-01T00:00:00Z","type":"block","user_id":7,"blocked_users_version":2}}"#
    );
    let signed_frame = format!(
        r#"{{"payload":{frame},"key_id":"{id}","signature":"{}"}}"#,
        sign_document(&key, frame.as_bytes())
    );
    let claims = format!(
        r#"{{"child_id":"{child}","client_id":1,"user":{{"id":7,"username":"amy","role":"consumer"}},"issued_at":"2026-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z","key_id":"{id}"}}"#
    );
    let token = session_token(&claims, &sign_document(&key, claims.as_bytes()));
    let expectation = Expectation {
        child_id: child,
        nonce: None,
        last_seq: 0,
        now: chrono::Utc::now(),
    };
    // The seeds themselves verify.
    assert!(verify_lease(signed_lease.as_bytes(), &keys, &expectation).is_ok());
    assert!(verify_answer::<ControlFrame>(signed_frame.as_bytes(), &keys).is_ok());
    assert!(verify_session(&token, &keys, child, chrono::Utc::now()).is_ok());
    let seeds = vec![
        signed_lease.clone().into_bytes(),
        signed_frame.clone().into_bytes(),
        token.clone().into_bytes(),
    ];
    fuzz("signed", &seeds, |bytes| {
        if verify_lease(bytes, &keys, &expectation).is_ok() {
            // Whitespace around the lease is not signed; the lease is.
            let text = String::from_utf8_lossy(bytes);
            assert!(text.contains(&lease), "a changed lease verified: {text}");
        }
        if verify_answer::<ControlFrame>(bytes, &keys).is_ok() {
            // Whitespace outside the payload is not signed; the payload is.
            let text = String::from_utf8_lossy(bytes);
            assert!(text.contains(&frame), "a changed payload verified: {text}");
        }
        if let Ok(text) = std::str::from_utf8(bytes)
            && verify_session(text, &keys, child, chrono::Utc::now()).is_ok()
        {
            assert_eq!(text, token, "only the signed session verifies");
        }
    });
}
