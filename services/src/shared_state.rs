//! State that every instance keeps in memory and that control events keep current.
//!
//! Such state is loaded from Postgres at start, changed by control events from any instance, and
//! reloaded after a Redis reconnect (events may have been missed) and periodically. The
//! `actors` crate drives this for every [`SharedState`] it is given.

use futures_util::future::BoxFuture;
use nodegrid_protocol::control::ControlEvent;

use crate::db::DbError;

pub trait SharedState: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Applies one control event. Must be idempotent: an instance also receives its own events.
    fn apply(&self, event: &ControlEvent);

    /// Replaces the state with a fresh load; returns how many entries it holds.
    fn reload(&self) -> BoxFuture<'static, Result<usize, DbError>>;
}
