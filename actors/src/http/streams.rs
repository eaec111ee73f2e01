//! The subscription REST API, private streams, and the admin view of live connections.

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::stream::{
    AllowConsumerRequest, AllowedConsumersResponse, ConnectionsResponse, DisconnectResponse,
    SubscribeRequest, SubscribeResponse, SubscribersResponse, SubscriptionsResponse,
    UnsubscribeResponse, VisibilityRequest, VisibilityResponse,
};
use nodegrid_services::identity::AuthUser;
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::streams::subscriptions::SubscriptionError;
use serde_json::json;

use crate::http::auth::{Admin, Authenticated, caller, require_role, require_self_or_admin};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;
use crate::stream::report;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/api/subscribe")
                .route(web::post().to(subscribe))
                .route(web::delete().to(unsubscribe_by_body)),
        )
        .service(resource("/api/subscribe/{producer_id}").route(web::delete().to(unsubscribe)))
        .service(resource("/api/unsubscribe").route(web::delete().to(unsubscribe_by_body)))
        .service(
            resource("/api/subscriptions/{consumer_id}").route(web::get().to(subscriptions_of)),
        )
        .service(resource("/api/subscribers/{producer_id}").route(web::get().to(subscribers_of)))
        .service(
            resource("/api/producers/{producer_id}/visibility")
                .route(web::put().to(set_visibility)),
        )
        .service(
            resource("/api/producers/{producer_id}/allowed-consumers")
                .route(web::get().to(allowed_consumers))
                .route(web::post().to(allow_consumer)),
        )
        .service(
            resource("/api/producers/{producer_id}/allowed-consumers/{consumer_id}")
                .route(web::delete().to(disallow_consumer)),
        )
        .service(resource("/api/admin/connections").route(web::get().to(connections)))
        .service(
            resource("/api/admin/connections/{id}").route(web::delete().to(disconnect_connection)),
        );
}

impl From<SubscriptionError> for ApiError {
    fn from(error: SubscriptionError) -> ApiError {
        match error {
            SubscriptionError::ProducerNotFound(producer_id) => ApiError::new(
                ErrorCode::ProducerNotFound,
                format!("no producer {producer_id}"),
            ),
            SubscriptionError::Forbidden(reason) => ApiError::new(ErrorCode::Forbidden, reason),
            SubscriptionError::NotFound(message) => ApiError::not_found(message),
            other => ApiError::internal(other),
        }
    }
}

/// Subscribes the calling consumer to a producer; open sockets of the consumer, on any
/// instance, start receiving it.
#[utoipa::path(post, path = "/api/subscribe", tag = "streams",
    request_body = SubscribeRequest,
    responses(
        (status = 201, description = "Subscribed", body = SubscribeResponse),
        (status = 200, description = "Already subscribed", body = SubscribeResponse),
        (status = 403, description = "`forbidden`: not a consumer", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn subscribe(
    state: web::Data<AppState>,
    user: Authenticated,
    body: Json<SubscribeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = user.0;
    require_role(&user, Role::Consumer)?;
    let producer_id = body.producer_id;
    let created = state
        .subscriptions
        .subscribe(user.user_id, producer_id)
        .await?;
    let body = SubscribeResponse {
        consumer_id: user.user_id,
        producer_id,
        created,
    };
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

async fn unsubscribe_producer(
    state: &AppState,
    user: &AuthUser,
    producer_id: i64,
) -> Result<HttpResponse, ApiError> {
    require_role(user, Role::Consumer)?;
    let removed = state
        .subscriptions
        .unsubscribe(user.user_id, producer_id)
        .await?;
    Ok(HttpResponse::Ok().json(UnsubscribeResponse {
        consumer_id: user.user_id,
        producer_id,
        removed,
    }))
}

/// Unsubscribes the calling consumer; delivery to its open sockets stops.
#[utoipa::path(delete, path = "/api/subscribe/{producer_id}", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    responses(
        (status = 200, description = "Done (`removed` says whether it existed)", body = UnsubscribeResponse),
        (status = 403, description = "`forbidden`: not a consumer", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    unsubscribe_producer(&state, &user.0, path.into_inner()).await
}

/// Motience's form of the same: `DELETE /api/unsubscribe` with `{"producer_id"}`.
#[utoipa::path(delete, path = "/api/unsubscribe", tag = "streams",
    request_body = SubscribeRequest,
    responses(
        (status = 200, description = "Done (`removed` says whether it existed)", body = UnsubscribeResponse),
        (status = 403, description = "`forbidden`: not a consumer", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn unsubscribe_by_body(
    state: web::Data<AppState>,
    user: Authenticated,
    body: Json<SubscribeRequest>,
) -> Result<HttpResponse, ApiError> {
    unsubscribe_producer(&state, &user.0, body.producer_id).await
}

/// The producers a consumer subscribes to: the consumer itself or an admin.
#[utoipa::path(get, path = "/api/subscriptions/{consumer_id}", tag = "streams",
    params(("consumer_id" = i64, Path, description = "The consumer")),
    responses(
        (status = 200, description = "Its subscriptions", body = SubscriptionsResponse),
        (status = 403, description = "`forbidden`: another consumer's", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn subscriptions_of(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let consumer_id = path.into_inner();
    require_self_or_admin(&user.0, consumer_id)?;
    let list = state.subscriptions.list_for_consumer(consumer_id).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// The consumers subscribed to a producer: the producer itself or an admin.
#[utoipa::path(get, path = "/api/subscribers/{producer_id}", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    responses(
        (status = 200, description = "Its subscribers", body = SubscribersResponse),
        (status = 403, description = "`forbidden`: another producer's", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn subscribers_of(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    require_self_or_admin(&user.0, producer_id)?;
    let list = state.subscriptions.list_for_producer(producer_id).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Every instance's sockets: this one's now, the others' as last reported.
pub async fn every_instance(state: &AppState) -> anyhow::Result<ConnectionsResponse> {
    report::all_instances(
        &state.instance_id.to_string(),
        &state.bus,
        &state.producer_registry,
        &state.session_registry,
    )
    .await
}

/// Live producer connections and consumer sessions of every instance.
#[utoipa::path(get, path = "/api/admin/connections", tag = "admin",
    responses(
        (status = 200, description = "Every instance's sockets", body = ConnectionsResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn connections(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let view = every_instance(&state).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(view))
}

/// Disconnects one live socket, on whichever instance holds it; the user is not blocked and
/// may connect again. The socket closes with 4005 `disconnected`.
#[utoipa::path(delete, path = "/api/admin/connections/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The connection's id, as `/api/admin/connections` lists it")),
    responses(
        (status = 202, description = "The instance holding it is told to close it", body = DisconnectResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no live connection has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn disconnect_connection(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let view = every_instance(&state).await.map_err(ApiError::internal)?;
    let Some(connection) = view
        .instances
        .into_iter()
        .flat_map(|instance| instance.connections)
        .find(|connection| connection.id == id)
    else {
        return Err(ApiError::not_found(format!("no live connection {id}")));
    };
    state
        .identity
        .record_admin_action(
            caller(&request, &state),
            &admin.0,
            "connection.disconnect",
            &format!("user:{}", connection.user_id),
            json!({"connection_id": id, "kind": connection.kind, "instance": connection.instance}),
        )
        .await?;
    state
        .bus
        .publish_control(&ControlEnvelope {
            origin: state.instance_id,
            event: ControlEvent::ConnectionDisconnected { connection_id: id },
        })
        .await
        .map_err(|error| {
            ApiError::new(
                ErrorCode::NotReady,
                format!("the instances could not be told: {error}"),
            )
        })?;
    Ok(HttpResponse::Accepted().json(DisconnectResponse {
        id,
        kind: connection.kind,
        user_id: connection.user_id,
        username: connection.username,
        instance: connection.instance,
    }))
}

/// Makes a producer's stream private (only allowed consumers may subscribe; the others'
/// subscriptions end) or public again: the producer itself or an admin.
#[utoipa::path(put, path = "/api/producers/{producer_id}/visibility", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    request_body = VisibilityRequest,
    responses(
        (status = 200, description = "Changed", body = VisibilityResponse),
        (status = 403, description = "`forbidden`: another producer's", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_visibility(
    state: web::Data<AppState>,
    request: HttpRequest,
    user: Authenticated,
    path: web::Path<i64>,
    body: Json<VisibilityRequest>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    require_self_or_admin(&user.0, producer_id)?;
    let private = body.private;
    let audit = audit_record(
        caller(&request, &state),
        &user.0,
        "producer.visibility",
        &format!("user:{producer_id}"),
        json!({"private": private}),
    );
    let unsubscribed = state
        .stream_access
        .set_private(producer_id, private, audit)
        .await?;
    Ok(HttpResponse::Ok().json(VisibilityResponse {
        producer_id,
        private,
        unsubscribed,
    }))
}

/// Whether a producer's stream is private, and the consumers allowed: the producer itself or
/// an admin.
#[utoipa::path(get, path = "/api/producers/{producer_id}/allowed-consumers", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    responses(
        (status = 200, description = "The allowed consumers", body = AllowedConsumersResponse),
        (status = 403, description = "`forbidden`: another producer's", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn allowed_consumers(
    state: web::Data<AppState>,
    user: Authenticated,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    require_self_or_admin(&user.0, producer_id)?;
    Ok(HttpResponse::Ok().json(state.stream_access.allowed(producer_id).await?))
}

/// Allows a consumer to subscribe to a private stream: the producer itself or an admin.
#[utoipa::path(post, path = "/api/producers/{producer_id}/allowed-consumers", tag = "streams",
    params(("producer_id" = i64, Path, description = "The producer")),
    request_body = AllowConsumerRequest,
    responses(
        (status = 201, description = "Allowed", body = SubscribeResponse),
        (status = 200, description = "Allowed already", body = SubscribeResponse),
        (status = 403, description = "`forbidden`: another producer's", body = ErrorBody),
        (status = 404, description = "`producer_not_found`, or `not_found`: no such consumer", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn allow_consumer(
    state: web::Data<AppState>,
    request: HttpRequest,
    user: Authenticated,
    path: web::Path<i64>,
    body: Json<AllowConsumerRequest>,
) -> Result<HttpResponse, ApiError> {
    let producer_id = path.into_inner();
    require_self_or_admin(&user.0, producer_id)?;
    let consumer_id = body.consumer_id;
    let audit = audit_record(
        caller(&request, &state),
        &user.0,
        "producer.allow_consumer",
        &format!("user:{producer_id}"),
        json!({"consumer_id": consumer_id}),
    );
    let created = state
        .stream_access
        .allow(producer_id, consumer_id, audit)
        .await?;
    let body = SubscribeResponse {
        consumer_id,
        producer_id,
        created,
    };
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// Withdraws a consumer's allowance (and, while the stream is private, its subscription): the
/// producer itself or an admin.
#[utoipa::path(delete, path = "/api/producers/{producer_id}/allowed-consumers/{consumer_id}", tag = "streams",
    params(
        ("producer_id" = i64, Path, description = "The producer"),
        ("consumer_id" = i64, Path, description = "The consumer"),
    ),
    responses(
        (status = 200, description = "Done (`removed` says whether it was allowed)", body = UnsubscribeResponse),
        (status = 403, description = "`forbidden`: another producer's", body = ErrorBody),
        (status = 404, description = "`producer_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn disallow_consumer(
    state: web::Data<AppState>,
    request: HttpRequest,
    user: Authenticated,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (producer_id, consumer_id) = path.into_inner();
    require_self_or_admin(&user.0, producer_id)?;
    let audit = audit_record(
        caller(&request, &state),
        &user.0,
        "producer.disallow_consumer",
        &format!("user:{producer_id}"),
        json!({"consumer_id": consumer_id}),
    );
    let removed = state
        .stream_access
        .disallow(producer_id, consumer_id, audit)
        .await?;
    Ok(HttpResponse::Ok().json(UnsubscribeResponse {
        consumer_id,
        producer_id,
        removed,
    }))
}
