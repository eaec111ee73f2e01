//! `GET /api/admin/live`: the console's live feed, a push-only WebSocket for admins. Every
//! [`TICK`] it sends an `overview` (instances, sockets, message rates, the pNode network,
//! registry counts) and a `connections` list; it closes when the admin's token stops being
//! valid (expired: 4001, anything else: 4004), so a console reconnects with a refreshed one.
//! Each instance holds at most [`MAX_LIVE_SOCKETS`] of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, stream};
use nodegrid_protocol::console::{
    AdminLiveMessage, InstanceLoad, MAX_LISTED_CONNECTIONS, Overview,
};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::stream::{ConnectionsResponse, close};
use nodegrid_services::identity::IdentityError;
use nodegrid_services::pnodes::api::snapshot_summary;

use crate::http::auth::{Admin, access_token};
use crate::http::error::ApiError;
use crate::http::push::{Push, push_socket};
use crate::http::streams::every_instance;
use crate::state::AppState;

/// How often the feed sends.
pub const TICK: Duration = Duration::from_secs(2);
/// Registry counts are read every this many ticks (one query, not one per tick).
const REGISTRY_EVERY_TICKS: u64 = 5;
/// Most admin live sockets one instance holds.
pub const MAX_LIVE_SOCKETS: usize = 64;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// One socket's place under [`MAX_LIVE_SOCKETS`], given back when its stream is dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < MAX_LIVE_SOCKETS).then_some(open + 1)
        })
        .ok()
        .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one socket remembers between ticks: each instance's last totals, for the rates.
#[derive(Default)]
struct Feed {
    tick: u64,
    last: HashMap<String, Sample>,
    registry: Option<BTreeMap<String, i64>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: DateTime<Utc>,
    messages_in: u64,
    deliveries: u64,
    rates: (f64, f64),
}

#[utoipa::path(get, path = "/api/admin/live", tag = "admin",
    responses(
        (status = 101, description = "A WebSocket of `AdminLiveMessage` JSON text frames: `overview` and `connections` every 2 s", body = AdminLiveMessage),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 429, description = "`too_many_connections`: this instance holds as many admin live sockets as it may", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn live(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    _admin: Admin,
) -> Result<HttpResponse, actix_web::Error> {
    let token = access_token(&request).unwrap_or_default();
    let slot = Slot::take().ok_or_else(|| {
        ApiError::new(
            ErrorCode::TooManyConnections,
            "this instance holds as many admin live sockets as it may",
        )
    })?;
    let interval = tokio::time::interval(TICK);
    let feed = Feed::default();
    let frames = stream::unfold(
        (feed, slot, interval, state.into_inner(), token),
        |(mut feed, slot, mut interval, state, token)| async move {
            interval.tick().await;
            let frames = feed.next(&state, &token).await;
            Some((stream::iter(frames), (feed, slot, interval, state, token)))
        },
    )
    .flatten();
    push_socket(&request, payload, frames)
}

impl Feed {
    /// This tick's frames: the overview and the connections, or a close once the token is no
    /// longer good.
    async fn next(&mut self, state: &AppState, token: &str) -> Vec<Push> {
        match state.identity.authenticate(token) {
            Ok(_) => {}
            Err(IdentityError::TokenExpired) => return vec![Push::Close(close::TOKEN_EXPIRED)],
            Err(_) => return vec![Push::Close(close::SESSION_ENDED)],
        }
        let tick = self.tick;
        self.tick += 1;
        if tick.is_multiple_of(REGISTRY_EVERY_TICKS) {
            self.registry = match state.nodes.count_by_status().await {
                Ok(counts) => Some(counts),
                Err(error) => {
                    tracing::debug!(%error, "registry counts unavailable for the admin feed");
                    None
                }
            };
        }
        let connections = match every_instance(state).await {
            Ok(connections) => connections,
            Err(error) => {
                tracing::debug!(%error, "connections unavailable for the admin feed");
                ConnectionsResponse {
                    instances: Vec::new(),
                    producers: 0,
                    consumers: 0,
                }
            }
        };
        let overview = self.overview(state, &connections);
        vec![
            Push::Json(encode(&AdminLiveMessage::Overview(overview))),
            Push::Json(encode(&listed(connections))),
        ]
    }

    fn overview(&mut self, state: &AppState, connections: &ConnectionsResponse) -> Overview {
        let mut instances = Vec::with_capacity(connections.instances.len());
        for instance in &connections.instances {
            let rates = match self.last.get(&instance.instance) {
                // A newer report: the rates over the time between the two.
                Some(last) if instance.reported_at > last.at => {
                    let seconds = (instance.reported_at - last.at).as_seconds_f64();
                    let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
                    (
                        rate(instance.messages_in_total, last.messages_in),
                        rate(instance.deliveries_total, last.deliveries),
                    )
                }
                Some(last) => last.rates,
                None => (0.0, 0.0),
            };
            self.last.insert(
                instance.instance.clone(),
                Sample {
                    at: instance.reported_at,
                    messages_in: instance.messages_in_total,
                    deliveries: instance.deliveries_total,
                    rates,
                },
            );
            let count = |kind: &str| {
                instance
                    .connections
                    .iter()
                    .filter(|connection| connection.kind == kind)
                    .count() as u64
            };
            instances.push(InstanceLoad {
                instance: instance.instance.clone(),
                reported_at: instance.reported_at,
                producers: count("producer"),
                consumers: count("consumer"),
                messages_in_per_sec: rates.0,
                deliveries_per_sec: rates.1,
            });
        }
        // Instances that stopped reporting drop out of the rates.
        self.last
            .retain(|name, _| instances.iter().any(|instance| &instance.instance == name));
        let view = state.pnodes.cell.view();
        Overview {
            messages_in_per_sec: instances.iter().map(|i| i.messages_in_per_sec).sum(),
            deliveries_per_sec: instances.iter().map(|i| i.deliveries_per_sec).sum(),
            instances,
            producers: connections.producers,
            consumers: connections.consumers,
            pnodes: (state.pnodes.cell.cycle() > 0)
                .then(|| snapshot_summary(&view, Utc::now().timestamp())),
            registry: self.registry.clone(),
            timestamp: Utc::now(),
        }
    }
}

/// The connections message, with at most [`MAX_LISTED_CONNECTIONS`] listed.
fn listed(mut connections: ConnectionsResponse) -> AdminLiveMessage {
    let mut room = MAX_LISTED_CONNECTIONS;
    let mut truncated = false;
    for instance in &mut connections.instances {
        if instance.connections.len() > room {
            instance.connections.truncate(room);
            truncated = true;
        }
        room -= instance.connections.len();
    }
    AdminLiveMessage::Connections {
        instances: connections.instances,
        producers: connections.producers,
        consumers: connections.consumers,
        truncated,
    }
}

fn encode(message: &AdminLiveMessage) -> Bytes {
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}
