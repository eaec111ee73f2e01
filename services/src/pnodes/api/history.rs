//! What is derived from the history rows the store read: the network's figures over a window
//! and how they changed, one node's history and the minimum, average and maximum of its
//! figures.

use std::collections::BTreeSet;

use nodegrid_protocol::pnode_api::history::{
    Change, Growth, GrowthMetrics, MetricsSummary, NetworkHistoryResponse, NetworkHistoryRow,
    NetworkHistorySummary, NodeHistoryResponse, NodeHistoryRow, Stats,
};

use crate::pnodes::scoring::round2;

/// The network's rows of the last `hours`, oldest first, with a summary of online nodes.
pub fn network_history(
    rows: Vec<NetworkHistoryRow>,
    hours: i64,
    now: i64,
) -> NetworkHistoryResponse {
    let online: Vec<i32> = rows.iter().map(|r| r.online_pnodes).collect();
    let summary = NetworkHistorySummary {
        data_points: rows.len(),
        hours,
        first_timestamp: rows.first().map(|r| r.timestamp),
        last_timestamp: rows.last().map(|r| r.timestamp),
        min_online_pnodes: online.iter().min().copied(),
        max_online_pnodes: online.iter().max().copied(),
        avg_online_pnodes: average(online.iter().map(|&v| f64::from(v))).unwrap_or(0.0),
    };
    NetworkHistoryResponse {
        history: rows,
        summary,
        timestamp: now,
    }
}

/// How the network changed from the first of `rows` (oldest first) to the last.
pub fn growth(rows: &[NetworkHistoryRow], hours: i64) -> GrowthMetrics {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return GrowthMetrics::NoHistory {
            hours,
            data_points: 0,
            message: "no history in this window yet".to_owned(),
        };
    };
    let of = |figure: fn(&NetworkHistoryRow) -> f64| change(figure(first), figure(last));
    GrowthMetrics::Measured(Box::new(Growth {
        hours,
        data_points: rows.len(),
        total_pnodes: of(|r| f64::from(r.total_pnodes)),
        online_pnodes: of(|r| f64::from(r.online_pnodes)),
        total_storage_committed: of(|r| r.total_storage_committed as f64),
        total_storage_used: of(|r| r.total_storage_used as f64),
        avg_score: of(|r| r.avg_score),
        health_score: of(|r| r.health_score),
    }))
}

/// `start` to `end`, and by how much in per cent of `start` (unknown from 0).
pub fn change(start: f64, end: f64) -> Change {
    Change {
        start,
        end,
        change: round2(end - start),
        change_percent: (start != 0.0).then(|| round2((end - start) / start * 100.0)),
    }
}

pub fn node_history(
    address: String,
    days: i64,
    rows: Vec<NodeHistoryRow>,
    now: i64,
) -> NodeHistoryResponse {
    NodeHistoryResponse {
        address,
        days,
        data_points: rows.len(),
        history: rows,
        timestamp: now,
    }
}

/// One node's availability over its rows of the last `hours`, and the minimum, average and
/// maximum of each of its figures (over the rows that know it).
pub fn metrics_summary(
    address: String,
    hours: i64,
    rows: &[NodeHistoryRow],
    now: i64,
) -> MetricsSummary {
    let online = rows.iter().filter(|r| r.is_online).count();
    let stats = |figure: fn(&NodeHistoryRow) -> Option<f64>| {
        stats_of(&rows.iter().filter_map(figure).collect::<Vec<f64>>())
    };
    MetricsSummary {
        address,
        hours,
        data_points: rows.len(),
        availability_percent: (!rows.is_empty())
            .then(|| round2(online as f64 / rows.len() as f64 * 100.0)),
        score: stats(|r| Some(r.score)),
        trust_score: stats(|r| Some(r.trust_score)),
        capacity_score: stats(|r| Some(r.capacity_score)),
        uptime: stats(|r| r.uptime.map(|v| v as f64)),
        storage_used: stats(|r| r.storage_used.map(|v| v as f64)),
        storage_usage_percent: stats(|r| r.storage_usage_percent),
        peer_count: stats(|r| Some(f64::from(r.peer_count))),
        versions_seen: rows
            .iter()
            .filter_map(|r| r.version.clone())
            .collect::<BTreeSet<String>>(),
        timestamp: now,
    }
}

/// Minimum, maximum and average (rounded to two decimals); all unknown without values.
pub fn stats_of(values: &[f64]) -> Stats {
    if values.is_empty() {
        return Stats {
            min: None,
            max: None,
            avg: None,
        };
    }
    Stats {
        min: Some(values.iter().copied().fold(f64::MAX, f64::min)),
        max: Some(values.iter().copied().fold(f64::MIN, f64::max)),
        avg: average(values.iter().copied()),
    }
}

fn average(values: impl ExactSizeIterator<Item = f64>) -> Option<f64> {
    let count = values.len();
    (count > 0).then(|| round2(values.sum::<f64>() / count as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network_row(timestamp: i64, online: i32, committed: i64, score: f64) -> NetworkHistoryRow {
        NetworkHistoryRow {
            cycle: timestamp / 60,
            timestamp,
            total_pnodes: online + 2,
            online_pnodes: online,
            offline_pnodes: 2,
            public_pnodes: online,
            private_pnodes: 0,
            total_ip_nodes: 3,
            responding_ip_nodes: 3,
            total_storage_committed: committed,
            total_storage_used: 0,
            avg_storage_usage_percent: 0.0,
            avg_uptime_hours: 0.0,
            avg_peer_count: 0.0,
            avg_cpu_percent: 0.0,
            avg_ram_used_percent: 0.0,
            total_active_streams: 0,
            total_bytes_processed: 0,
            avg_score: score,
            health_score: 50.0,
            latest_version: None,
            version_distribution: serde_json::json!({}),
            timestamp_readable: None,
            storage_utilization_ratio: None,
            version_diversity_index: None,
        }
    }

    fn node_row(online: bool, score: f64, uptime: Option<i64>, version: &str) -> NodeHistoryRow {
        NodeHistoryRow {
            timestamp: 0,
            is_online: online,
            version: Some(version.to_owned()),
            uptime,
            storage_committed: None,
            storage_used: None,
            storage_usage_percent: None,
            peer_count: 2,
            peer_sources: Vec::new(),
            score,
            trust_score: score,
            capacity_score: score,
            is_public: None,
        }
    }

    #[test]
    fn growth_compares_the_first_and_last_rows_of_the_window() {
        let rows = [
            network_row(60, 10, 0, 50.0),
            network_row(120, 8, 100, 50.0),
            network_row(180, 15, 300, 62.5),
        ];
        let GrowthMetrics::Measured(measured) = growth(&rows, 24) else {
            panic!("rows give measured growth");
        };
        assert_eq!(measured.data_points, 3);
        assert_eq!(measured.online_pnodes, change(10.0, 15.0));
        assert_eq!(measured.online_pnodes.change_percent, Some(50.0));
        assert_eq!(
            measured.total_storage_committed.change_percent, None,
            "no percentage from 0"
        );
        assert_eq!(measured.avg_score.change, 12.5);
        assert_eq!(measured.health_score.change, 0.0);
        assert_eq!(
            growth(&[], 6),
            GrowthMetrics::NoHistory {
                hours: 6,
                data_points: 0,
                message: "no history in this window yet".to_owned()
            }
        );
    }

    #[test]
    fn network_history_summarises_online_nodes() {
        let rows = vec![network_row(60, 10, 0, 0.0), network_row(120, 5, 0, 0.0)];
        let answer = network_history(rows, 1, 200);
        let summary = &answer.summary;
        assert_eq!(
            (summary.first_timestamp, summary.last_timestamp),
            (Some(60), Some(120))
        );
        assert_eq!(
            (summary.min_online_pnodes, summary.max_online_pnodes),
            (Some(5), Some(10))
        );
        assert_eq!(summary.avg_online_pnodes, 7.5);
        let empty = network_history(Vec::new(), 1, 200).summary;
        assert_eq!(
            (
                empty.data_points,
                empty.min_online_pnodes,
                empty.avg_online_pnodes
            ),
            (0, None, 0.0)
        );
    }

    #[test]
    fn a_metrics_summary_gives_availability_and_each_figures_range() {
        let rows = [
            node_row(true, 60.0, Some(3_600), "0.8.0"),
            node_row(true, 70.0, None, "0.8.0"),
            node_row(false, 0.0, Some(7_200), "0.7.0"),
        ];
        let summary = metrics_summary("a:1".to_owned(), 24, &rows, 0);
        assert_eq!(summary.availability_percent, Some(66.67));
        assert_eq!(
            summary.score,
            Stats {
                min: Some(0.0),
                max: Some(70.0),
                avg: Some(43.33)
            }
        );
        assert_eq!(
            summary.uptime.avg,
            Some(5_400.0),
            "over the rows that know it"
        );
        assert_eq!(summary.storage_used, stats_of(&[]));
        assert_eq!(summary.versions_seen.len(), 2);
        let none = metrics_summary("a:1".to_owned(), 24, &[], 0);
        assert_eq!((none.data_points, none.availability_percent), (0, None));
        assert_eq!(none.score.min, None);
    }
}
