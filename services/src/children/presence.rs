//! Where children's control sockets are connected, shared by the instances: one Redis hash,
//! child id → `instance socket connected_at`. An instance records a socket when it opens (and
//! again now and then, in case Redis lost it) and withdraws it when it closes, only if the
//! entry is still its own. An entry whose instance stopped reporting (it died) is removed when
//! read.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use nodegrid_protocol::children::admin::ChildControl;
use uuid::Uuid;

use super::Children;
use crate::bus::BusError;

/// A control socket of this instance: its child, its number here, when it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlSocket {
    pub child_id: Uuid,
    pub socket: u64,
    pub connected_at: DateTime<Utc>,
}

impl Children {
    fn presence_entry(&self, socket: &ControlSocket) -> (String, String) {
        (
            socket.child_id.to_string(),
            format!(
                "{} {} {}",
                self.instance_id,
                socket.socket,
                socket.connected_at.to_rfc3339()
            ),
        )
    }

    /// Records these sockets of this instance as where their children are connected.
    pub async fn record_controls(&self, sockets: &[ControlSocket]) -> Result<(), BusError> {
        let entries = sockets
            .iter()
            .map(|socket| self.presence_entry(socket))
            .collect();
        self.bus.put_child_controls(entries).await
    }

    /// Withdraws a closed socket, unless its child connected again since (anywhere).
    pub async fn withdraw_control(&self, socket: &ControlSocket) -> Result<(), BusError> {
        let (child, value) = self.presence_entry(socket);
        self.bus.remove_child_control(&child, &value).await
    }

    /// Where each of these children is connected, for those connected to a live instance.
    pub async fn controls_of(
        &self,
        children: &[Uuid],
    ) -> Result<HashMap<Uuid, ChildControl>, BusError> {
        let entries = self
            .bus
            .child_controls(children.iter().map(Uuid::to_string).collect())
            .await?;
        if entries.iter().all(Option::is_none) {
            return Ok(HashMap::new());
        }
        let mut live: HashSet<String> = self
            .bus
            .instance_reports()
            .await?
            .into_iter()
            .map(|(instance, _)| instance)
            .collect();
        live.insert(self.instance_id.to_string());
        let mut found = HashMap::new();
        for (child, entry) in children.iter().zip(entries) {
            let Some(entry) = entry else { continue };
            match parse_entry(&entry) {
                Some(control) if live.contains(&control.instance) => {
                    found.insert(*child, control);
                }
                // Left by an instance that died (or unreadable): gone for good.
                _ => {
                    self.bus
                        .remove_child_control(&child.to_string(), &entry)
                        .await?
                }
            }
        }
        Ok(found)
    }
}

/// `instance socket connected_at` → where; `None` for what this version did not write.
fn parse_entry(entry: &str) -> Option<ChildControl> {
    let mut parts = entry.split(' ');
    let (instance, _socket, at) = (parts.next()?, parts.next()?, parts.next()?);
    let connected_at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some(ChildControl {
        instance: instance.to_owned(),
        connected_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_back_and_strange_ones_are_ignored() {
        let control = parse_entry("abc 7 2026-11-30T12:00:00+00:00").unwrap();
        assert_eq!(control.instance, "abc");
        assert_eq!(
            control.connected_at.to_rfc3339(),
            "2026-11-30T12:00:00+00:00"
        );
        assert_eq!(parse_entry("abc 7"), None);
        assert_eq!(parse_entry("abc 7 yesterday"), None);
    }
}
