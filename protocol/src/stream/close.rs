//! Close codes the server uses, with the reason text it sends.

/// No pong or frame for the idle timeout.
pub const IDLE_TIMEOUT: (u16, &str) = (4000, "idle_timeout");
/// Too many bad frames in a short time.
pub const TOO_MANY_ERRORS: (u16, &str) = (4002, "too_many_errors");
/// An admin blocked the user.
pub const USER_BLOCKED: (u16, &str) = (4003, "user_blocked");
/// The consumer did not read and its outbound buffer overflowed.
pub const SLOW_CONSUMER: (u16, &str) = (4008, "slow_consumer");
/// The server is shutting down; reconnect (to another instance).
pub const GOING_AWAY: (u16, &str) = (1001, "server_shutdown");
/// A frame, or a fragmented message, declared more bytes than the hard limit.
pub const TOO_LARGE: (u16, &str) = (1009, "too_large");
/// A text frame was not valid UTF-8.
pub const INVALID_UTF8: (u16, &str) = (1007, "invalid_utf8");
/// The client broke the WebSocket protocol.
pub const PROTOCOL_ERROR: (u16, &str) = (1002, "protocol_error");
/// The server failed to set the socket up.
pub const INTERNAL: (u16, &str) = (1011, "internal_error");
/// The access token the socket runs on expired and no newer one came in a `refresh` frame.
pub const TOKEN_EXPIRED: (u16, &str) = (4001, "token_expired");
/// The login session the socket belongs to ended (logout, or the session was revoked).
pub const SESSION_ENDED: (u16, &str) = (4004, "session_ended");
/// An admin disconnected this socket (the user is not blocked: it may connect again).
pub const DISCONNECTED: (u16, &str) = (4005, "disconnected");
/// The user already has the most sockets allowed.
pub const TOO_MANY_SOCKETS: (u16, &str) = (4009, "too_many_sockets");
