//! A producer's stream over HTTP: publishing without a socket (`POST
//! /api/producers/{id}/publish`, Motience's `POST /api/data`), its history, its stored data,
//! and the admin's per-producer settings.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::DateTime;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::stream::{
    DataFrame, DataRequest, HistoryResponse, MAX_CLIENT_ID_BYTES, MAX_PUBLISH_BATCH,
    ProducerSettingsRequest, ProducerSettingsResponse, PublishAck, PublishBatchResponse,
    PublishRequest, StoredDataPage,
};
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::streams::data::{Cursor, Order, PageRequest};
use nodegrid_services::streams::policies::PolicyError;
use nodegrid_services::streams::publisher::{OutgoingMessage, PublishError, PublishOutcome};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::http::auth::{Admin, Authenticated, Principal, caller};
use crate::http::error::ApiError;
use crate::http::json::{Json, RawJson};
use crate::http::routing::resource;
use crate::state::AppState;
use crate::stream::now_millis;

/// Most messages one history or data page holds.
const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/api/producers/{producer_id}/publish").route(web::post().to(publish)))
        .service(resource("/api/data").route(web::post().to(post_data)))
        .service(resource("/api/producers/{producer_id}/history").route(web::get().to(history)))
        .service(resource("/api/producers/{producer_id}/data").route(web::get().to(stored_data)))
        .service(
            resource("/api/admin/producers/{producer_id}/settings")
                .route(web::get().to(settings))
                .route(web::put().to(set_settings)),
        );
}

/// Whether the caller may publish for `producer_id`: the producer itself, an admin, or an API
/// token with the `publish` scope for it. The producer must exist and not be blocked.
async fn check_publisher(
    state: &AppState,
    principal: &Principal,
    producer_id: i64,
) -> Result<(), ApiError> {
    match principal {
        Principal::User(user) if user.role == Role::Producer && user.user_id == producer_id => {
            return Ok(());
        }
        Principal::User(user) if user.role == Role::Admin => {}
        Principal::ApiToken(grant) if grant.may_publish_for(producer_id) => {}
        _ => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the producer, an admin, or an API token with the publish scope for this producer may publish",
            ));
        }
    }
    if !state
        .producers
        .is_producer(producer_id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            ErrorCode::ProducerNotFound,
            format!("no producer {producer_id}"),
        ));
    }
    if state.identity.is_blocked(producer_id) {
        return Err(ApiError::new(
            ErrorCode::UserBlocked,
            "this producer is blocked",
        ));
    }
    Ok(())
}

/// A payload as the producer's message: refused when its JSON is larger than a socket frame
/// may be.
fn outgoing_message(
    state: &AppState,
    payload: &Value,
    id: Option<String>,
    index: Option<usize>,
) -> Result<OutgoingMessage, ApiError> {
    let json = serde_json::to_string(payload).map_err(ApiError::internal)?;
    let limit = state.stream_limits.max_frame_bytes;
    if json.len() > limit {
        let which = index.map_or_else(|| "payload".to_owned(), |i| format!("payloads[{i}]"));
        return Err(ApiError::validation(format!(
            "{which} is {} bytes of JSON; a message may have at most {limit}",
            json.len()
        )));
    }
    Ok(OutgoingMessage::new(now_millis(), &json, id))
}

fn publish_error(error: PublishError) -> ApiError {
    tracing::warn!(%error, "publish failed");
    ApiError::new(
        ErrorCode::NotReady,
        "the message bus is unavailable; nothing was published",
    )
}

fn ack(subscriber_count: u64, seq: u64, id: Option<String>) -> PublishAck {
    PublishAck {
        kind: "ack".to_owned(),
        subscriber_count,
        seq,
        id,
    }
}

/// Publishes `messages` of `producer_id` and answers: the ack of one message, or the acks of
/// a batch. A batch the rate cut short acks the accepted messages and says how many of the
/// last ones to send again, and when.
async fn publish_messages(
    state: &AppState,
    producer_id: i64,
    messages: Vec<OutgoingMessage>,
    batch: bool,
) -> Result<HttpResponse, ApiError> {
    let script = state.ingest.publisher.script_for(producer_id);
    let published = state
        .ingest
        .publish(&script, &messages, None)
        .await
        .map_err(publish_error)?;
    let subscriber_count = state.subscriptions.subscriber_count(producer_id);
    let mut acks = Vec::with_capacity(messages.len());
    let mut refused = 0usize;
    let mut retry_after_ms = 0u64;
    for (message, outcome) in messages.into_iter().zip(published.messages) {
        match outcome.outcome {
            PublishOutcome::RateLimited {
                retry_after_ms: wait,
            } => {
                refused += 1;
                retry_after_ms = retry_after_ms.max(wait);
            }
            PublishOutcome::Duplicate | PublishOutcome::Published { .. } => {
                acks.push(ack(subscriber_count, outcome.seq, message.client_id));
            }
        }
    }
    if acks.is_empty() && refused > 0 {
        let limits = state.stream_limits;
        return Err(ApiError::RateLimited {
            retry_after_secs: Duration::from_millis(retry_after_ms).as_secs().max(1),
            message: format!(
                "this producer is limited to {} messages per second (burst {})",
                limits.producer_rate_per_sec, limits.producer_burst
            ),
        });
    }
    if !batch {
        return Ok(HttpResponse::Ok().json(&acks[0]));
    }
    Ok(HttpResponse::Ok().json(PublishBatchResponse {
        producer_id,
        acks,
        rate_limited: refused,
        retry_after_ms: (refused > 0).then_some(retry_after_ms),
    }))
}

#[utoipa::path(post, path = "/api/producers/{producer_id}/publish", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Published: the ack (`payload`), or the acks in order (`payloads`)", body = PublishBatchResponse),
        (status = 400, description = "`validation_failed`: neither or both of payload and payloads, too many, too large", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the producer, an admin, or a publish token for it", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: nothing was accepted; retry after `Retry-After`", body = ErrorBody),
        (status = 503, description = "`not_ready`: Redis is unavailable; nothing was published", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn publish(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<i64>,
    body: RawJson<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    check_publisher(&state, &principal, producer_id).await?;
    let request = body.into_inner();
    if request
        .id
        .as_ref()
        .is_some_and(|id| id.len() > MAX_CLIENT_ID_BYTES)
    {
        return Err(ApiError::validation(format!(
            "id is limited to {MAX_CLIENT_ID_BYTES} bytes"
        )));
    }
    match (request.payload, request.payloads) {
        (Some(payload), None) => {
            let message = outgoing_message(&state, &payload, request.id, None)?;
            publish_messages(&state, producer_id, vec![message], false).await
        }
        (None, Some(payloads)) => {
            if request.id.is_some() {
                return Err(ApiError::validation(
                    "id goes with a single payload, not with payloads",
                ));
            }
            if payloads.is_empty() || payloads.len() > MAX_PUBLISH_BATCH {
                return Err(ApiError::validation(format!(
                    "payloads holds 1 to {MAX_PUBLISH_BATCH} messages"
                )));
            }
            let messages = payloads
                .iter()
                .enumerate()
                .map(|(index, payload)| outgoing_message(&state, payload, None, Some(index)))
                .collect::<Result<Vec<_>, _>>()?;
            publish_messages(&state, producer_id, messages, true).await
        }
        _ => Err(ApiError::validation(
            "send either payload (one message) or payloads (several)",
        )),
    }
}

#[utoipa::path(post, path = "/api/data", tag = "streams",
    request_body = DataRequest,
    responses(
        (status = 200, description = "Published", body = PublishAck),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`not_ready`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
/// Motience's data-service call: one message of a producer, by the same rules as publish.
pub async fn post_data(
    state: web::Data<AppState>,
    principal: Principal,
    body: RawJson<DataRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    check_publisher(&state, &principal, request.producer_id).await?;
    let message = outgoing_message(&state, &request.payload, None, None)?;
    publish_messages(&state, request.producer_id, vec![message], false).await
}

/// Who may read a producer's past: the producer, its subscribers, admins.
fn check_reader(state: &AppState, user: &Authenticated, producer_id: i64) -> Result<(), ApiError> {
    let user = &user.0;
    let allowed = match user.role {
        Role::Admin => true,
        Role::Producer => user.user_id == producer_id,
        Role::Consumer => state.subscriptions.is_subscribed(user.user_id, producer_id),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the producer, its subscribers and admins may read its messages",
        ))
    }
}

fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => Err(ApiError::validation(format!("limit is 1 to {MAX_PAGE}"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The last sequence number the client has; the answer starts after it (default 0).
    pub since_seq: Option<u64>,
    /// Most messages (1–1000, default 100).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/producers/{producer_id}/history", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer"), HistoryQuery),
    responses(
        (status = 200, description = "The messages after `since_seq` still in history, oldest first", body = HistoryResponse<DataFrame>),
        (status = 403, description = "`forbidden`: not the producer, a subscriber or an admin", body = ErrorBody),
        (status = 503, description = "`not_ready`: Redis is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn history(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    check_reader(&state, &user, producer_id)?;
    let limit = page_limit(query.limit)?;
    let policy = state.policies.policy(producer_id);
    let page = state
        .history
        .read(
            producer_id,
            query.since_seq.unwrap_or(0),
            limit,
            policy,
            now_millis(),
        )
        .await
        .map_err(|error| {
            tracing::warn!(%error, producer_id, "cannot read a producer's history");
            ApiError::new(
                ErrorCode::NotReady,
                "the history is unavailable; retry later",
            )
        })?;
    let messages = page
        .entries
        .iter()
        .map(|entry| serde_json::from_str::<&RawValue>(&entry.frame))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(HistoryResponse::<&RawValue> {
        producer_id,
        epoch: (!page.epoch.is_empty()).then(|| page.epoch.clone()),
        last_seq: page.last_seq,
        first_seq: page.first_seq,
        more: page.more,
        messages,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoredDataQuery {
    /// From this time (inclusive): milliseconds since the Unix epoch, or RFC 3339.
    pub since: Option<String>,
    /// Until this time (exclusive), likewise.
    pub until: Option<String>,
    /// Most messages (1–1000, default 100).
    pub limit: Option<usize>,
    /// `asc` (default) or `desc`, by time.
    pub order: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn instant(text: Option<&str>, name: &str, default: i64) -> Result<i64, ApiError> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(default);
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|_| {
            ApiError::validation(format!(
                "{name} is milliseconds since the Unix epoch or an RFC 3339 time"
            ))
        })
}

#[utoipa::path(get, path = "/api/producers/{producer_id}/data", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer"), StoredDataQuery),
    responses(
        (status = 200, description = "A page of stored messages", body = StoredDataPage<Value>),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the producer, a subscriber or an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn stored_data(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
    query: web::Query<StoredDataQuery>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    check_reader(&state, &user, producer_id)?;
    let order = match query.order.as_deref() {
        None | Some("asc") => Order::Ascending,
        Some("desc") => Order::Descending,
        Some(_) => return Err(ApiError::validation("order is asc or desc")),
    };
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::validation("cursor is not one this API gave"))?,
        ),
    };
    let request = PageRequest {
        since: instant(query.since.as_deref(), "since", 0)?,
        until: instant(query.until.as_deref(), "until", i64::MAX)?,
        limit: page_limit(query.limit)?,
        order,
        cursor,
    };
    let page: StoredDataPage<Box<RawValue>> = state
        .data
        .page(producer_id, request)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(page))
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> ApiError {
        match error {
            PolicyError::ProducerNotFound(id) => {
                ApiError::new(ErrorCode::ProducerNotFound, format!("no producer {id}"))
            }
            PolicyError::Invalid(message) => ApiError::validation(message),
            PolicyError::Database(error) => ApiError::internal(error),
        }
    }
}

#[utoipa::path(get, path = "/api/admin/producers/{producer_id}/settings", tag = "admin",
    params(("producer_id" = i64, Path, description = "The producer")),
    responses(
        (status = 200, description = "The producer's overrides and what applies", body = ProducerSettingsResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn settings(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    Ok(HttpResponse::Ok().json(ProducerSettingsResponse {
        producer_id,
        overrides: state.policies.overrides(producer_id),
        effective: state.policies.policy(producer_id),
    }))
}

#[utoipa::path(put, path = "/api/admin/producers/{producer_id}/settings", tag = "admin",
    params(("producer_id" = i64, Path, description = "The producer")),
    request_body = ProducerSettingsRequest,
    responses(
        (status = 200, description = "Set on every instance", body = ProducerSettingsResponse),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_settings(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<ProducerSettingsRequest>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    let overrides = body.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "producer.settings",
        &format!("user:{producer_id}"),
        serde_json::to_value(overrides).map_err(ApiError::internal)?,
    );
    let effective = state.policies.set(producer_id, overrides, audit).await?;
    Ok(HttpResponse::Ok().json(ProducerSettingsResponse {
        producer_id,
        overrides,
        effective,
    }))
}
