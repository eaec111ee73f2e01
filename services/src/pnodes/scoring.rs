//! The seed's scores, as pure functions of one node's record: trust (uptime, gossip presence,
//! version, consistency), capacity (committed storage, usage balance, growth), the
//! stake-confidence composite, and the network health score. Weights and thresholds come from
//! [`ScoringConfig`]; its defaults are the seed's.

pub use nodegrid_protocol::pnode_api::network::{HealthFactors, NetworkHealth};
pub use nodegrid_protocol::pnode_api::node::{
    CapacityBreakdown, CapacityScore, Scores, StakeConfidence, TrustBreakdown, TrustScore,
};
use serde::{Deserialize, Serialize};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAY_SECS: f64 = 86_400.0;

/// The weights of the scores and where they saturate. Every key is optional in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Trust points for uptime, full at `uptime_full_days`.
    pub trust_uptime_points: f64,
    pub uptime_full_days: f64,
    /// Trust points for gossip presence, full when seen by `gossip_full_peers` seeds.
    pub trust_gossip_points: f64,
    pub gossip_full_peers: f64,
    /// Trust points for running the latest version.
    pub trust_version_points: f64,
    /// Trust points times the gossip consistency (0..1).
    pub trust_consistency_points: f64,
    /// Capacity points for committed storage, full at `committed_full_gib`.
    pub capacity_committed_points: f64,
    pub committed_full_gib: f64,
    /// Capacity points for a usage inside `usage_optimal_min..=usage_optimal_max` percent.
    pub capacity_balance_points: f64,
    pub usage_optimal_min: f64,
    pub usage_optimal_max: f64,
    /// Outside the band, 0 points (the seed document) or points falling linearly to 0 at 0 %
    /// and 100 % (what the seed's published code does).
    pub usage_partial_credit: bool,
    /// Capacity points times the growth trend (0..1; 0.5 when unknown).
    pub capacity_growth_points: f64,
    /// Weight of trust in the composite; capacity gets the rest.
    pub composite_trust_weight: f64,
    /// Composite at or above: `low_risk`; at or above `medium_risk_min`: `medium_risk`.
    pub low_risk_min: f64,
    pub medium_risk_min: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            trust_uptime_points: 40.0,
            uptime_full_days: 30.0,
            trust_gossip_points: 30.0,
            gossip_full_peers: 3.0,
            trust_version_points: 20.0,
            trust_consistency_points: 10.0,
            capacity_committed_points: 30.0,
            committed_full_gib: 100.0,
            capacity_balance_points: 40.0,
            usage_optimal_min: 20.0,
            usage_optimal_max: 80.0,
            usage_partial_credit: false,
            capacity_growth_points: 30.0,
            composite_trust_weight: 0.6,
            low_risk_min: 80.0,
            medium_risk_min: 60.0,
        }
    }
}

/// What a score is computed from; missing values count as the seed's defaults (0, and 1.0
/// for consistency, 0.5 for growth).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreInputs<'a> {
    pub uptime_secs: Option<u64>,
    pub peer_count: usize,
    pub version: Option<&'a str>,
    pub latest_version: Option<&'a str>,
    pub consistency: Option<f64>,
    pub storage_committed: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub growth_trend: Option<f64>,
}

/// Rounded to two decimals, as the seed answers.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn saturating(value: f64, full: f64) -> f64 {
    if full <= 0.0 {
        return 1.0;
    }
    (value / full).clamp(0.0, 1.0)
}

pub fn trust_score(inputs: &ScoreInputs<'_>, config: &ScoringConfig) -> TrustScore {
    let uptime_days = inputs.uptime_secs.unwrap_or(0) as f64 / DAY_SECS;
    let uptime = saturating(uptime_days, config.uptime_full_days) * config.trust_uptime_points;
    let gossip =
        saturating(inputs.peer_count as f64, config.gossip_full_peers) * config.trust_gossip_points;
    let version = match (inputs.version, inputs.latest_version) {
        (Some(version), Some(latest)) if version == latest => config.trust_version_points,
        _ => 0.0,
    };
    let consistency =
        inputs.consistency.unwrap_or(1.0).clamp(0.0, 1.0) * config.trust_consistency_points;
    TrustScore {
        score: round2(uptime + gossip + version + consistency),
        breakdown: TrustBreakdown {
            uptime: round2(uptime),
            gossip_presence: round2(gossip),
            version_compliance: round2(version),
            gossip_consistency: round2(consistency),
        },
    }
}

pub fn capacity_score(inputs: &ScoreInputs<'_>, config: &ScoringConfig) -> CapacityScore {
    let committed_gib = inputs.storage_committed.unwrap_or(0) as f64 / GIB;
    let committed =
        saturating(committed_gib, config.committed_full_gib) * config.capacity_committed_points;
    let usage = inputs.storage_usage_percent.unwrap_or(0.0);
    let (low, high) = (config.usage_optimal_min, config.usage_optimal_max);
    // Full points inside the optimal band; outside it none, or (partial credit) points
    // falling linearly to 0 at 0 % and at 100 %.
    let balance_ratio = if (low..=high).contains(&usage) {
        1.0
    } else if !config.usage_partial_credit {
        0.0
    } else if usage < low {
        saturating(usage, low)
    } else {
        saturating(100.0 - usage, 100.0 - high)
    };
    let balance = balance_ratio * config.capacity_balance_points;
    let growth = inputs.growth_trend.unwrap_or(0.5).clamp(0.0, 1.0) * config.capacity_growth_points;
    CapacityScore {
        score: round2(committed + balance + growth),
        breakdown: CapacityBreakdown {
            storage_committed: round2(committed),
            usage_balance: round2(balance),
            growth_trend: round2(growth),
        },
    }
}

pub fn stake_confidence(trust: f64, capacity: f64, config: &ScoringConfig) -> StakeConfidence {
    let weight = config.composite_trust_weight.clamp(0.0, 1.0);
    let composite = trust * weight + capacity * (1.0 - weight);
    let (rating, color) = if composite >= config.low_risk_min {
        ("low_risk", "#10b981")
    } else if composite >= config.medium_risk_min {
        ("medium_risk", "#f59e0b")
    } else {
        ("high_risk", "#ef4444")
    };
    StakeConfidence {
        composite_score: round2(composite),
        rating: rating.to_owned(),
        color: color.to_owned(),
    }
}

pub fn all_scores(inputs: &ScoreInputs<'_>, config: &ScoringConfig) -> Scores {
    let trust = trust_score(inputs, config);
    let capacity = capacity_score(inputs, config);
    let stake_confidence = stake_confidence(trust.score, capacity.score, config);
    Scores {
        trust,
        capacity,
        stake_confidence,
    }
}

/// What the health score needs to know of the network.
#[derive(Debug, Clone, Default)]
pub struct HealthInputs {
    pub total_nodes: usize,
    pub online_nodes: usize,
    /// Online nodes on the most common version.
    pub most_common_version_nodes: usize,
    /// Sum of the composite scores of online nodes.
    pub composite_sum: f64,
    /// Sum of the peer counts of online nodes.
    pub peer_count_sum: usize,
}

/// Availability 30 + version consistency 25 + node quality 25 + connectivity 20; healthy at
/// 80, fair at 60, degraded at 40, else critical (unknown with no nodes at all).
pub fn network_health(inputs: &HealthInputs, config: &ScoringConfig) -> NetworkHealth {
    if inputs.total_nodes == 0 {
        return NetworkHealth {
            health_score: 0.0,
            status: "unknown".to_owned(),
            factors: HealthFactors::default(),
        };
    }
    let online = inputs.online_nodes as f64;
    let availability = online / inputs.total_nodes as f64 * 30.0;
    let (version, quality, connectivity) = if inputs.online_nodes == 0 {
        (0.0, 0.0, 0.0)
    } else {
        (
            inputs.most_common_version_nodes as f64 / online * 25.0,
            inputs.composite_sum / online / 100.0 * 25.0,
            saturating(
                inputs.peer_count_sum as f64 / online,
                config.gossip_full_peers,
            ) * 20.0,
        )
    };
    let score = availability + version + quality + connectivity;
    let status = if score >= 80.0 {
        "healthy"
    } else if score >= 60.0 {
        "fair"
    } else if score >= 40.0 {
        "degraded"
    } else {
        "critical"
    };
    NetworkHealth {
        health_score: round2(score),
        status: status.to_owned(),
        factors: HealthFactors {
            availability: round2(availability),
            version_consistency: round2(version),
            node_quality: round2(quality),
            connectivity: round2(connectivity),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> ScoreInputs<'static> {
        // 15 days up, seen by 2 seeds, on the latest version, consistency 0.9,
        // 50 GiB committed, 10 % used, storage grew since the last cycle.
        ScoreInputs {
            uptime_secs: Some(15 * 86_400),
            peer_count: 2,
            version: Some("0.8.0"),
            latest_version: Some("0.8.0"),
            consistency: Some(0.9),
            storage_committed: Some(50 * 1024 * 1024 * 1024),
            storage_usage_percent: Some(10.0),
            growth_trend: Some(1.0),
        }
    }

    #[test]
    fn trust_on_a_fixture_matches_the_hand_computed_value() {
        let trust = trust_score(&fixture(), &ScoringConfig::default());
        // uptime 15/30*40 = 20; gossip 2/3*30 = 20; version 20; consistency 0.9*10 = 9.
        assert_eq!(trust.breakdown.uptime, 20.0);
        assert_eq!(trust.breakdown.gossip_presence, 20.0);
        assert_eq!(trust.breakdown.version_compliance, 20.0);
        assert_eq!(trust.breakdown.gossip_consistency, 9.0);
        assert_eq!(trust.score, 69.0);
    }

    #[test]
    fn capacity_on_a_fixture_matches_the_hand_computed_value() {
        let capacity = capacity_score(&fixture(), &ScoringConfig::default());
        // committed 50/100*30 = 15; 10 % is outside the 20-80 % band: 0; growth 1.0*30 = 30.
        assert_eq!(capacity.breakdown.storage_committed, 15.0);
        assert_eq!(capacity.breakdown.usage_balance, 0.0);
        assert_eq!(capacity.breakdown.growth_trend, 30.0);
        assert_eq!(capacity.score, 45.0);
        let inside = ScoreInputs {
            storage_usage_percent: Some(20.0),
            ..fixture()
        };
        assert_eq!(
            capacity_score(&inside, &ScoringConfig::default()).score,
            85.0
        );
        // With partial credit: 10 % → 10/20*40 = 20; 90 % → (100-90)/20*40 = 20.
        let partial = ScoringConfig {
            usage_partial_credit: true,
            ..ScoringConfig::default()
        };
        assert_eq!(
            capacity_score(&fixture(), &partial).breakdown.usage_balance,
            20.0
        );
        let full = ScoreInputs {
            storage_usage_percent: Some(90.0),
            ..fixture()
        };
        assert_eq!(
            capacity_score(&full, &partial).breakdown.usage_balance,
            20.0
        );
    }

    #[test]
    fn stake_confidence_weights_trust_sixty_percent_and_rates_at_its_thresholds() {
        let config = ScoringConfig::default();
        // 69*0.6 + 65*0.4 = 41.4 + 26 = 67.4
        let confidence = stake_confidence(69.0, 65.0, &config);
        assert_eq!(confidence.composite_score, 67.4);
        assert_eq!(confidence.rating, "medium_risk");
        assert_eq!(stake_confidence(80.0, 80.0, &config).rating, "low_risk");
        assert_eq!(
            stake_confidence(79.99, 79.99, &config).rating,
            "medium_risk"
        );
        assert_eq!(stake_confidence(60.0, 60.0, &config).rating, "medium_risk");
        assert_eq!(stake_confidence(59.99, 59.99, &config).rating, "high_risk");
        assert_eq!(stake_confidence(59.99, 59.99, &config).color, "#ef4444");
    }

    #[test]
    fn missing_data_scores_with_the_seed_defaults() {
        let config = ScoringConfig::default();
        let scores = all_scores(&ScoreInputs::default(), &config);
        // Only consistency (1.0 → 10) and growth (0.5 → 15) score without data.
        assert_eq!(scores.trust.score, 10.0);
        assert_eq!(scores.capacity.score, 15.0);
        assert_eq!(scores.stake_confidence.composite_score, 12.0);
        // A different latest version gives no version points.
        let other = ScoreInputs {
            latest_version: Some("0.9.0"),
            ..fixture()
        };
        assert_eq!(
            trust_score(&other, &config).breakdown.version_compliance,
            0.0
        );
    }

    #[test]
    fn network_health_adds_its_four_factors() {
        let config = ScoringConfig::default();
        // 8 of 10 online → 24; 6 of 8 on the common version → 18.75; average composite 60
        // → 15; average 1.5 peers of 3 → 10. Total 67.75: fair.
        let health = network_health(
            &HealthInputs {
                total_nodes: 10,
                online_nodes: 8,
                most_common_version_nodes: 6,
                composite_sum: 480.0,
                peer_count_sum: 12,
            },
            &config,
        );
        assert_eq!(health.factors.availability, 24.0);
        assert_eq!(health.factors.version_consistency, 18.75);
        assert_eq!(health.factors.node_quality, 15.0);
        assert_eq!(health.factors.connectivity, 10.0);
        assert_eq!(health.health_score, 67.75);
        assert_eq!(health.status, "fair");
        assert_eq!(
            network_health(&HealthInputs::default(), &config).status,
            "unknown"
        );
    }
}
