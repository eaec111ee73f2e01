//! `/api/xandeum/ws/pnodes`: the network live. On connect the current summary; after each
//! cycle the summary and that cycle's changes that pass the socket's filters (computed once by
//! the leader and stored with the snapshot, so that every instance sends the same). Public like
//! the REST reads, and under the same per-address limit (the upgrade is one request); each
//! instance holds at most `--pnode-live-sockets` of them, and [`LIVE_SOCKETS_PER_ADDRESS`] of
//! one client address.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{StreamExt as _, stream};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::pnode_api::changes::{ChangeFilter, PnodeSocketMessage, PnodeSocketQuery};
use nodegrid_protocol::stream::close;
use nodegrid_services::pnodes::api::snapshot_summary;
use nodegrid_services::pnodes::view::NetworkView;
use tokio::sync::broadcast;

use super::shared::now;
use crate::http::auth::client_ip;
use crate::http::error::ApiError;
use crate::http::push::{Push, push_socket};
use crate::pnodes::cell::CycleServed;
use crate::pnodes::metrics::LIVE_SOCKETS;
use crate::pnodes::{LIVE_SOCKETS_PER_ADDRESS, LiveSockets};
use crate::state::AppState;

/// One open socket's place under the caps; given back when the socket's stream is dropped.
struct Slot {
    sockets: Arc<LiveSockets>,
    client: IpAddr,
}

impl Slot {
    fn take(sockets: &Arc<LiveSockets>, client: IpAddr, max: usize) -> Option<Slot> {
        let mut open = sockets
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, by_client) = &mut *open;
        let mine = by_client.get(&client).copied().unwrap_or(0);
        if *total >= max || mine >= LIVE_SOCKETS_PER_ADDRESS {
            return None;
        }
        *total += 1;
        by_client.insert(client, mine + 1);
        ::metrics::gauge!(LIVE_SOCKETS).increment(1.0);
        Some(Slot {
            sockets: sockets.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .sockets
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, by_client) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = by_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                by_client.remove(&self.client);
            }
        }
        ::metrics::gauge!(LIVE_SOCKETS).decrement(1.0);
    }
}

#[utoipa::path(get, path = "/api/xandeum/ws/pnodes", tag = "pnodes",
    params(PnodeSocketQuery),
    responses(
        (status = 101, description = "A WebSocket of `PnodeSocketMessage` JSON text frames: `snapshot` first, then `cycle` after each cycle", body = PnodeSocketMessage),
        (status = 400, description = "`validation_failed`: a filter is not acceptable", body = ErrorBody),
        (status = 429, description = "`rate_limited`, or `too_many_connections`: this instance, or this address on it, holds as many live sockets as it may", body = ErrorBody),
    )
)]
pub async fn live(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    query: web::Query<PnodeSocketQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let filter = query.into_inner().check().map_err(ApiError::from)?;
    let runtime = &state.pnodes;
    let client = client_ip(&request, &state.trusted_proxies);
    let slot = Slot::take(&runtime.live_sockets, client, runtime.settings.live_sockets)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TooManyConnections,
                "this instance, or this address on it, holds as many live pNode sockets as it may",
            )
        })?;
    // Subscribed before the first snapshot is read: no cycle can fall between the two.
    let updates = runtime.cell.updates();
    let first = encode(&snapshot(&runtime.cell.view()));
    let cell = runtime.cell.clone();
    let following = stream::unfold(
        (updates, filter, cell, slot),
        |(mut updates, filter, cell, slot)| async move {
            let item = match updates.recv().await {
                Ok(served) => Push::Json(cycle(&served, &filter)),
                // Too far behind to be told each cycle: where the network stands now, and from
                // the next cycle on (the older ones it missed are skipped, not sent late).
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    updates = updates.resubscribe();
                    Push::Json(encode(&snapshot(&cell.view())))
                }
                Err(broadcast::error::RecvError::Closed) => Push::Close(close::GOING_AWAY),
            };
            Some((item, (updates, filter, cell, slot)))
        },
    );
    push_socket(
        &request,
        payload,
        stream::once(async move { Push::Json(first) }).chain(following),
    )
}

fn snapshot(view: &NetworkView) -> PnodeSocketMessage {
    let now = now();
    PnodeSocketMessage::Snapshot {
        summary: snapshot_summary(view, now),
        timestamp: now,
    }
}

/// The cycle's message for a socket: encoded once for all sockets without filters.
fn cycle(served: &CycleServed, filter: &ChangeFilter) -> Bytes {
    if filter.is_open() {
        return served.unfiltered.clone();
    }
    encode(&PnodeSocketMessage::Cycle {
        summary: served.summary.clone(),
        previous_cycle: served.previous_cycle,
        changes: served
            .changes
            .iter()
            .filter(|change| filter.matches(&change.node))
            .cloned()
            .collect(),
        timestamp: served.served_at,
    })
}

fn encode(message: &PnodeSocketMessage) -> Bytes {
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}
