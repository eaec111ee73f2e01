//! `/api/xandeum/ws/pnodes`: the network live. On connect the current summary; after each
//! cycle the summary and that cycle's changes that pass the socket's filters (computed once by
//! the leader and stored with the snapshot, so that every instance sends the same). Public like
//! the REST reads, and under the same per-address limit (the upgrade is one request); each
//! instance holds at most `--pnode-live-sockets` of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{StreamExt as _, stream};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::pnode_api::changes::{ChangeFilter, PnodeSocketMessage, PnodeSocketQuery};
use nodegrid_protocol::stream::close;
use nodegrid_services::pnodes::api::snapshot_summary;
use nodegrid_services::pnodes::view::NetworkView;
use tokio::sync::broadcast;

use super::shared::now;
use crate::http::error::ApiError;
use crate::http::push::{Push, push_socket};
use crate::pnodes::cell::CycleServed;
use crate::pnodes::metrics::LIVE_SOCKETS;
use crate::state::AppState;

/// One open socket's place under the cap; given back when the socket's stream is dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count < max).then_some(count + 1)
        })
        .ok()?;
        ::metrics::gauge!(LIVE_SOCKETS).increment(1.0);
        Some(Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        ::metrics::gauge!(LIVE_SOCKETS).decrement(1.0);
    }
}

#[utoipa::path(get, path = "/api/xandeum/ws/pnodes", tag = "pnodes",
    params(PnodeSocketQuery),
    responses(
        (status = 101, description = "A WebSocket of `PnodeSocketMessage` JSON text frames: `snapshot` first, then `cycle` after each cycle", body = PnodeSocketMessage),
        (status = 400, description = "`validation_failed`: a filter is not acceptable", body = ErrorBody),
        (status = 429, description = "`rate_limited`, or `too_many_connections`: this instance holds as many live sockets as it may", body = ErrorBody),
    )
)]
pub async fn live(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<PnodeSocketQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let filter = query.into_inner().check().map_err(ApiError::from)?;
    let runtime = &state.pnodes;
    let slot =
        Slot::take(&runtime.live_sockets, runtime.settings.live_sockets).ok_or_else(|| {
            ApiError::new(
                ErrorCode::TooManyConnections,
                "this instance holds as many live pNode sockets as it may; try again later",
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
                Ok(served) => Push::Json(encode(&cycle(&served, &filter))),
                // Too far behind to be told each cycle: where the network stands now.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Push::Json(encode(&snapshot(&cell.view())))
                }
                Err(broadcast::error::RecvError::Closed) => Push::Close(close::GOING_AWAY),
            };
            Some((item, (updates, filter, cell, slot)))
        },
    );
    push_socket(
        &request,
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

fn cycle(served: &CycleServed, filter: &ChangeFilter) -> PnodeSocketMessage {
    let now = now();
    let changes = &served.record.changes;
    PnodeSocketMessage::Cycle {
        summary: snapshot_summary(&served.view, now),
        previous_cycle: served.record.previous_cycle,
        changes: if filter.is_open() {
            changes.clone()
        } else {
            changes
                .iter()
                .filter(|change| filter.matches(&change.node))
                .cloned()
                .collect()
        },
        timestamp: now,
    }
}

fn encode(message: &PnodeSocketMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}
