//! The socket upgrades: `/producer` and `/consumer`. Each checks the token, the role and the
//! user's socket count before the upgrade, then hands the socket to its actor.

use std::collections::HashMap;

use actix::{Actor, Addr};
use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::error::ErrorCode;
use nodegrid_protocol::stream::MAX_EPOCH_BYTES;
use nodegrid_services::config::WsTokenExpiry;
use nodegrid_services::identity::AuthUser;

use crate::http::auth::{Authenticated, require_role};
use crate::http::browser::check_socket_origin;
use crate::http::error::ApiError;
use crate::http::routing::resource;
use crate::state::AppState;
use crate::stream::consumer::{ConsumerParts, ConsumerSession};
use crate::stream::outbox::Outbox;
use crate::stream::producer::{ProducerConnection, ProducerParts};
use crate::stream::registry::{ConnectionRegistry, CountUserSockets};
use crate::stream::replay::ResumeFrom;
use crate::stream::ws::{self, ReadLimits, WsReader};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/producer").route(web::get().to(producer_socket)))
        .service(resource("/consumer").route(web::get().to(consumer_socket)));
}

/// The parts of a socket that its actor takes over: the outbox to write to, the reader of
/// the client's frames, and when its token expires (if expiry is enforced on open sockets).
struct OpenSocket {
    response: HttpResponse,
    outbox: Outbox,
    reader: WsReader<web::Payload>,
    token_expires_at: Option<u64>,
}

/// Refuses a socket before the upgrade when its user has the most sockets allowed on this
/// instance (the registry checks again, exactly, when the socket registers).
async fn check_socket_count(
    registry: &Addr<ConnectionRegistry>,
    user: &AuthUser,
    limit: usize,
) -> Result<(), ApiError> {
    if limit == 0 {
        return Ok(());
    }
    let open = registry
        .send(CountUserSockets {
            user_id: user.user_id,
        })
        .await
        .map_err(ApiError::internal)?;
    if open >= limit {
        return Err(ApiError::new(
            ErrorCode::TooManyConnections,
            format!("this user has {open} sockets open here, the most allowed"),
        ));
    }
    Ok(())
}

fn open_socket(
    request: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    user: &AuthUser,
    batched: bool,
) -> Result<OpenSocket, ApiError> {
    let limits = state.stream_limits;
    let (outbox, outbox_body) = Outbox::new(limits.buffer_messages, limits.buffer_bytes);
    let outbox_body = if batched {
        outbox_body.batched()
    } else {
        outbox_body
    };
    let response = ws::handshake(request, outbox_body)
        .map_err(|error| ApiError::bad_request(format!("not a WebSocket upgrade: {error}")))?;
    let reader = WsReader::new(body, ReadLimits::for_max_frame(limits.max_frame_bytes))
        .paced_by(outbox.clone());
    let token_expires_at = match limits.token_expiry {
        WsTokenExpiry::Refresh => Some(user.expires_at),
        WsTokenExpiry::ConnectOnly => None,
    };
    Ok(OpenSocket {
        response,
        outbox,
        reader,
        token_expires_at,
    })
}

/// What a consumer may ask for on its socket's URL.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConsumerQuery {
    /// `subscriptions`: announce subscription changes made elsewhere, and the subscriptions
    /// found at connect, with `subscribed` / `unsubscribed` frames.
    pub events: Option<String>,
    /// `P:S[:E],…`: resume producer P after sequence number S (of epoch E).
    pub resume: Option<String>,
    /// `1`: the frames waiting for the socket go in one WebSocket frame — JSON texts one per
    /// line, MessagePack frames as one array — for consumers that take many messages a
    /// second. Off by default (one message per frame, as Motience clients expect).
    pub batch: Option<String>,
}

/// Most producers one `?resume=` may name.
const MAX_RESUMES: usize = 1_000;

impl ConsumerQuery {
    fn subscription_events(&self) -> Result<bool, ApiError> {
        let mut subscriptions = false;
        for event in self.events.iter().flat_map(|events| events.split(',')) {
            match event.trim() {
                "subscriptions" => subscriptions = true,
                "" => {}
                other => {
                    return Err(ApiError::validation(format!(
                        "unknown event kind {:?}; the socket offers \"subscriptions\"",
                        other.chars().take(32).collect::<String>()
                    )));
                }
            }
        }
        Ok(subscriptions)
    }

    fn batched(&self) -> Result<bool, ApiError> {
        match self.batch.as_deref() {
            None | Some("" | "0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(other) => Err(ApiError::validation(format!(
                "batch is 1 or 0, not {:?}",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    /// `?resume=P:S[:E],…` read into positions by producer.
    fn resume_positions(&self) -> Result<HashMap<i64, ResumeFrom>, ApiError> {
        let mut positions = HashMap::new();
        let entries = self
            .resume
            .iter()
            .flat_map(|text| text.split(','))
            .filter(|entry| !entry.trim().is_empty());
        for entry in entries {
            if positions.len() == MAX_RESUMES {
                return Err(ApiError::validation(format!(
                    "resume names at most {MAX_RESUMES} producers"
                )));
            }
            let (producer_id, from) = parse_resume(entry.trim()).ok_or_else(|| {
                ApiError::validation(format!(
                    "resume entries are producer_id:since_seq[:epoch], not {:?}",
                    entry.chars().take(64).collect::<String>()
                ))
            })?;
            positions.insert(producer_id, from);
        }
        Ok(positions)
    }
}

/// `P:S` or `P:S:E`.
fn parse_resume(entry: &str) -> Option<(i64, ResumeFrom)> {
    let mut parts = entry.splitn(3, ':');
    let producer_id = parts.next()?.parse().ok()?;
    let since_seq = parts.next()?.parse().ok()?;
    let epoch = match parts.next() {
        Some(epoch)
            if !epoch.is_empty()
                && epoch.len() <= MAX_EPOCH_BYTES
                && epoch.bytes().all(|byte| byte.is_ascii_alphanumeric()) =>
        {
            Some(epoch.to_owned())
        }
        Some(_) => return None,
        None => None,
    };
    Some((producer_id, ResumeFrom { since_seq, epoch }))
}

/// `GET /producer`: a producer's socket. The token comes as `Authorization: Bearer` or
/// `?token=`; a bad token or another role is refused before the upgrade.
pub async fn producer_socket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
    user: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = user.0;
    require_role(&user, Role::Producer)?;
    check_socket_origin(&request, &state)?;
    check_socket_count(
        &state.producer_registry,
        &user,
        state.stream_limits.max_sockets_per_user,
    )
    .await?;
    let seq_floor = state
        .ingest
        .publisher
        .seq_floor(user.user_id)
        .await
        .map_err(ApiError::internal)?;
    let socket = open_socket(&request, body, &state, &user, false)?;
    ProducerConnection::new(ProducerParts {
        user,
        outbox: socket.outbox,
        reader: socket.reader,
        ingest: state.ingest.clone(),
        subscriptions: state.subscriptions.clone(),
        identity: state.identity.clone(),
        registry: state.producer_registry.clone(),
        limits: state.stream_limits,
        seq_floor,
        token_expires_at: socket.token_expires_at,
    })
    .start();
    Ok(socket.response)
}

/// `GET /consumer`: a consumer's socket; it receives every producer the consumer subscribes to,
/// and changes take effect on the open socket.
pub async fn consumer_socket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
    user: Authenticated,
    query: web::Query<ConsumerQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = user.0;
    require_role(&user, Role::Consumer)?;
    check_socket_origin(&request, &state)?;
    let subscription_events = query.subscription_events()?;
    let resume = query.resume_positions()?;
    let batched = query.batched()?;
    check_socket_count(
        &state.session_registry,
        &user,
        state.stream_limits.max_sockets_per_user,
    )
    .await?;
    let socket = open_socket(&request, body, &state, &user, batched)?;
    let _: Addr<ConsumerSession> = ConsumerSession::new(ConsumerParts {
        user,
        outbox: socket.outbox,
        reader: socket.reader,
        fanout: state.fanout.clone(),
        registry: state.session_registry.clone(),
        subscriptions: state.subscriptions.clone(),
        identity: state.identity.clone(),
        limits: state.stream_limits,
        token_expires_at: socket.token_expires_at,
        subscription_events,
        resume,
    })
    .start();
    Ok(socket.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_positions_are_read_strictly() {
        let (producer, from) = parse_resume("17:4521:ab12").unwrap();
        assert_eq!(producer, 17);
        assert_eq!(from.since_seq, 4_521);
        assert_eq!(from.epoch.as_deref(), Some("ab12"));
        assert_eq!(parse_resume("17:0").unwrap().1.epoch, None);
        for bad in ["17", "x:1", "17:-1", "17:1:", "17:1:a\"b", "17:1:a:b"] {
            assert!(parse_resume(bad).is_none(), "{bad}");
        }
    }
}
