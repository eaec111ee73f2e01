//! The seed's ten alert types, checked on one node at a time.
//!
//! | type | severity | condition (defaults) |
//! |---|---|---|
//! | `offline` | critical / warning | offline for more than 7 / 3 days |
//! | `low_uptime` | critical / warning | uptime under 1 hour / 1 day |
//! | `storage_critical` | critical | more than 95 % used |
//! | `storage_warning` | warning | more than 85 % used |
//! | `version_outdated` | critical | 2 or more minor versions behind the latest |
//! | `version_behind` | warning | 1 minor version behind |
//! | `isolated` | critical | seen by at most 1 seed |
//! | `weak_connectivity` | warning | seen by exactly 2 seeds |
//! | `underutilized` | info | less than 5 % used |
//! | `gossip_flapping` | warning | gossip consistency under 0.8 |
//!
//! An offline node gets only the offline check: its other figures are stale.

pub use nodegrid_protocol::pnode_api::node::{Alert, AlertType, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Alert thresholds. Every key is optional in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertThresholds {
    pub offline_critical_secs: i64,
    pub offline_warning_secs: i64,
    pub uptime_critical_secs: u64,
    pub uptime_warning_secs: u64,
    pub storage_critical_percent: f64,
    pub storage_warning_percent: f64,
    pub versions_behind_critical: u32,
    pub versions_behind_warning: u32,
    pub isolated_max_peers: usize,
    pub weak_max_peers: usize,
    pub underutilized_percent: f64,
    pub flapping_consistency: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            offline_critical_secs: 7 * 86_400,
            offline_warning_secs: 3 * 86_400,
            uptime_critical_secs: 3_600,
            uptime_warning_secs: 86_400,
            storage_critical_percent: 95.0,
            storage_warning_percent: 85.0,
            versions_behind_critical: 2,
            versions_behind_warning: 1,
            isolated_max_peers: 1,
            weak_max_peers: 2,
            underutilized_percent: 5.0,
            flapping_consistency: 0.8,
        }
    }
}

/// What the alert checks read of a node.
#[derive(Debug, Clone, Default)]
pub struct AlertInputs<'a> {
    pub is_online: bool,
    pub offline_duration_secs: i64,
    pub uptime_secs: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub version: Option<&'a str>,
    pub latest_version: Option<&'a str>,
    pub peer_count: usize,
    pub consistency: f64,
}

fn alert(
    severity: Severity,
    alert_type: AlertType,
    message: String,
    metric: &str,
    value: Value,
    threshold: Value,
    recommendation: &str,
) -> Alert {
    Alert {
        severity,
        alert_type,
        message,
        metric: metric.to_owned(),
        value,
        threshold,
        recommendation: recommendation.to_owned(),
    }
}

/// `(major, minor)` of a version such as `0.7.0-trynet.2025…` or `v0.8.1`.
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// How many minor versions `current` is behind `latest`; an older major counts as far behind
/// (`u32::MAX`); unparsable versions count as current.
pub fn versions_behind(current: &str, latest: &str) -> u32 {
    match (major_minor(current), major_minor(latest)) {
        (Some((cur_major, cur_minor)), Some((latest_major, latest_minor))) => {
            if cur_major < latest_major {
                u32::MAX
            } else if cur_major == latest_major && cur_minor < latest_minor {
                u32::try_from(latest_minor - cur_minor).unwrap_or(u32::MAX)
            } else {
                0
            }
        }
        _ => 0,
    }
}

pub fn node_alerts(node: &AlertInputs<'_>, limits: &AlertThresholds) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if !node.is_online {
        let duration = node.offline_duration_secs;
        let days = duration / 86_400;
        if duration > limits.offline_critical_secs {
            alerts.push(alert(
                Severity::Critical,
                AlertType::Offline,
                format!("Node offline for {days} days"),
                "offline_duration",
                duration.into(),
                limits.offline_critical_secs.into(),
                "Check if node is permanently down or needs restart",
            ));
        } else if duration > limits.offline_warning_secs {
            alerts.push(alert(
                Severity::Warning,
                AlertType::Offline,
                format!("Node offline for {days} days"),
                "offline_duration",
                duration.into(),
                limits.offline_warning_secs.into(),
                "Monitor node closely",
            ));
        }
        return alerts;
    }

    if let Some(uptime) = node.uptime_secs {
        if uptime < limits.uptime_critical_secs {
            alerts.push(alert(
                Severity::Critical,
                AlertType::LowUptime,
                format!("Very low uptime: {} minutes", uptime / 60),
                "uptime",
                uptime.into(),
                limits.uptime_critical_secs.into(),
                "Node may be restarting frequently",
            ));
        } else if uptime < limits.uptime_warning_secs {
            alerts.push(alert(
                Severity::Warning,
                AlertType::LowUptime,
                format!("Low uptime: {} hours", uptime / 3_600),
                "uptime",
                uptime.into(),
                limits.uptime_warning_secs.into(),
                "Monitor for stability issues",
            ));
        }
    }

    if let Some(usage) = node.storage_usage_percent {
        if usage > limits.storage_critical_percent {
            alerts.push(alert(
                Severity::Critical,
                AlertType::StorageCritical,
                format!("Storage critically full: {usage:.1}%"),
                "storage_usage_percent",
                usage.into(),
                limits.storage_critical_percent.into(),
                "Increase storage capacity immediately or risk data loss",
            ));
        } else if usage > limits.storage_warning_percent {
            alerts.push(alert(
                Severity::Warning,
                AlertType::StorageWarning,
                format!("Storage filling up: {usage:.1}%"),
                "storage_usage_percent",
                usage.into(),
                limits.storage_warning_percent.into(),
                "Plan to increase storage capacity soon",
            ));
        }
        if usage < limits.underutilized_percent {
            alerts.push(alert(
                Severity::Info,
                AlertType::Underutilized,
                format!("Storage underutilized: {usage:.1}%"),
                "storage_usage_percent",
                usage.into(),
                limits.underutilized_percent.into(),
                "Node may need more network usage or has excess capacity",
            ));
        }
    }

    if let (Some(version), Some(latest)) = (node.version, node.latest_version) {
        let behind = versions_behind(version, latest);
        if behind >= limits.versions_behind_critical {
            alerts.push(alert(
                Severity::Critical,
                AlertType::VersionOutdated,
                format!("Running very old version: {version} (latest: {latest})"),
                "version",
                version.into(),
                latest.into(),
                "Upgrade to latest version immediately for security and features",
            ));
        } else if behind >= limits.versions_behind_warning {
            alerts.push(alert(
                Severity::Warning,
                AlertType::VersionBehind,
                format!("Running old version: {version} (latest: {latest})"),
                "version",
                version.into(),
                latest.into(),
                "Upgrade to latest version soon",
            ));
        }
    }

    if node.peer_count <= limits.isolated_max_peers {
        alerts.push(alert(
            Severity::Critical,
            AlertType::Isolated,
            format!("Node isolated with only {} peer(s)", node.peer_count),
            "peer_count",
            node.peer_count.into(),
            limits.isolated_max_peers.into(),
            "Check network configuration and firewall settings",
        ));
    } else if node.peer_count <= limits.weak_max_peers {
        alerts.push(alert(
            Severity::Warning,
            AlertType::WeakConnectivity,
            format!("Weak connectivity with only {} peers", node.peer_count),
            "peer_count",
            node.peer_count.into(),
            limits.weak_max_peers.into(),
            "Improve network connectivity for better reliability",
        ));
    }

    if node.consistency < limits.flapping_consistency {
        alerts.push(alert(
            Severity::Warning,
            AlertType::GossipFlapping,
            "Node frequently appears/disappears from gossip".to_owned(),
            "gossip_consistency",
            node.consistency.into(),
            limits.flapping_consistency.into(),
            "Check for network instability or node restarts",
        ));
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A healthy online node: no alert at all.
    fn healthy() -> AlertInputs<'static> {
        AlertInputs {
            is_online: true,
            offline_duration_secs: 0,
            uptime_secs: Some(10 * 86_400),
            storage_usage_percent: Some(50.0),
            version: Some("0.8.0"),
            latest_version: Some("0.8.0"),
            peer_count: 3,
            consistency: 1.0,
        }
    }

    fn types(node: &AlertInputs<'_>) -> Vec<(String, Severity)> {
        node_alerts(node, &AlertThresholds::default())
            .into_iter()
            .map(|alert| (alert.alert_type.as_str().to_owned(), alert.severity))
            .collect()
    }

    fn one(alert_type: &str, severity: Severity) -> Vec<(String, Severity)> {
        vec![(alert_type.to_owned(), severity)]
    }

    #[test]
    fn a_healthy_node_has_no_alerts() {
        assert!(types(&healthy()).is_empty());
    }

    #[test]
    fn offline_at_and_around_its_thresholds() {
        let offline = |secs| AlertInputs {
            is_online: false,
            offline_duration_secs: secs,
            ..healthy()
        };
        assert!(types(&offline(3 * 86_400)).is_empty());
        assert_eq!(
            types(&offline(3 * 86_400 + 1)),
            one("offline", Severity::Warning)
        );
        assert_eq!(
            types(&offline(7 * 86_400)),
            one("offline", Severity::Warning)
        );
        assert_eq!(
            types(&offline(7 * 86_400 + 1)),
            one("offline", Severity::Critical)
        );
    }

    #[test]
    fn low_uptime_at_and_around_its_thresholds() {
        let up = |secs| AlertInputs {
            uptime_secs: Some(secs),
            ..healthy()
        };
        assert_eq!(types(&up(3_599)), one("low_uptime", Severity::Critical));
        assert_eq!(types(&up(3_600)), one("low_uptime", Severity::Warning));
        assert_eq!(types(&up(86_399)), one("low_uptime", Severity::Warning));
        assert!(types(&up(86_400)).is_empty());
    }

    #[test]
    fn storage_alerts_at_and_around_their_thresholds() {
        let used = |percent| AlertInputs {
            storage_usage_percent: Some(percent),
            ..healthy()
        };
        assert!(types(&used(85.0)).is_empty());
        assert_eq!(
            types(&used(85.01)),
            one("storage_warning", Severity::Warning)
        );
        assert_eq!(
            types(&used(95.0)),
            one("storage_warning", Severity::Warning)
        );
        assert_eq!(
            types(&used(95.01)),
            one("storage_critical", Severity::Critical)
        );
        assert_eq!(types(&used(4.99)), one("underutilized", Severity::Info));
        assert!(types(&used(5.0)).is_empty());
    }

    #[test]
    fn version_alerts_count_minor_versions_behind_the_latest() {
        let on = |version| AlertInputs {
            version: Some(version),
            latest_version: Some("0.8.0-trynet.20251208141952.3b3bb24"),
            ..healthy()
        };
        assert!(types(&on("0.8.1")).is_empty());
        assert_eq!(
            types(&on("0.7.9")),
            one("version_behind", Severity::Warning)
        );
        assert_eq!(
            types(&on("0.6.0")),
            one("version_outdated", Severity::Critical)
        );
        assert!(types(&on("unparsable")).is_empty());
        assert_eq!(versions_behind("v0.7.0-trynet.1", "0.8.0"), 1);
        assert_eq!(versions_behind("0.9.0", "1.0.0"), u32::MAX);
    }

    #[test]
    fn connectivity_alerts_at_and_around_their_thresholds() {
        let peers = |count| AlertInputs {
            peer_count: count,
            ..healthy()
        };
        assert_eq!(types(&peers(0)), one("isolated", Severity::Critical));
        assert_eq!(types(&peers(1)), one("isolated", Severity::Critical));
        assert_eq!(
            types(&peers(2)),
            one("weak_connectivity", Severity::Warning)
        );
        assert!(types(&peers(3)).is_empty());
    }

    #[test]
    fn flapping_below_its_consistency_threshold() {
        let consistent = |score| AlertInputs {
            consistency: score,
            ..healthy()
        };
        assert!(types(&consistent(0.8)).is_empty());
        assert_eq!(
            types(&consistent(0.79)),
            one("gossip_flapping", Severity::Warning)
        );
    }

    #[test]
    fn unknown_figures_raise_no_alert() {
        let unknown = AlertInputs {
            uptime_secs: None,
            storage_usage_percent: None,
            version: None,
            ..healthy()
        };
        assert!(types(&unknown).is_empty());
    }
}
