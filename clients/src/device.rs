//! `nodegrid device`: the agent an IoT device runs.
//!
//! It logs in (or uses a given token), refreshes the access token before it expires, opens the
//! producer socket and sends one reading of the machine (CPU, load, memory, swap, disk, network,
//! uptime, temperature where there is a sensor) per interval. Readings wait in a bounded buffer
//! until the server acks them: while the socket is down they accumulate (the oldest dropped
//! first, and the count of dropped readings travels in the next reading), and on reconnect they
//! are sent again in order. Reconnects back off exponentially with full jitter.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use nodegrid_protocol::auth::{LoginRequest, RefreshRequest, TokenResponse};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::stream::{ClientFrame, Encoding, encode_frame};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How readings are encoded on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceEncoding {
    #[default]
    Json,
    Msgpack,
}

/// The options of `nodegrid device`. Each has a flag, a `NODEGRID_…` variable and a key in the
/// `--config` TOML file; Motience's plugin variables (`DEVICE_ID`, `USERNAME`, `PASSWORD`,
/// `AUTH_URL`, `WEBSOCKET_URL`, `SEND_INTERVAL_SECS`) are read when ours are not set.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOptions {
    /// TOML file with any of these options.
    #[arg(long, env = "NODEGRID_DEVICE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This device's name, sent in every reading [default: the host name].
    #[arg(long, env = "NODEGRID_DEVICE_ID")]
    pub device_id: Option<String>,
    /// The producer account to log in with.
    #[arg(long, env = "NODEGRID_DEVICE_USERNAME")]
    pub username: Option<String>,
    /// Its password (prefer the environment variable or the file to the flag).
    #[arg(long, env = "NODEGRID_DEVICE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// An access token to use instead of logging in (it is not refreshed).
    #[arg(long, env = "NODEGRID_DEVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's base URL, or its login URL [default: http://127.0.0.1:8080].
    #[arg(long, env = "NODEGRID_AUTH_URL")]
    pub auth_url: Option<String>,
    /// The producer socket [default: ws://127.0.0.1:8080/producer].
    #[arg(long, env = "NODEGRID_WEBSOCKET_URL")]
    pub websocket_url: Option<String>,
    /// Seconds between readings [default: 5].
    #[arg(long, env = "NODEGRID_SEND_INTERVAL_SECS")]
    pub send_interval_secs: Option<f64>,
    /// JSON text or MessagePack binary frames [default: json].
    #[arg(long, env = "NODEGRID_DEVICE_ENCODING", value_enum)]
    pub encoding: Option<DeviceEncoding>,
    /// Send one reading, wait for its ack, and exit.
    #[arg(long)]
    #[serde(default)]
    pub once: bool,
    /// First reconnect delay, in milliseconds [default: 500].
    #[arg(long, env = "NODEGRID_DEVICE_BACKOFF_INITIAL_MS")]
    pub backoff_initial_ms: Option<u64>,
    /// Longest reconnect delay, in milliseconds [default: 30000].
    #[arg(long, env = "NODEGRID_DEVICE_BACKOFF_MAX_MS")]
    pub backoff_max_ms: Option<u64>,
    /// Readings kept while they wait for an ack [default: 1000].
    #[arg(long, env = "NODEGRID_DEVICE_BUFFER_MESSAGES")]
    pub buffer_messages: Option<usize>,
    /// Bytes of the same [default: 1048576].
    #[arg(long, env = "NODEGRID_DEVICE_BUFFER_BYTES")]
    pub buffer_bytes: Option<usize>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("the server refused the credentials ({0})")]
    BadCredentials(String),
    #[error("the server refused this device ({0})")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl DeviceError {
    /// 2 for settings, 3 when the server says no (credentials, role, block), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DeviceError::Config(_) => 2,
            DeviceError::BadCredentials(_) | DeviceError::Refused(_) => 3,
            DeviceError::Failed(_) => 1,
        }
    }
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    pub device_id: String,
    pub credentials: Credentials,
    pub auth_base: String,
    pub websocket_url: String,
    pub interval: Duration,
    pub encoding: Encoding,
    pub once: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub buffer_messages: usize,
    pub buffer_bytes: usize,
}

#[derive(Clone)]
pub enum Credentials {
    Login { username: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Login { username, .. } => write!(f, "Login({username}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

fn motience(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl DeviceOptions {
    pub fn resolve(self) -> Result<DeviceSettings, DeviceError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| DeviceError::Config(format!("{}: {error}", path.display())))?;
                toml::from_str::<DeviceOptions>(&text)
                    .map_err(|error| DeviceError::Config(format!("{}: {error}", path.display())))?
            }
            None => DeviceOptions::default(),
        };
        let device_id = self
            .device_id
            .or_else(|| motience("DEVICE_ID"))
            .or(file.device_id)
            .or_else(|| sysinfo::System::host_name().ok())
            .unwrap_or_else(|| "device".to_owned());
        let token = self.token.or(file.token);
        let username = self
            .username
            .or_else(|| motience("USERNAME"))
            .or(file.username);
        let password = self
            .password
            .or_else(|| motience("PASSWORD"))
            .or(file.password);
        let credentials = match (token, username, password) {
            (Some(token), _, _) => Credentials::Token(token),
            (None, Some(username), Some(password)) => Credentials::Login { username, password },
            _ => {
                return Err(DeviceError::Config(
                    "give --token, or --username and --password (or USERNAME and PASSWORD)".into(),
                ));
            }
        };
        let auth_url = self
            .auth_url
            .or_else(|| motience("AUTH_URL"))
            .or(file.auth_url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let interval = self
            .send_interval_secs
            .or_else(|| motience("SEND_INTERVAL_SECS").and_then(|text| text.parse().ok()))
            .or(file.send_interval_secs)
            .unwrap_or(5.0);
        if !(0.01..=86_400.0).contains(&interval) {
            return Err(DeviceError::Config(
                "the send interval must be 0.01 to 86400 seconds".into(),
            ));
        }
        Ok(DeviceSettings {
            device_id,
            credentials,
            auth_base: auth_base(&auth_url),
            websocket_url: self
                .websocket_url
                .or_else(|| motience("WEBSOCKET_URL"))
                .or(file.websocket_url)
                .unwrap_or_else(|| "ws://127.0.0.1:8080/producer".to_owned()),
            interval: Duration::from_secs_f64(interval),
            encoding: match self.encoding.or(file.encoding).unwrap_or_default() {
                DeviceEncoding::Json => Encoding::Json,
                DeviceEncoding::Msgpack => Encoding::MessagePack,
            },
            once: self.once || file.once,
            backoff_initial: Duration::from_millis(
                self.backoff_initial_ms
                    .or(file.backoff_initial_ms)
                    .unwrap_or(500)
                    .max(1),
            ),
            backoff_max: Duration::from_millis(
                self.backoff_max_ms
                    .or(file.backoff_max_ms)
                    .unwrap_or(30_000)
                    .max(1),
            ),
            buffer_messages: self
                .buffer_messages
                .or(file.buffer_messages)
                .unwrap_or(1_000)
                .max(1),
            buffer_bytes: self
                .buffer_bytes
                .or(file.buffer_bytes)
                .unwrap_or(1024 * 1024)
                .max(1024),
        })
    }
}

/// `http://host:8080`, `http://host:8080/api/auth` and `http://host:8080/api/auth/login` all
/// mean the same server.
fn auth_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/login").unwrap_or(url);
    let url = url.strip_suffix("/api/auth").unwrap_or(url);
    url.to_owned()
}

/// The access token and how to renew it.
struct Session {
    access_token: String,
    refresh_token: Option<String>,
    renew_at: Option<Instant>,
}

async fn post_json<T: serde::Serialize>(
    http: &reqwest::Client,
    url: &str,
    body: &T,
) -> Result<Result<TokenResponse, (u16, String)>, String> {
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let status = response.status().as_u16();
    if status == 200 {
        let tokens = response
            .json::<TokenResponse>()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        return Ok(Ok(tokens));
    }
    let code = response
        .json::<ErrorBody>()
        .await
        .map(|body| body.code)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    Ok(Err((status, code)))
}

impl Session {
    fn from_tokens(tokens: TokenResponse) -> Session {
        // Renew at four fifths of the lifetime, so a slow network still has time.
        let lifetime = Duration::from_secs(tokens.expires_in.max(1));
        Session {
            access_token: tokens.access_token,
            refresh_token: Some(tokens.refresh_token),
            renew_at: Some(Instant::now() + lifetime.mul_f64(0.8)),
        }
    }

    /// Logs in, retrying network failures with backoff; credentials the server refuses end it.
    async fn open(
        http: &reqwest::Client,
        settings: &DeviceSettings,
        backoff: &mut Backoff,
    ) -> Result<Session, DeviceError> {
        let (username, password) = match &settings.credentials {
            Credentials::Token(token) => {
                return Ok(Session {
                    access_token: token.clone(),
                    refresh_token: None,
                    renew_at: None,
                });
            }
            Credentials::Login { username, password } => (username, password),
        };
        let url = format!("{}/api/auth/login", settings.auth_base);
        loop {
            let request = LoginRequest {
                username: username.clone(),
                password: password.clone(),
            };
            match post_json(http, &url, &request).await {
                Ok(Ok(tokens)) => {
                    tracing::info!(user_id = tokens.user_id, "logged in");
                    backoff.reset();
                    return Ok(Session::from_tokens(tokens));
                }
                Ok(Err((401, code))) => return Err(DeviceError::BadCredentials(code)),
                Ok(Err((403, code))) => return Err(DeviceError::Refused(code)),
                Ok(Err((status, code))) => tracing::warn!(status, code, "login failed"),
                Err(error) => tracing::warn!(%error, "login failed"),
            }
            if settings.once {
                return Err(DeviceError::Failed("cannot log in".into()));
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Renews the access token if it is due: by refresh token, else by logging in again.
    async fn renew_if_due(
        &mut self,
        http: &reqwest::Client,
        settings: &DeviceSettings,
        backoff: &mut Backoff,
    ) -> Result<(), DeviceError> {
        if self.renew_at.is_none_or(|at| Instant::now() < at) {
            return Ok(());
        }
        if let Some(refresh_token) = self.refresh_token.take() {
            let url = format!("{}/api/auth/refresh", settings.auth_base);
            if let Ok(Ok(tokens)) = post_json(http, &url, &RefreshRequest { refresh_token }).await {
                tracing::info!("access token refreshed");
                *self = Session::from_tokens(tokens);
                return Ok(());
            }
            tracing::warn!("refresh failed; logging in again");
        }
        *self = Session::open(http, settings, backoff).await?;
        Ok(())
    }
}

/// Exponential backoff with full jitter: each delay is uniform in [0, min(max, initial × 2ⁿ)].
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt.min(20)))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Readings waiting for their ack, oldest first.
struct Backlog {
    /// This run's prefix of reading ids.
    run_id: String,
    readings: VecDeque<Pending>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    /// Readings dropped since the last reading that reported drops.
    dropped: u64,
    /// How many of the oldest readings were sent on the current socket.
    sent: usize,
}

struct Pending {
    number: u64,
    reading: Value,
    frame: Vec<u8>,
    /// The drop count this reading carries, once it was sent with one.
    reports_dropped: u64,
}

impl Backlog {
    /// Adds a reading; when full, drops the oldest. A dropped reading that carried a drop count
    /// gives it back to the tally, so the count reaches the server with the next reading that
    /// is sent.
    fn push(&mut self, number: u64, reading: Value, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.readings.push_back(Pending {
            number,
            reading,
            frame,
            reports_dropped: 0,
        });
        while self.readings.len() > self.max_messages || self.bytes > self.max_bytes {
            let Some(oldest) = self.readings.pop_front() else {
                break;
            };
            self.bytes -= oldest.frame.len();
            self.sent = self.sent.saturating_sub(1);
            self.dropped += 1 + oldest.reports_dropped;
        }
    }

    /// The frame of the `index`th reading, ready to send: the first reading sent after drops
    /// carries their count (`"dropped": n`).
    fn frame_to_send(&mut self, index: usize, encoding: Encoding) -> Result<Vec<u8>, DeviceError> {
        let dropped = self.dropped;
        let Some(pending) = self.readings.get_mut(index) else {
            return Err(DeviceError::Failed("no such reading".into()));
        };
        if dropped > 0 && pending.reports_dropped == 0 {
            pending.reports_dropped = dropped;
            pending.reading["dropped"] = json!(dropped);
            let id = format!("{}-{}", self.run_id, pending.number);
            let frame = ClientFrame::data(pending.reading.clone(), Some(id));
            let bytes = encode_frame(&frame, encoding).map_err(|error| {
                DeviceError::Failed(format!("cannot encode a reading: {error}"))
            })?;
            self.bytes = self.bytes - pending.frame.len() + bytes.len();
            pending.frame = bytes;
            self.dropped = 0;
        }
        Ok(pending.frame.clone())
    }

    /// The server acked reading `number`: it and everything older are done (acks come in
    /// order).
    fn acked(&mut self, number: u64) {
        while self
            .readings
            .front()
            .is_some_and(|pending| pending.number <= number)
        {
            if let Some(done) = self.readings.pop_front() {
                self.bytes -= done.frame.len();
                self.sent = self.sent.saturating_sub(1);
            }
        }
    }
}

/// Samples the machine.
struct Sampler {
    system: sysinfo::System,
    disks: sysinfo::Disks,
    networks: sysinfo::Networks,
    components: sysinfo::Components,
}

impl Sampler {
    fn new() -> Result<Sampler, DeviceError> {
        let error = |what: &str, error: sysinfo::Error| {
            DeviceError::Failed(format!("cannot read the {what}: {error}"))
        };
        Ok(Sampler {
            system: sysinfo::System::new().map_err(|e| error("system", e))?,
            disks: sysinfo::Disks::new_with_refreshed_list().map_err(|e| error("disks", e))?,
            networks: sysinfo::Networks::new_with_refreshed_list()
                .map_err(|e| error("network interfaces", e))?,
            components: sysinfo::Components::new_with_refreshed_list()
                .map_err(|e| error("sensors", e))?,
        })
    }

    fn reading(&mut self, device_id: &str) -> Value {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        self.components.refresh(true);
        let load = sysinfo::System::load_average().ok();
        let (received, transmitted) = (&self.networks)
            .into_iter()
            .fold((0u64, 0u64), |(rx, tx), (_, data)| {
                (rx + data.total_received(), tx + data.total_transmitted())
            });
        let temperature = (&self.components)
            .into_iter()
            .filter_map(|component| component.temperature())
            .fold(None, |max: Option<f32>, value| {
                Some(max.map_or(value, |m| m.max(value)))
            });
        let mut reading = json!({
            "device_id": device_id,
            "timestamp": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as u64)
                .unwrap_or(0),
            "cpu_percent": self.system.global_cpu_usage(),
            "load": load.map(|load| json!({"one": load.one, "five": load.five, "fifteen": load.fifteen})),
            "memory": {"total": self.system.total_memory(), "used": self.system.used_memory()},
            "swap": {"total": self.system.total_swap(), "used": self.system.used_swap()},
            "disk": {
                "total": (&self.disks).into_iter().map(|disk| disk.total_space()).sum::<u64>(),
                "available": (&self.disks).into_iter().map(|disk| disk.available_space()).sum::<u64>(),
            },
            "network": {"received_bytes": received, "transmitted_bytes": transmitted},
            "uptime_secs": sysinfo::System::uptime().ok(),
        });
        if let Some(temperature) = temperature {
            reading["temperature_c"] = json!(temperature);
        }
        reading
    }
}

/// Runs the agent until `--once` is done, or the server refuses it.
pub async fn run(settings: DeviceSettings) -> Result<(), DeviceError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| DeviceError::Failed(error.to_string()))?;
    let mut sampler = Sampler::new()?;
    let mut backoff = Backoff::new(settings.backoff_initial, settings.backoff_max);
    let mut session = Session::open(&http, &settings, &mut backoff).await?;
    // Ids are unique across runs of the agent (the server remembers recent ids to drop resends):
    // this run's start time, then the reading's number.
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros())
            .unwrap_or(0)
    );
    let mut backlog = Backlog {
        run_id: run_id.clone(),
        readings: VecDeque::new(),
        bytes: 0,
        max_messages: settings.buffer_messages,
        max_bytes: settings.buffer_bytes,
        dropped: 0,
        sent: 0,
    };
    let mut number = 0u64;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = |backlog: &mut Backlog, sampler: &mut Sampler| -> Result<(), DeviceError> {
        number += 1;
        let reading = sampler.reading(&settings.device_id);
        let frame = ClientFrame::data(reading.clone(), Some(format!("{run_id}-{number}")));
        let bytes = encode_frame(&frame, settings.encoding)
            .map_err(|error| DeviceError::Failed(format!("cannot encode a reading: {error}")))?;
        backlog.push(number, reading, bytes);
        Ok(())
    };

    loop {
        session.renew_if_due(&http, &settings, &mut backoff).await?;
        let url = format!("{}?token={}", settings.websocket_url, session.access_token);
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => {
                tracing::info!(url = %settings.websocket_url, "connected");
                backoff.reset();
                backlog.sent = 0;
                let mut renewal = Renewal {
                    http: &http,
                    session: &mut session,
                    backoff: &mut backoff,
                };
                let outcome = stream(
                    socket,
                    &settings,
                    &mut backlog,
                    &mut ticker,
                    &mut sampler,
                    &mut sample,
                    &mut renewal,
                )
                .await?;
                if outcome == Streamed::Done {
                    return Ok(());
                }
                tracing::warn!(buffered = backlog.readings.len(), "disconnected");
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                match response.status().as_u16() {
                    401 => {
                        tracing::warn!("the server refused the token; logging in again");
                        session.renew_at = Some(Instant::now());
                    }
                    403 => {
                        return Err(DeviceError::Refused("not a producer, or blocked".into()));
                    }
                    status => tracing::warn!(status, "socket upgrade refused"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot connect"),
        }
        if settings.once {
            return Err(DeviceError::Failed("the reading was not acked".into()));
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        let pause = tokio::time::sleep(delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = ticker.tick() => sample(&mut backlog, &mut sampler)?,
            }
        }
    }
}

/// What `stream` needs to renew the access token while the socket is open, so that the refresh
/// chain never lapses on a long-lived connection.
struct Renewal<'a> {
    http: &'a reqwest::Client,
    session: &'a mut Session,
    backoff: &'a mut Backoff,
}

#[derive(Debug, PartialEq, Eq)]
enum Streamed {
    Done,
    Disconnected,
}

async fn stream<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    settings: &DeviceSettings,
    backlog: &mut Backlog,
    ticker: &mut tokio::time::Interval,
    sampler: &mut Sampler,
    sample: &mut impl FnMut(&mut Backlog, &mut Sampler) -> Result<(), DeviceError>,
    renewal: &mut Renewal<'_>,
) -> Result<Streamed, DeviceError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    loop {
        // Everything not yet sent on this socket goes out, oldest first.
        while backlog.sent < backlog.readings.len() {
            let frame = backlog.frame_to_send(backlog.sent, settings.encoding)?;
            let message = match settings.encoding {
                Encoding::Json => match String::from_utf8(frame) {
                    Ok(text) => Message::Text(text.into()),
                    Err(_) => return Err(DeviceError::Failed("a reading is not UTF-8".into())),
                },
                Encoding::MessagePack => Message::Binary(frame.into()),
            };
            if sink.send(message).await.is_err() {
                return Ok(Streamed::Disconnected);
            }
            backlog.sent += 1;
        }
        if settings.once && backlog.readings.is_empty() && backlog.sent == 0 {
            sample(backlog, sampler)?;
            continue;
        }
        let renew_at = renewal.session.renew_at.map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = ticker.tick(), if !settings.once => sample(backlog, sampler)?,
            _ = sleep_until_some(renew_at) => {
                renewal
                    .session
                    .renew_if_due(renewal.http, settings, renewal.backoff)
                    .await?;
                // The open socket lives on the new token, not until the old one expires.
                let refresh = ClientFrame::Refresh {
                    token: renewal.session.access_token.clone(),
                };
                let frame = refresh
                    .encode(settings.encoding)
                    .map_err(|error| DeviceError::Failed(error.to_string()))?;
                let message = match settings.encoding {
                    Encoding::Json => Message::Text(String::from_utf8_lossy(&frame).into_owned().into()),
                    Encoding::MessagePack => Message::Binary(frame.into()),
                };
                if sink.send(message).await.is_err() {
                    return Ok(Streamed::Disconnected);
                }
            }
            message = incoming.next() => {
                let frame = match message {
                    Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(&text).ok(),
                    Some(Ok(Message::Binary(bytes))) => rmp_serde::from_slice::<Value>(&bytes).ok(),
                    Some(Ok(Message::Close(close))) => {
                        tracing::warn!(?close, "the server closed the socket");
                        if close.is_some_and(|close| u16::from(close.code) == 4003) {
                            return Err(DeviceError::Refused("user_blocked".into()));
                        }
                        return Ok(Streamed::Disconnected);
                    }
                    Some(Ok(_)) => None,
                    Some(Err(_)) | None => return Ok(Streamed::Disconnected),
                };
                let Some(frame) = frame else { continue };
                let id = frame["id"]
                    .as_str()
                    .and_then(|id| id.rsplit_once('-'))
                    .and_then(|(_, number)| number.parse::<u64>().ok());
                match (frame["type"].as_str(), id) {
                    (Some("ack"), Some(number)) => {
                        tracing::debug!(number, seq = %frame["seq"], subscribers = %frame["subscriberCount"], "acked");
                        backlog.acked(number);
                        if settings.once && backlog.readings.is_empty() {
                            tracing::info!(seq = %frame["seq"], "reading acked");
                            return Ok(Streamed::Done);
                        }
                    }
                    (Some("error"), _) => {
                        tracing::warn!(code = %frame["code"], message = %frame["message"], "the server refused a reading");
                        // A refused reading will not be acked; do not keep it.
                        if let Some(number) = id {
                            backlog.acked(number);
                        }
                        if settings.once {
                            return Err(DeviceError::Failed(format!("refused: {}", frame["code"])));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_urls_in_every_motience_form_mean_the_same_server() {
        for url in [
            "http://host:3001",
            "http://host:3001/",
            "http://host:3001/api/auth",
            "http://host:3001/api/auth/login",
        ] {
            assert_eq!(auth_base(url), "http://host:3001");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..10 {
            let ceiling =
                Duration::from_millis(100 * 2u64.pow(attempt)).min(Duration::from_secs(2));
            assert!(backoff.next_delay() <= ceiling);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn the_backlog_drops_the_oldest_and_the_next_sent_reading_reports_them() {
        let mut backlog = Backlog {
            run_id: "run".into(),
            readings: VecDeque::new(),
            bytes: 0,
            max_messages: 3,
            max_bytes: 10_000,
            dropped: 0,
            sent: 0,
        };
        for number in 1..=5 {
            backlog.push(number, json!({"n": number}), vec![0; 10]);
        }
        let kept: Vec<u64> = backlog
            .readings
            .iter()
            .map(|pending| pending.number)
            .collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(backlog.dropped, 2);

        let frame = backlog.frame_to_send(0, Encoding::Json).unwrap();
        let sent: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(sent["payload"]["dropped"], 2);
        assert_eq!(backlog.dropped, 0);
        // That reading is dropped in turn before its ack: the count goes back to the tally.
        for number in 6..=8 {
            backlog.push(number, json!({"n": number}), vec![0; 10]);
        }
        assert_eq!(backlog.dropped, 3 + 2);

        backlog.acked(7);
        assert_eq!(backlog.readings.len(), 1);
        assert_eq!(backlog.bytes, 10);
    }
}
