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
