//! The pRPC client: one seed's three calls, concurrently, each bounded by a timeout and a size
//! cap on the answer.

use std::time::{Duration, Instant};

use nodegrid_protocol::prpc::{
    self, METHOD_GET_PODS, METHOD_GET_PODS_WITH_STATS, METHOD_GET_STATS, METHOD_GET_VERSION,
    METHOD_NOT_FOUND, ParseTally, RpcAnswerError, RpcRequest,
};
use serde_json::Value;

use super::Seed;
use super::background;
use super::cycle::SeedPoll;

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the seed: {0}")]
    Transport(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Answer(#[from] RpcAnswerError),
    /// The thread that reads answers could not be started, or stopped while reading.
    #[error("the answer could not be read")]
    Unread,
}

impl CallError {
    /// A short, stable name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Transport(_) => "transport",
            CallError::Status(_) => "http_status",
            CallError::TooLarge(_) => "too_large",
            CallError::Answer(RpcAnswerError::NotJson(_)) => "not_json",
            CallError::Answer(RpcAnswerError::Rpc { .. }) => "rpc_error",
            CallError::Answer(RpcAnswerError::NoResult) => "no_result",
            CallError::Unread => "unread",
        }
    }
}

/// The HTTP client could not be built (its TLS or resolver setup failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the pRPC client: {0}")]
pub struct ClientSetupError(#[from] reqwest::Error);

#[derive(Clone)]
pub struct PrpcClient {
    http: reqwest::Client,
    timeout: Duration,
    max_answer_bytes: usize,
}

impl PrpcClient {
    pub fn new(timeout: Duration, max_answer_bytes: usize) -> Result<PrpcClient, ClientSetupError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(PrpcClient {
            http,
            timeout,
            max_answer_bytes,
        })
    }

    /// One JSON-RPC call's answer, unread: the body, or why there is none. The whole call
    /// (connect, send, read) is bounded by the timeout; the body is read in chunks and refused
    /// past the cap.
    async fn fetch(&self, seed: &Seed, method: &str) -> Result<Vec<u8>, CallError> {
        let request = RpcRequest::new(method, 1);
        let work = async {
            let mut response = self
                .http
                .post(seed.rpc_url())
                .json(&request)
                .send()
                .await
                .map_err(|error| CallError::Transport(error.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(CallError::Status(response.status().as_u16()));
            }
            // Sized once from the stated length (a pod list is megabytes: growing by doubling
            // copies it twice over); a stated length past the cap is refused unread.
            let stated = response.content_length().unwrap_or(0);
            if stated > self.max_answer_bytes as u64 {
                return Err(CallError::TooLarge(self.max_answer_bytes));
            }
            let mut body = Vec::with_capacity(stated as usize);
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| CallError::Transport(error.without_url().to_string()))?
            {
                if body.len() + chunk.len() > self.max_answer_bytes {
                    return Err(CallError::TooLarge(self.max_answer_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// The seed's version, stats and pods, the three calls at once; `get-pods` when the seed
    /// does not know `get-pods-with-stats`. The poll succeeds when the pods could be had. The
    /// answers (a pod list is megabytes of JSON) are read on a background thread, below the
    /// threads that serve requests.
    pub async fn poll(
        &self,
        seed: &Seed,
        polled_at: i64,
    ) -> (SeedPoll, Vec<(&'static str, CallError)>) {
        let started = Instant::now();
        let (version, stats, pods) = tokio::join!(
            self.fetch(seed, METHOD_GET_VERSION),
            self.fetch(seed, METHOD_GET_STATS),
            self.fetch(seed, METHOD_GET_PODS_WITH_STATS),
        );
        let read = background::run("pnode-read", move || {
            let mut tally = ParseTally::default();
            let version =
                read_answer(version).map(|result| prpc::parse_version(&result, &mut tally));
            let stats = read_answer(stats).map(|result| prpc::parse_stats(&result, &mut tally));
            let pods = read_answer(pods).map(|result| prpc::parse_pods(&result, &mut tally));
            (version, stats, pods, tally)
        })
        .await;
        let (version, stats, pods, mut tally) = read.unwrap_or_else(|| {
            (
                Err(CallError::Unread),
                Err(CallError::Unread),
                Err(CallError::Unread),
                ParseTally::default(),
            )
        });
        let (pods, pods_method) = match pods {
            Err(CallError::Answer(RpcAnswerError::Rpc { code, .. }))
                if code == METHOD_NOT_FOUND =>
            {
                let body = self.fetch(seed, METHOD_GET_PODS).await;
                let read = background::run("pnode-read", move || {
                    let mut tally = ParseTally::default();
                    let pods =
                        read_answer(body).map(|result| prpc::parse_pods(&result, &mut tally));
                    (pods, tally)
                })
                .await;
                let pods = match read {
                    Some((pods, read_tally)) => {
                        tally.add(read_tally);
                        pods
                    }
                    None => Err(CallError::Unread),
                };
                (pods, METHOD_GET_PODS)
            }
            other => (other, METHOD_GET_PODS_WITH_STATS),
        };
        let mut failures = Vec::new();
        let version = match version {
            Ok(version) => version,
            Err(error) => {
                failures.push((METHOD_GET_VERSION, error));
                None
            }
        };
        let stats = match stats {
            Ok(stats) => Some(stats),
            Err(error) => {
                failures.push((METHOD_GET_STATS, error));
                None
            }
        };
        let (pods, error) = match pods {
            Ok(pods) => (Some(pods), None),
            Err(error) => {
                let message = format!("{pods_method}: {error}");
                failures.push((pods_method, error));
                (None, Some(message))
            }
        };
        let poll = SeedPoll {
            seed: seed.label(),
            version,
            stats,
            pods_method: pods.is_some().then(|| pods_method.to_owned()),
            pods,
            error,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            polled_at,
            tally,
        };
        (poll, failures)
    }
}

/// A call's `result`, read from its body.
fn read_answer(body: Result<Vec<u8>, CallError>) -> Result<Value, CallError> {
    Ok(prpc::parse_answer(&body?)?)
}
