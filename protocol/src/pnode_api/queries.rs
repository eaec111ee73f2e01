//! Each pNode route's query parameters, and the checked request each becomes: defaults filled
//! in, ranges and closed sets checked, in the order the parameters are listed (the first
//! unacceptable one is the one reported).

use serde::{Deserialize, Serialize};

use super::node::{AlertType, Severity};
use super::params::{
    Choice, ConsistencySortKey, InvalidQuery, PnodeSortKey, SortOrder, StatusFilter, chosen,
    in_range,
};

/// The furthest `skip` accepted: larger values can only be mistakes.
const MAX_SKIP: usize = 10_000_000;

/// `GET /api/xandeum/pnodes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PnodesQuery {
    /// `online` (default), `offline` or `all`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<StatusFilter>, inline))]
    pub status: Option<Choice<StatusFilter>>,
    /// 1 to 1000 [default: 100].
    pub limit: Option<usize>,
    /// Nodes to skip [default: 0].
    pub skip: Option<usize>,
    /// `last_seen`, `uptime`, `score` (default), `storage_used`, `storage_usage_percent` or `first_seen`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<PnodeSortKey>, inline))]
    pub sort_by: Option<Choice<PnodeSortKey>>,
    /// `asc` or `desc` (default).
    #[cfg_attr(feature = "openapi", param(value_type = Option<SortOrder>, inline))]
    pub sort_order: Option<Choice<SortOrder>>,
    /// Only this exact version.
    pub version: Option<String>,
    /// Only public (`true`) or private (`false`) nodes.
    pub public: Option<bool>,
    /// Only nodes scoring at least this (0 to 100).
    pub min_score: Option<f64>,
    /// Part of the address or pubkey, any case.
    pub search: Option<String>,
}

/// The filters of a `/pnodes` request, defaults filled in, as its answer repeats them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PnodeFilters {
    pub status: StatusFilter,
    pub sort_by: PnodeSortKey,
    pub sort_order: SortOrder,
    pub version: Option<String>,
    pub public: Option<bool>,
    pub min_score: Option<f64>,
    /// As sent.
    pub search: Option<String>,
}

/// A checked `/pnodes` request.
#[derive(Debug, Clone, PartialEq)]
pub struct PnodesRequest {
    pub filters: PnodeFilters,
    pub limit: usize,
    pub skip: usize,
    /// `search` lower-cased; `None` when empty.
    pub needle: Option<String>,
}

impl PnodesQuery {
    pub fn check(self) -> Result<PnodesRequest, InvalidQuery> {
        let status = chosen("status", self.status.as_ref(), StatusFilter::Online)?;
        let limit = in_range("limit", self.limit, 100, 1, 1_000)?;
        let skip = in_range("skip", self.skip, 0, 0, MAX_SKIP)?;
        let sort_by = chosen("sort_by", self.sort_by.as_ref(), PnodeSortKey::Score)?;
        let sort_order = chosen("sort_order", self.sort_order.as_ref(), SortOrder::Desc)?;
        let needle = node_filter_checks(self.min_score, self.search.as_deref())?;
        Ok(PnodesRequest {
            filters: PnodeFilters {
                status,
                sort_by,
                sort_order,
                version: self.version,
                public: self.public,
                min_score: self.min_score,
                search: self.search,
            },
            limit,
            skip,
            needle,
        })
    }
}

/// What the node filters look at of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    pub is_online: bool,
    pub version: Option<&'a str>,
    pub is_public: Option<bool>,
    pub score: f64,
}

/// The rule of the node filters `/pnodes` and the live socket share (`search` apart: each
/// matches it against its own lower-cased text): status, exact version, public or private (an
/// unknown one counts as private), least score.
pub fn filters_pass(
    status: StatusFilter,
    version: Option<&str>,
    public: Option<bool>,
    min_score: Option<f64>,
    node: NodeFacts<'_>,
) -> bool {
    (match status {
        StatusFilter::Online => node.is_online,
        StatusFilter::Offline => !node.is_online,
        StatusFilter::All => true,
    }) && version.is_none_or(|version| node.version == Some(version))
        && public.is_none_or(|public| node.is_public.unwrap_or(false) == public)
        && min_score.is_none_or(|min| node.score >= min)
}

/// The checks of the node filters `/pnodes` and the live socket share: `min_score` from 0 to
/// 100, `search` at most 200 characters. Returns `search` lower-cased (`None` when empty).
pub fn node_filter_checks(
    min_score: Option<f64>,
    search: Option<&str>,
) -> Result<Option<String>, InvalidQuery> {
    if min_score.is_some_and(|score| !(0.0..=100.0).contains(&score)) {
        return Err(InvalidQuery("min_score must be between 0 and 100".into()));
    }
    let needle = search
        .map(str::to_lowercase)
        .filter(|needle| !needle.is_empty());
    if needle.as_ref().is_some_and(|needle| needle.len() > 200) {
        return Err(InvalidQuery("search is at most 200 characters".into()));
    }
    Ok(needle)
}

/// `GET /api/xandeum/recommendations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RecommendationsQuery {
    /// 1 to 50 [default: 10].
    pub limit: Option<usize>,
    /// Least uptime, in days [default: 7].
    pub min_uptime_days: Option<f64>,
    /// Only public nodes [default: false].
    pub require_public: Option<bool>,
}

/// A checked `/recommendations` request, as its answer repeats it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendationFilters {
    pub limit: usize,
    pub min_uptime_days: f64,
    pub require_public: bool,
}

impl RecommendationsQuery {
    pub fn check(&self) -> Result<RecommendationFilters, InvalidQuery> {
        Ok(RecommendationFilters {
            limit: in_range("limit", self.limit, 10, 1, 50)?,
            min_uptime_days: in_range("min_uptime_days", self.min_uptime_days, 7.0, 0.0, 3_650.0)?,
            require_public: self.require_public.unwrap_or(false),
        })
    }
}

/// `GET /api/xandeum/pnodes/compare`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct CompareQuery {
    /// Two to five addresses, comma-separated (spaces around them and empty ones are
    /// ignored).
    #[cfg_attr(
        feature = "openapi",
        param(
            required = true,
            // Two to five parts with something other than white space, between commas.
            pattern = r"^[,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^,]*[^,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?(?:[,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*,[,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^,]*[^,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?){1,4}[,\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub addresses: Option<String>,
}

impl CompareQuery {
    /// The addresses, trimmed, empty ones left out.
    pub fn check(&self) -> Result<Vec<String>, InvalidQuery> {
        let addresses: Vec<String> = self
            .addresses
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        if !(2..=5).contains(&addresses.len()) {
            return Err(InvalidQuery(
                "addresses must name 2 to 5 pNodes, comma-separated".into(),
            ));
        }
        Ok(addresses)
    }
}

/// `GET /api/xandeum/registry` and `GET /api/xandeum/graveyard`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// 1 to 1000 [default: 100].
    pub limit: Option<usize>,
    /// Entries to skip [default: 0].
    pub skip: Option<usize>,
    /// Graveyard: offline for at least this many days [default: 90].
    pub days: Option<i64>,
}

/// Which part of a list to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub skip: usize,
}

impl PageQuery {
    /// The registry's page (`days` is not read).
    pub fn registry(&self) -> Result<Page, InvalidQuery> {
        Ok(Page {
            limit: in_range("limit", self.limit, 100, 1, 1_000)?,
            skip: in_range("skip", self.skip, 0, 0, MAX_SKIP)?,
        })
    }

    /// The graveyard's threshold in days (0 to 3650) and page.
    pub fn graveyard(&self) -> Result<(i64, Page), InvalidQuery> {
        let days = in_range("days", self.days, 90, 0, 3_650)?;
        Ok((days, self.registry()?))
    }
}

/// `DELETE /api/xandeum/prune`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PruneQuery {
    /// Delete entries unseen for this many days, 1 to 3650 [default: 90].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 3_650))]
    pub days: Option<i64>,
}

impl PruneQuery {
    pub fn check(&self) -> Result<i64, InvalidQuery> {
        in_range("days", self.days, 90, 1, 3_650)
    }
}

/// `GET /api/xandeum/network/history` and `/network/growth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HoursQuery {
    /// The window, in hours, 1 to 720 [default: 24].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 720))]
    pub hours: Option<i64>,
}

impl HoursQuery {
    /// The window of the network's history: up to 30 days.
    pub fn network_window(&self) -> Result<i64, InvalidQuery> {
        in_range("hours", self.hours, 24, 1, 720)
    }
}

/// `GET /api/xandeum/node/{address}/metrics-summary`: a shorter window than the network's
/// (a type of its own, so that the document states its range).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct NodeHoursQuery {
    /// The window, in hours, 1 to 168 [default: 24].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 168))]
    pub hours: Option<i64>,
}

impl NodeHoursQuery {
    /// The window of one node's metrics summary: up to a week.
    pub fn node_window(&self) -> Result<i64, InvalidQuery> {
        in_range("hours", self.hours, 24, 1, 168)
    }
}

/// `GET /api/xandeum/node/{address}/history`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct DaysQuery {
    /// The window, in days, 1 to 90 [default: 7].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 90))]
    pub days: Option<i64>,
}

impl DaysQuery {
    pub fn check(&self) -> Result<i64, InvalidQuery> {
        in_range("days", self.days, 7, 1, 90)
    }
}

/// `GET /api/xandeum/network/consistency`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ConsistencyQuery {
    /// Only nodes at or above this consistency (0 to 1).
    pub min_consistency: Option<f64>,
    /// `consistency_score` (default), `gossip_disappearances` or `address`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<ConsistencySortKey>, inline))]
    pub sort_by: Option<Choice<ConsistencySortKey>>,
    /// 1 to 1000 [default: 100].
    pub limit: Option<usize>,
}

/// A checked `/network/consistency` request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsistencyRequest {
    pub min_consistency: f64,
    pub sort_by: ConsistencySortKey,
    pub limit: usize,
}

impl ConsistencyQuery {
    pub fn check(&self) -> Result<ConsistencyRequest, InvalidQuery> {
        Ok(ConsistencyRequest {
            min_consistency: in_range("min_consistency", self.min_consistency, 0.0, 0.0, 1.0)?,
            sort_by: chosen(
                "sort_by",
                self.sort_by.as_ref(),
                ConsistencySortKey::ConsistencyScore,
            )?,
            limit: in_range("limit", self.limit, 100, 1, 1_000)?,
        })
    }
}

/// `GET /api/xandeum/operators`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct OperatorsQuery {
    /// 1 to 1000 [default: 100].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1_000))]
    pub limit: Option<usize>,
    /// Only operators with at least this many nodes, 1 to 100 000 [default: 1].
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100_000))]
    pub min_nodes: Option<usize>,
}

/// A checked `/operators` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorsRequest {
    pub limit: usize,
    pub min_nodes: usize,
}

impl OperatorsQuery {
    pub fn check(&self) -> Result<OperatorsRequest, InvalidQuery> {
        Ok(OperatorsRequest {
            limit: in_range("limit", self.limit, 100, 1, 1_000)?,
            min_nodes: in_range("min_nodes", self.min_nodes, 1, 1, 100_000)?,
        })
    }
}

/// `GET /api/xandeum/alerts` and `/alerts/critical`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AlertsQuery {
    /// `critical`, `warning` or `info`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<Severity>, inline))]
    pub severity: Option<Choice<Severity>>,
    /// One of the ten alert types.
    #[cfg_attr(feature = "openapi", param(value_type = Option<AlertType>, inline))]
    pub alert_type: Option<Choice<AlertType>>,
    /// Nodes listed, 1 to 1000 [default: 100].
    pub limit: Option<usize>,
}

/// A checked alerts request, as its answer repeats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertFilters {
    pub severity: Option<Severity>,
    pub alert_type: Option<AlertType>,
    pub limit: usize,
}

impl AlertsQuery {
    pub fn check(&self) -> Result<AlertFilters, InvalidQuery> {
        Ok(AlertFilters {
            severity: severity_of(self.severity.as_ref())?,
            alert_type: self
                .alert_type
                .as_ref()
                .map(|sent| sent.value("alert_type"))
                .transpose()?,
            limit: in_range("limit", self.limit, 100, 1, 1_000)?,
        })
    }

    /// Critical alerts only. The `severity` sent is still checked, so that a typo is an
    /// error rather than ignored.
    pub fn check_critical(&self) -> Result<AlertFilters, InvalidQuery> {
        Ok(AlertFilters {
            severity: Some(Severity::Critical),
            ..self.check()?
        })
    }
}

/// `GET /api/xandeum/pnodes/{address}/alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SeverityQuery {
    /// `critical`, `warning` or `info`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<Severity>, inline))]
    pub severity: Option<Choice<Severity>>,
}

impl SeverityQuery {
    pub fn check(&self) -> Result<Option<Severity>, InvalidQuery> {
        severity_of(self.severity.as_ref())
    }
}

fn severity_of(sent: Option<&Choice<Severity>>) -> Result<Option<Severity>, InvalidQuery> {
    sent.map(|sent| sent.value("severity")).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).expect("a readable query")
    }

    #[test]
    fn pnodes_defaults_and_filters_are_filled_in() {
        let request = PnodesQuery::default().check().expect("defaults are valid");
        assert_eq!((request.limit, request.skip), (100, 0));
        let filters = &request.filters;
        let sort = (filters.status, filters.sort_by, filters.sort_order);
        assert_eq!(
            sort,
            (StatusFilter::Online, PnodeSortKey::Score, SortOrder::Desc)
        );
        let request = query::<PnodesQuery>(
            r#"{"status": "all", "sort_by": "storage_usage_percent", "sort_order": "asc",
                "search": "10.0.0.AB"}"#,
        )
        .check()
        .expect("valid");
        assert_eq!(request.filters.sort_by, PnodeSortKey::StorageUsagePercent);
        assert_eq!(request.needle.as_deref(), Some("10.0.0.ab"));
        assert_eq!(request.filters.search.as_deref(), Some("10.0.0.AB"));
        let empty = query::<PnodesQuery>(r#"{"search": ""}"#).check();
        assert_eq!(empty.map(|request| request.needle), Ok(None));
    }

    #[test]
    fn pnodes_refuses_unknown_names_and_values_out_of_range() {
        let long_search = format!(r#"{{"search": "{}"}}"#, "a".repeat(201));
        for bad in [
            long_search.as_str(),
            r#"{"status": "sleeping"}"#,
            r#"{"sort_by": "name"}"#,
            r#"{"sort_order": "sideways"}"#,
            r#"{"limit": 0}"#,
            r#"{"limit": 5000}"#,
            r#"{"skip": 10000001}"#,
            r#"{"min_score": 200.0}"#,
            r#"{"min_score": -1.0}"#,
        ] {
            assert!(query::<PnodesQuery>(bad).check().is_err(), "{bad}");
        }
        let nan = PnodesQuery {
            min_score: Some(f64::NAN),
            ..PnodesQuery::default()
        };
        assert!(nan.check().is_err());
    }

    #[test]
    fn compare_takes_two_to_five_trimmed_addresses() {
        let addresses = |text: &str| {
            CompareQuery {
                addresses: Some(text.to_owned()),
            }
            .check()
        };
        assert_eq!(
            addresses(",, a:1 ,b:1,"),
            Ok(vec!["a:1".to_owned(), "b:1".to_owned()])
        );
        assert!(addresses("a:1").is_err());
        assert!(addresses("a:1,b:1,c:1,d:1,e:1,f:1").is_err());
        assert!(CompareQuery::default().check().is_err());
    }

    #[test]
    fn alerts_check_severity_and_type_even_for_critical_alerts() {
        let filters = query::<AlertsQuery>(r#"{"severity": "warning", "alert_type": "isolated"}"#)
            .check()
            .expect("valid");
        assert_eq!(filters.severity, Some(Severity::Warning));
        assert_eq!(filters.alert_type, Some(AlertType::Isolated));
        let critical = query::<AlertsQuery>(r#"{"severity": "info"}"#)
            .check_critical()
            .expect("valid");
        assert_eq!(critical.severity, Some(Severity::Critical));
        for bad in [
            r#"{"severity": "loud"}"#,
            r#"{"alert_type": "meteor"}"#,
            r#"{"limit": 0}"#,
        ] {
            assert!(query::<AlertsQuery>(bad).check().is_err(), "{bad}");
            assert!(query::<AlertsQuery>(bad).check_critical().is_err(), "{bad}");
        }
        let bogus = query::<SeverityQuery>(r#"{"severity": "bogus"}"#);
        assert!(bogus.check().is_err());
    }

    #[test]
    fn windows_and_pages_have_their_own_ranges() {
        let hours = |hours| HoursQuery { hours: Some(hours) };
        assert!(hours(720).network_window().is_ok());
        assert!(hours(721).network_window().is_err());
        let node_hours = |hours| NodeHoursQuery { hours: Some(hours) };
        assert!(node_hours(168).node_window().is_ok());
        assert!(node_hours(169).node_window().is_err());
        assert_eq!(NodeHoursQuery::default().node_window(), Ok(24));
        let page = PageQuery {
            days: Some(-1),
            ..PageQuery::default()
        };
        let registry = page.registry().map(|page| (page.limit, page.skip));
        assert_eq!(registry, Ok((100, 0)), "days is not read");
        assert!(page.graveyard().is_err());
        assert!(PruneQuery { days: Some(0) }.check().is_err());
        assert_eq!(DaysQuery::default().check(), Ok(7));
        let consistency = query::<ConsistencyQuery>(r#"{"sort_by": "pubkey"}"#);
        assert!(consistency.check().is_err());
        let operators = query::<OperatorsQuery>(r#"{"min_nodes": 0}"#);
        assert!(operators.check().is_err());
    }
}
