//! What changed in the network from one cycle to the next: the messages of
//! `/api/xandeum/ws/pnodes`, and the `pnode.*` events that webhooks receive.
//!
//! The leader computes a cycle's changes once, stores them with the cycle's snapshot, and every
//! instance hands the same list to its sockets; a socket's filters pick from it.

use serde::{Deserialize, Serialize};

use super::network::SnapshotSummary;
use super::node::{AlertType, Severity};
use super::params::{Choice, InvalidQuery, StatusFilter, chosen};
use super::queries::{NodeFacts, filters_pass, node_filter_checks};

/// A node's score must move by at least this many points between two cycles to be a change.
pub const SCORE_CHANGE_POINTS: f64 = 1.0;

/// The kinds of change, each named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// First seen by this deployment.
    Appeared,
    /// Was online, is not.
    WentOffline,
    /// Was offline, is online again.
    CameBack,
    /// Online both cycles; the score moved by at least [`SCORE_CHANGE_POINTS`].
    ScoreChanged,
    /// Online both cycles; the tier is another.
    TierChanged,
    AlertRaised,
    AlertCleared,
}

impl ChangeKind {
    /// The event a webhook receives for this change, if the change is one
    /// (score movements are for live dashboards only).
    pub const fn event_type(self) -> Option<&'static str> {
        match self {
            ChangeKind::Appeared | ChangeKind::CameBack => Some("pnode.online"),
            ChangeKind::WentOffline => Some("pnode.offline"),
            ChangeKind::TierChanged => Some("pnode.tier_changed"),
            ChangeKind::AlertRaised => Some("pnode.alert_raised"),
            ChangeKind::AlertCleared => Some("pnode.alert_cleared"),
            ChangeKind::ScoreChanged => None,
        }
    }
}

/// The node a change is about, as it is after the cycle: what the filters look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangedNode {
    pub address: String,
    pub pubkey: Option<String>,
    pub is_online: bool,
    pub version: Option<String>,
    pub is_public: Option<bool>,
    pub score: f64,
    pub tier: String,
}

/// The alert a change raised or cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangedAlert {
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    pub severity: Severity,
    pub message: String,
}

/// One change of one node in one cycle.
///
/// No field is ever skipped when empty: changes are stored inside the MessagePack snapshot
/// record, whose structs are positional arrays (a skipped field would shift the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PnodeChange {
    pub change: ChangeKind,
    pub node: ChangedNode,
    /// With `score_changed`; else null.
    #[serde(default)]
    pub previous_score: Option<f64>,
    /// With `tier_changed`; else null.
    #[serde(default)]
    pub previous_tier: Option<String>,
    /// With `alert_raised` and `alert_cleared`; else null.
    #[serde(default)]
    pub alert: Option<ChangedAlert>,
}

/// A message of `/api/xandeum/ws/pnodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PnodeSocketMessage {
    /// First, on connect (and again after a socket fell too far behind to be sent every
    /// cycle): where the network stands.
    Snapshot {
        summary: SnapshotSummary,
        timestamp: i64,
    },
    /// After each cycle: the summary and the changes that pass the socket's filters.
    /// `previous_cycle` is the cycle the changes are counted from: when it is not
    /// `summary.cycle - 1`, this instance missed a cycle and the changes between are not known
    /// to it (fetch `/pnodes` to catch up).
    Cycle {
        summary: SnapshotSummary,
        previous_cycle: i64,
        changes: Vec<PnodeChange>,
        timestamp: i64,
    },
}

/// `GET /api/xandeum/ws/pnodes`: the filters of `/pnodes`, applied to each change's node as it
/// is after the cycle. `status` defaults to `all` here, so that a node going offline is seen.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PnodeSocketQuery {
    /// `online`, `offline` or `all` (default).
    #[cfg_attr(feature = "openapi", param(value_type = Option<StatusFilter>, inline))]
    pub status: Option<Choice<StatusFilter>>,
    /// Only this exact version.
    pub version: Option<String>,
    /// Only public (`true`) or private (`false`) nodes.
    pub public: Option<bool>,
    /// Only nodes scoring at least this (0 to 100).
    pub min_score: Option<f64>,
    /// Part of the address or pubkey, any case.
    pub search: Option<String>,
}

/// A socket's checked filters.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFilter {
    pub status: StatusFilter,
    pub version: Option<String>,
    pub public: Option<bool>,
    pub min_score: Option<f64>,
    /// Lower-cased.
    pub needle: Option<String>,
}

impl Default for ChangeFilter {
    fn default() -> ChangeFilter {
        ChangeFilter {
            status: StatusFilter::All,
            version: None,
            public: None,
            min_score: None,
            needle: None,
        }
    }
}

impl PnodeSocketQuery {
    pub fn check(self) -> Result<ChangeFilter, InvalidQuery> {
        let status = chosen("status", self.status.as_ref(), StatusFilter::All)?;
        let needle = node_filter_checks(self.min_score, self.search.as_deref())?;
        if self
            .version
            .as_ref()
            .is_some_and(|version| version.len() > 200)
        {
            return Err(InvalidQuery("version is at most 200 characters".into()));
        }
        Ok(ChangeFilter {
            status,
            version: self.version,
            public: self.public,
            min_score: self.min_score,
            needle,
        })
    }
}

impl ChangeFilter {
    /// Whether no filter is set: every change passes.
    pub fn is_open(&self) -> bool {
        *self == ChangeFilter::default()
    }

    /// The `/pnodes` rules, on the node as it is after the cycle.
    pub fn matches(&self, node: &ChangedNode) -> bool {
        let facts = NodeFacts {
            is_online: node.is_online,
            version: node.version.as_deref(),
            is_public: node.is_public,
            score: node.score,
        };
        filters_pass(
            self.status,
            self.version.as_deref(),
            self.public,
            self.min_score,
            facts,
        ) && self.needle.as_ref().is_none_or(|needle| {
            contains_lowercase(&node.address, needle)
                || node
                    .pubkey
                    .as_deref()
                    .is_some_and(|pubkey| contains_lowercase(pubkey, needle))
        })
    }
}

fn contains_lowercase(text: &str, needle: &str) -> bool {
    text.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, online: bool, score: f64) -> ChangedNode {
        ChangedNode {
            address: address.to_owned(),
            pubkey: Some("PubKeyABC".into()),
            is_online: online,
            version: Some("0.8.0".into()),
            is_public: Some(true),
            score,
            tier: "low_risk".into(),
        }
    }

    #[test]
    fn filters_apply_as_on_pnodes_with_all_statuses_by_default() {
        let open = PnodeSocketQuery::default().check().expect("filter");
        assert!(open.is_open());
        assert!(open.matches(&node("1.2.3.4:9001", false, 0.0)));
        let query = PnodeSocketQuery {
            status: Some(Choice::Known(StatusFilter::Online)),
            min_score: Some(50.0),
            search: Some("pubkeyabc".into()),
            ..PnodeSocketQuery::default()
        };
        let filter = query.check().expect("filter");
        assert!(filter.matches(&node("1.2.3.4:9001", true, 60.0)));
        assert!(!filter.matches(&node("1.2.3.4:9001", false, 60.0)));
        assert!(!filter.matches(&node("1.2.3.4:9001", true, 40.0)));
        let bad = PnodeSocketQuery {
            min_score: Some(101.0),
            ..PnodeSocketQuery::default()
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn only_lasting_changes_are_webhook_events() {
        assert_eq!(ChangeKind::ScoreChanged.event_type(), None);
        assert_eq!(ChangeKind::Appeared.event_type(), Some("pnode.online"));
        assert_eq!(ChangeKind::WentOffline.event_type(), Some("pnode.offline"));
    }
}
