//! Postgres side of the pNode analytics: the registry, the stored snapshot record, the network
//! and per-node history, retention. One cycle is written in one transaction with one statement
//! per table (arrays unnested server-side), stamped with the leader's fencing token.

use std::collections::BTreeMap;

pub use nodegrid_protocol::pnode_api::history::{HistoryStatus, NetworkHistoryRow, NodeHistoryRow};
use tokio_postgres::Row;

use nodegrid_protocol::pnode_api::nodes::{LightStatus, PnodeStatus};

use super::writes::{CycleWrites, StatusRow};

use super::cycle::{Registry, RegistryEntry};
use super::view::{NetworkView, NodeView, SnapshotRecord};
use crate::db::{Database, DbError};
use crate::lease::FencingToken;
use crate::webhooks::OutgoingEvent;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("snapshot record cannot be encoded or decoded: {0}")]
    Codec(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Db(DbError::Query(error))
    }
}

/// What one cycle writes.
pub struct CycleWrite<'a> {
    pub record: &'a SnapshotRecord,
    /// `record` as stored ([`encode_record`]; encoded off the async threads by the caller).
    pub encoded: &'a [u8],
    pub view: &'a NetworkView,
    /// The registry rows, history rows and statuses that changed (see [`super::writes`]).
    pub writes: &'a CycleWrites,
    pub events: &'a [OutgoingEvent],
}

/// Whether the store took a cycle's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// A newer leader has written since: this instance is no longer the leader.
    Fenced,
}

/// Marks a record stored LZ4-compressed (records written before compression are bare
/// MessagePack, which never starts with these bytes).
const COMPRESSED_RECORD: &[u8; 4] = b"NGZ1";
/// MessagePack's header of an array of seven: a [`SnapshotRecord`]'s fields.
const RECORD_FIELDS: u8 = 0x97;
/// The largest record a stored one may say it decompresses to.
const MAX_RECORD_BYTES: usize = 1 << 30;

/// MessagePack, LZ4-compressed: a record of 10,000 nodes is ~8 MB of MessagePack, whose
/// repeated addresses and field shapes compress several times over in a few milliseconds,
/// and every byte not written is one Postgres does not write and log every cycle.
pub fn encode_record(record: &SnapshotRecord) -> Result<Vec<u8>, StoreError> {
    finish_record(encode_record_head(record)?, record)
}

/// The MessagePack of a record up to its entries: the bulk of it, which does not depend on the
/// cycle's changes, so that the leader encodes it while it computes them. The record is an
/// array of its seven fields in declaration order (`rmp_serde`'s compact form).
pub fn encode_record_head(record: &SnapshotRecord) -> Result<Vec<u8>, StoreError> {
    let codec = |error: rmp_serde::encode::Error| StoreError::Codec(error.to_string());
    let mut packed = Vec::with_capacity(64 + record.entries.len() * 1_024);
    packed.push(RECORD_FIELDS);
    rmp_serde::encode::write(&mut packed, &record.cycle).map_err(codec)?;
    rmp_serde::encode::write(&mut packed, &record.taken_at).map_err(codec)?;
    rmp_serde::encode::write(&mut packed, &record.interval_secs).map_err(codec)?;
    rmp_serde::encode::write(&mut packed, &record.seeds).map_err(codec)?;
    rmp_serde::encode::write(&mut packed, &record.entries).map_err(codec)?;
    Ok(packed)
}

/// Appends the rest of `record` (its changes) to its head and compresses the whole.
pub fn finish_record(mut packed: Vec<u8>, record: &SnapshotRecord) -> Result<Vec<u8>, StoreError> {
    let codec = |error: rmp_serde::encode::Error| StoreError::Codec(error.to_string());
    rmp_serde::encode::write(&mut packed, &record.previous_cycle).map_err(codec)?;
    rmp_serde::encode::write(&mut packed, &record.changes).map_err(codec)?;
    let mut encoded = Vec::with_capacity(packed.len() / 3 + 16);
    encoded.extend_from_slice(COMPRESSED_RECORD);
    encoded.extend_from_slice(&lz4_flex::block::compress_prepend_size(&packed));
    Ok(encoded)
}

/// Reads a stored record, compressed or not.
pub fn decode_record(bytes: &[u8]) -> Result<SnapshotRecord, StoreError> {
    let codec = |error: String| StoreError::Codec(error);
    let packed;
    let bytes = match bytes.strip_prefix(COMPRESSED_RECORD) {
        Some(compressed) => {
            let stated = compressed
                .get(..4)
                .and_then(|size| size.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| codec("a compressed record without its size".into()))?;
            if stated as usize > MAX_RECORD_BYTES {
                return Err(codec(format!("a record that says it is {stated} bytes")));
            }
            packed = lz4_flex::block::decompress_size_prepended(compressed)
                .map_err(|error| codec(error.to_string()))?;
            packed.as_slice()
        }
        None => bytes,
    };
    rmp_serde::from_slice(bytes).map_err(|error| codec(error.to_string()))
}

fn to_i64(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[derive(Clone)]
pub struct PnodeStore {
    database: Database,
}

impl PnodeStore {
    pub fn new(database: Database) -> PnodeStore {
        PnodeStore { database }
    }

    /// The whole registry, for a new leader to go on counting from.
    pub async fn load_registry(&self) -> Result<Registry, StoreError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT address, pubkey, version, last_seen_timestamp, is_public, rpc_port,
                        storage_committed, storage_used, storage_usage_percent, uptime,
                        first_seen, last_seen, last_checked, peer_sources, source_ips,
                        gossip_appearances, gossip_disappearances, last_gossip_appearance,
                        last_gossip_drop, present, storage_used_previous
                 FROM pnode_registry",
                &[],
            )
            .await?;
        let unsigned = |row: &Row, column: &str| -> Option<u64> {
            row.get::<_, Option<i64>>(column)
                .and_then(|v| u64::try_from(v).ok())
        };
        Ok(rows
            .iter()
            .map(|row| {
                let entry = RegistryEntry {
                    address: row.get("address"),
                    pubkey: row.get("pubkey"),
                    version: row.get("version"),
                    last_seen_timestamp: row.get("last_seen_timestamp"),
                    is_public: row.get("is_public"),
                    rpc_port: row
                        .get::<_, Option<i32>>("rpc_port")
                        .and_then(|port| u16::try_from(port).ok()),
                    storage_committed: unsigned(row, "storage_committed"),
                    storage_used: unsigned(row, "storage_used"),
                    storage_usage_percent: row.get("storage_usage_percent"),
                    uptime: unsigned(row, "uptime"),
                    first_seen: row.get("first_seen"),
                    last_seen: row.get("last_seen"),
                    last_checked: row.get("last_checked"),
                    peer_sources: row.get("peer_sources"),
                    source_ips: row.get("source_ips"),
                    gossip_appearances: unsigned(row, "gossip_appearances").unwrap_or(0),
                    gossip_disappearances: unsigned(row, "gossip_disappearances").unwrap_or(0),
                    last_gossip_appearance: row.get("last_gossip_appearance"),
                    last_gossip_drop: row.get("last_gossip_drop"),
                    present: row.get("present"),
                    storage_used_previous: unsigned(row, "storage_used_previous"),
                };
                (entry.address.clone(), entry)
            })
            .collect())
    }

    /// The last stored snapshot record, if any cycle ever ran.
    pub async fn load_snapshot(&self) -> Result<Option<SnapshotRecord>, StoreError> {
        let client = self.database.client().await?;
        let row = client
            .query_opt("SELECT record FROM pnode_snapshot WHERE id = 1", &[])
            .await?;
        let Some(bytes) = row.and_then(|row| row.get::<_, Option<Vec<u8>>>(0)) else {
            return Ok(None);
        };
        decode_record(&bytes).map(Some)
    }

    /// The cycle of the stored snapshot (0 before the first).
    pub async fn snapshot_cycle(&self) -> Result<i64, StoreError> {
        let client = self.database.client().await?;
        let row = client
            .query_one("SELECT cycle FROM pnode_snapshot WHERE id = 1", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Writes one cycle: the snapshot record, the network history row, the registry rows,
    /// node history rows and lightweight statuses it changed (see [`super::writes`]), and the
    /// cycle's webhook events (into the outbox, so that they exist exactly when the cycle does).
    pub async fn write_cycle(
        &self,
        cycle: CycleWrite<'_>,
        fencing_token: FencingToken,
    ) -> Result<WriteOutcome, StoreError> {
        let CycleWrite {
            record,
            encoded,
            view,
            writes,
            events,
        } = cycle;
        let started = std::time::Instant::now();
        let token = saturating_i64(fencing_token);
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        let fenced = transaction
            .execute(
                "UPDATE pnode_snapshot SET cycle = $1, taken_at = $2, fencing_token = $3, record = $4
                 WHERE id = 1 AND fencing_token <= $3",
                &[&record.cycle, &record.taken_at, &token, &encoded],
            )
            .await?
            == 0;
        if fenced {
            transaction.rollback().await?;
            return Ok(WriteOutcome::Fenced);
        }
        let record_done = started.elapsed();
        upsert_registry(&transaction, record, &writes.registry).await?;
        let registry_done = started.elapsed() - record_done;
        insert_network_history(&transaction, view).await?;
        insert_node_history(&transaction, view, &writes.history).await?;
        upsert_statuses(&transaction, &writes.statuses, record.taken_at).await?;
        crate::webhooks::enqueue(&transaction, events).await?;
        let history_done = started.elapsed() - record_done - registry_done;
        transaction.commit().await?;
        tracing::debug!(
            cycle = record.cycle,
            record_bytes = encoded.len(),
            record_ms = record_done.as_millis() as u64,
            registry_ms = registry_done.as_millis() as u64,
            history_ms = history_done.as_millis() as u64,
            commit_ms =
                (started.elapsed() - record_done - registry_done - history_done).as_millis() as u64,
            "pNode cycle stored"
        );
        Ok(WriteOutcome::Written)
    }

    /// Deletes history older than `before`; returns (network rows, node rows) deleted.
    pub async fn prune_history(&self, before: i64) -> Result<(u64, u64), StoreError> {
        let client = self.database.client().await?;
        let network = client
            .execute(
                "DELETE FROM pnode_network_history WHERE taken_at < $1",
                &[&before],
            )
            .await?;
        let nodes = client
            .execute(
                "DELETE FROM pnode_node_history WHERE taken_at < $1",
                &[&before],
            )
            .await?;
        Ok((network, nodes))
    }

    /// Deletes registry entries last seen before `before`, from the table and from the stored
    /// snapshot record (so that an instance loading it later does not bring them back), in one
    /// transaction; returns how many entries were deleted.
    pub async fn prune_registry(&self, before: i64) -> Result<u64, StoreError> {
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        let deleted = transaction
            .execute(
                "DELETE FROM pnode_registry WHERE last_seen < $1",
                &[&before],
            )
            .await?;
        transaction
            .execute("DELETE FROM pnode_status WHERE last_seen < $1", &[&before])
            .await?;
        let row = transaction
            .query_one(
                "SELECT record FROM pnode_snapshot WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?;
        if let Some(bytes) = row.get::<_, Option<Vec<u8>>>(0) {
            let mut record = decode_record(&bytes)?;
            record.entries.retain(|entry| entry.last_seen >= before);
            let encoded = encode_record(&record)?;
            transaction
                .execute(
                    "UPDATE pnode_snapshot SET record = $1 WHERE id = 1",
                    &[&encoded],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(deleted)
    }

    pub async fn network_history(&self, since: i64) -> Result<Vec<NetworkHistoryRow>, StoreError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT * FROM pnode_network_history WHERE taken_at >= $1 ORDER BY taken_at, cycle",
                &[&since],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| NetworkHistoryRow {
                cycle: row.get("cycle"),
                timestamp: row.get("taken_at"),
                total_pnodes: row.get("total_pnodes"),
                online_pnodes: row.get("online_pnodes"),
                offline_pnodes: row.get("offline_pnodes"),
                public_pnodes: row.get("public_pnodes"),
                private_pnodes: row.get("private_pnodes"),
                total_ip_nodes: row.get("total_ip_nodes"),
                responding_ip_nodes: row.get("responding_ip_nodes"),
                total_storage_committed: row.get("total_storage_committed"),
                total_storage_used: row.get("total_storage_used"),
                avg_storage_usage_percent: row.get("avg_storage_usage_percent"),
                avg_uptime_hours: row.get("avg_uptime_hours"),
                avg_peer_count: row.get("avg_peer_count"),
                avg_cpu_percent: row.get("avg_cpu_percent"),
                avg_ram_used_percent: row.get("avg_ram_used_percent"),
                total_active_streams: row.get("total_active_streams"),
                total_bytes_processed: row.get("total_bytes_processed"),
                avg_score: row.get("avg_score"),
                health_score: row.get("health_score"),
                latest_version: row.get("latest_version"),
                version_distribution: row.get("version_distribution"),
                timestamp_readable: row.get("timestamp_readable"),
                storage_utilization_ratio: row.get("storage_utilization_ratio"),
                version_diversity_index: row.get("version_diversity_index"),
            })
            .collect())
    }

    pub async fn node_history(
        &self,
        address: &str,
        since: i64,
    ) -> Result<Vec<NodeHistoryRow>, StoreError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT * FROM pnode_node_history WHERE address = $1 AND taken_at >= $2
                 ORDER BY taken_at",
                &[&address, &since],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| NodeHistoryRow {
                timestamp: row.get("taken_at"),
                is_online: row.get("is_online"),
                version: row.get("version"),
                uptime: row.get("uptime"),
                storage_committed: row.get("storage_committed"),
                storage_used: row.get("storage_used"),
                storage_usage_percent: row.get("storage_usage_percent"),
                peer_count: row.get("peer_count"),
                peer_sources: row.get("peer_sources"),
                score: row.get("score"),
                trust_score: row.get("trust_score"),
                capacity_score: row.get("capacity_score"),
                is_public: row.get("is_public"),
            })
            .collect())
    }

    /// The stored lightweight status of one address.
    pub async fn status_of(&self, address: &str) -> Result<Option<PnodeStatus>, StoreError> {
        let client = self.database.client().await?;
        let row = client
            .query_opt(
                "SELECT status, last_ip, last_seen, updated_at FROM pnode_status WHERE address = $1",
                &[&address],
            )
            .await?;
        Ok(row.map(|row| PnodeStatus {
            status: LightStatus::parse(row.get::<_, &str>(0)).unwrap_or(LightStatus::Unknown),
            last_ip: row.get(1),
            last_seen: row.get(2),
            updated_at: row.get(3),
        }))
    }

    pub async fn history_status(&self) -> Result<HistoryStatus, StoreError> {
        let client = self.database.client().await?;
        let network = client
            .query_one(
                "SELECT count(*), min(taken_at), max(taken_at) FROM pnode_network_history",
                &[],
            )
            .await?;
        let nodes = client
            .query_one(
                "SELECT count(*), count(DISTINCT address) FROM pnode_node_history",
                &[],
            )
            .await?;
        Ok(HistoryStatus {
            network_snapshots: network.get(0),
            oldest_timestamp: network.get(1),
            newest_timestamp: network.get(2),
            node_history_rows: nodes.get(0),
            nodes_tracked: nodes.get(1),
        })
    }
}

async fn upsert_registry(
    transaction: &tokio_postgres::Transaction<'_>,
    record: &SnapshotRecord,
    rows: &[usize],
) -> Result<(), StoreError> {
    let entries: Vec<&RegistryEntry> = rows.iter().map(|&index| &record.entries[index]).collect();
    if entries.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&RegistryEntry) -> Option<i64>| -> Vec<Option<i64>> {
        entries.iter().map(|e| f(e)).collect()
    };
    let address: Vec<&str> = entries.iter().map(|e| e.address.as_str()).collect();
    let pubkey: Vec<Option<&str>> = entries.iter().map(|e| e.pubkey.as_deref()).collect();
    let version: Vec<Option<&str>> = entries.iter().map(|e| e.version.as_deref()).collect();
    let is_public: Vec<Option<bool>> = entries.iter().map(|e| e.is_public).collect();
    let rpc_port: Vec<Option<i32>> = entries.iter().map(|e| e.rpc_port.map(i32::from)).collect();
    let percent: Vec<Option<f64>> = entries.iter().map(|e| e.storage_usage_percent).collect();
    let peer_sources: Vec<String> = entries.iter().map(|e| e.peer_sources.join(",")).collect();
    let source_ips: Vec<String> = entries.iter().map(|e| e.source_ips.join(",")).collect();
    let present: Vec<bool> = entries.iter().map(|e| e.present).collect();
    let consistency: Vec<f64> = entries.iter().map(|e| e.consistency_score()).collect();
    transaction
        .execute(
            "INSERT INTO pnode_registry AS r (address, pubkey, version, last_seen_timestamp,
                 is_public, rpc_port, storage_committed, storage_used, storage_usage_percent,
                 uptime, first_seen, last_seen, last_checked, peer_sources, source_ips,
                 gossip_appearances, gossip_disappearances, last_gossip_appearance,
                 last_gossip_drop, consistency_score, present, storage_used_previous)
             SELECT a, pk, v, lst, pub, port, sc, su, sp, up, fs, ls, lc,
                    string_to_array(ps, ','), string_to_array(si, ','), ga, gd, lga, lgd, cs, pr, sup
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bool[], $6::int4[],
                         $7::int8[], $8::int8[], $9::float8[], $10::int8[], $11::int8[],
                         $12::int8[], $13::int8[], $14::text[], $15::text[], $16::int8[],
                         $17::int8[], $18::int8[], $19::int8[], $20::float8[], $21::bool[],
                         $22::int8[])
                  AS t(a, pk, v, lst, pub, port, sc, su, sp, up, fs, ls, lc, ps, si, ga, gd,
                       lga, lgd, cs, pr, sup)
             ON CONFLICT (address) DO UPDATE SET
                 pubkey = EXCLUDED.pubkey, version = EXCLUDED.version,
                 last_seen_timestamp = EXCLUDED.last_seen_timestamp,
                 is_public = EXCLUDED.is_public, rpc_port = EXCLUDED.rpc_port,
                 storage_committed = EXCLUDED.storage_committed,
                 storage_used = EXCLUDED.storage_used,
                 storage_usage_percent = EXCLUDED.storage_usage_percent,
                 uptime = EXCLUDED.uptime, last_seen = EXCLUDED.last_seen,
                 last_checked = EXCLUDED.last_checked, peer_sources = EXCLUDED.peer_sources,
                 source_ips = EXCLUDED.source_ips,
                 gossip_appearances = EXCLUDED.gossip_appearances,
                 gossip_disappearances = EXCLUDED.gossip_disappearances,
                 last_gossip_appearance = EXCLUDED.last_gossip_appearance,
                 last_gossip_drop = EXCLUDED.last_gossip_drop,
                 consistency_score = EXCLUDED.consistency_score,
                 present = EXCLUDED.present,
                 storage_used_previous = EXCLUDED.storage_used_previous",
            &[
                &address,
                &pubkey,
                &version,
                &column(&|e| e.last_seen_timestamp),
                &is_public,
                &rpc_port,
                &column(&|e| to_i64(e.storage_committed)),
                &column(&|e| to_i64(e.storage_used)),
                &percent,
                &column(&|e| to_i64(e.uptime)),
                &column(&|e| Some(e.first_seen)),
                &column(&|e| Some(e.last_seen)),
                &column(&|e| Some(e.last_checked)),
                &peer_sources,
                &source_ips,
                &column(&|e| Some(saturating_i64(e.gossip_appearances))),
                &column(&|e| Some(saturating_i64(e.gossip_disappearances))),
                &column(&|e| e.last_gossip_appearance),
                &column(&|e| e.last_gossip_drop),
                &consistency,
                &present,
                &column(&|e| to_i64(e.storage_used_previous)),
            ],
        )
        .await?;
    Ok(())
}

async fn insert_network_history(
    transaction: &tokio_postgres::Transaction<'_>,
    view: &NetworkView,
) -> Result<(), StoreError> {
    let s = &view.summary;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let distribution: BTreeMap<&str, usize> = s
        .version_distribution
        .iter()
        .map(|(version, count)| (version.as_str(), *count))
        .collect();
    let distribution = serde_json::to_value(distribution).unwrap_or_default();
    // The seed's three: a readable UTC time, storage used over committed (in percent, as the
    // seed writes it), and how many versions the online nodes run.
    let readable = chrono::DateTime::from_timestamp(view.taken_at, 0)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string());
    let utilization = if s.total_storage_committed == 0 {
        0.0
    } else {
        (s.total_storage_used as f64 / s.total_storage_committed as f64 * 10_000.0).round() / 100.0
    };
    let diversity = s.version_distribution.len() as f64;
    transaction
        .execute(
            "INSERT INTO pnode_network_history (cycle, taken_at, total_pnodes, online_pnodes,
                 offline_pnodes, public_pnodes, private_pnodes, total_ip_nodes,
                 responding_ip_nodes, total_storage_committed, total_storage_used,
                 avg_storage_usage_percent, avg_uptime_hours, avg_peer_count, avg_cpu_percent,
                 avg_ram_used_percent, total_active_streams, total_bytes_processed, avg_score,
                 health_score, latest_version, version_distribution, timestamp_readable,
                 storage_utilization_ratio, version_diversity_index)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,
                     $23,$24,$25)",
            &[
                &view.cycle,
                &view.taken_at,
                &count(s.total_pnodes),
                &count(s.online_pnodes),
                &count(s.offline_pnodes),
                &count(s.public_pnodes),
                &count(s.private_pnodes),
                &count(s.total_ip_nodes),
                &count(s.responding_ip_nodes),
                &saturating_i64(s.total_storage_committed),
                &saturating_i64(s.total_storage_used),
                &s.avg_storage_usage_percent,
                &s.avg_uptime_hours,
                &s.avg_peer_count,
                &s.avg_cpu_percent,
                &s.avg_ram_used_percent,
                &saturating_i64(s.total_active_streams),
                &saturating_i64(s.total_bytes_processed),
                &s.avg_score,
                &view.health.health_score,
                &s.latest_version,
                &distribution,
                &readable,
                &utilization,
                &diversity,
            ],
        )
        .await?;
    Ok(())
}

async fn insert_node_history(
    transaction: &tokio_postgres::Transaction<'_>,
    view: &NetworkView,
    rows: &[usize],
) -> Result<(), StoreError> {
    let nodes: Vec<&NodeView> = rows.iter().map(|&index| &view.nodes[index]).collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let address: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
    let online: Vec<bool> = nodes.iter().map(|n| n.is_online).collect();
    let version: Vec<Option<&str>> = nodes.iter().map(|n| n.version.as_deref()).collect();
    let uptime: Vec<Option<i64>> = nodes.iter().map(|n| to_i64(n.uptime)).collect();
    let committed: Vec<Option<i64>> = nodes.iter().map(|n| to_i64(n.storage_committed)).collect();
    let used: Vec<Option<i64>> = nodes.iter().map(|n| to_i64(n.storage_used)).collect();
    let percent: Vec<Option<f64>> = nodes.iter().map(|n| n.storage_usage_percent).collect();
    let peers: Vec<i32> = nodes
        .iter()
        .map(|n| i32::try_from(n.peer_count).unwrap_or(i32::MAX))
        .collect();
    let sources: Vec<String> = nodes.iter().map(|n| n.peer_sources.join(",")).collect();
    let score: Vec<f64> = nodes.iter().map(|n| n.score).collect();
    let trust: Vec<f64> = nodes.iter().map(|n| n.scores.trust.score).collect();
    let capacity: Vec<f64> = nodes.iter().map(|n| n.scores.capacity.score).collect();
    let public: Vec<Option<bool>> = nodes.iter().map(|n| n.is_public).collect();
    transaction
        .execute(
            "INSERT INTO pnode_node_history (address, taken_at, is_online, version, uptime,
                 storage_committed, storage_used, storage_usage_percent, peer_count, peer_sources,
                 score, trust_score, capacity_score, is_public)
             SELECT a, $2, o, v, u, sc, su, sp, pc, string_to_array(ps, ','), s, t, c, p
             FROM unnest($1::text[], $3::bool[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
                         $8::float8[], $9::int4[], $10::text[], $11::float8[], $12::float8[],
                         $13::float8[], $14::bool[])
                  AS t(a, o, v, u, sc, su, sp, pc, ps, s, t, c, p)",
            &[
                &address,
                &view.taken_at,
                &online,
                &version,
                &uptime,
                &committed,
                &used,
                &percent,
                &peers,
                &sources,
                &score,
                &trust,
                &capacity,
                &public,
            ],
        )
        .await?;
    Ok(())
}

async fn upsert_statuses(
    transaction: &tokio_postgres::Transaction<'_>,
    rows: &[StatusRow],
    now: i64,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let address: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
    let status: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let last_ip: Vec<Option<&str>> = rows.iter().map(|r| r.last_ip.as_deref()).collect();
    let last_seen: Vec<i64> = rows.iter().map(|r| r.last_seen).collect();
    transaction
        .execute(
            "INSERT INTO pnode_status (address, status, last_ip, last_seen, updated_at)
             SELECT a, s, ip, ls, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                  AS t(a, s, ip, ls)
             ON CONFLICT (address) DO UPDATE SET status = EXCLUDED.status,
                 last_ip = coalesce(EXCLUDED.last_ip, pnode_status.last_ip),
                 last_seen = EXCLUDED.last_seen, updated_at = EXCLUDED.updated_at",
            &[&address, &status, &last_ip, &last_seen, &now],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_compressed_or_bare_and_absurd_sizes_are_refused() {
        let record = SnapshotRecord {
            cycle: 7,
            taken_at: 1_700_000_000,
            entries: vec![RegistryEntry {
                address: "10.0.0.1:9001".into(),
                ..RegistryEntry::default()
            }],
            ..SnapshotRecord::default()
        };
        let encoded = encode_record(&record).unwrap();
        assert!(encoded.starts_with(COMPRESSED_RECORD));
        // Encoded in two parts, it is what the whole struct serialises to.
        let whole = rmp_serde::to_vec(&record).unwrap();
        let parts = lz4_flex::block::decompress_size_prepended(&encoded[4..]).unwrap();
        assert_eq!(parts, whole);
        assert_eq!(decode_record(&encoded).unwrap(), record);
        // Written before compression: bare MessagePack.
        let bare = rmp_serde::to_vec(&record).unwrap();
        assert_eq!(decode_record(&bare).unwrap(), record);
        let mut absurd = COMPRESSED_RECORD.to_vec();
        absurd.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_record(&absurd).is_err());
        assert!(decode_record(b"NGZ1").is_err());
    }
}
