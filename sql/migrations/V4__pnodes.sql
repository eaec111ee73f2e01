-- pNode analytics: the registry of every pNode ever seen, the current snapshot (one row), the
-- network history (one row per cycle) and the per-node history (one row per node per cycle).
-- Times are unix seconds, as the pRPC and the Xandeum API speak them.

CREATE TABLE pnode_registry (
    address                text PRIMARY KEY,
    pubkey                 text,
    version                text,
    last_seen_timestamp    bigint,
    is_public              boolean,
    rpc_port               integer,
    storage_committed      bigint,
    storage_used           bigint,
    storage_usage_percent  double precision,
    uptime                 bigint,
    first_seen             bigint NOT NULL,
    last_seen              bigint NOT NULL,
    last_checked           bigint NOT NULL,
    peer_sources           text[] NOT NULL DEFAULT '{}',
    source_ips             text[] NOT NULL DEFAULT '{}',
    gossip_appearances     bigint NOT NULL DEFAULT 0,
    gossip_disappearances  bigint NOT NULL DEFAULT 0,
    last_gossip_appearance bigint,
    last_gossip_drop       bigint,
    consistency_score      double precision NOT NULL DEFAULT 1,
    present                boolean NOT NULL DEFAULT false,
    storage_used_previous  bigint
);
CREATE INDEX pnode_registry_pubkey ON pnode_registry (pubkey);
CREATE INDEX pnode_registry_last_seen ON pnode_registry (last_seen DESC);
CREATE INDEX pnode_registry_consistency ON pnode_registry (consistency_score);
CREATE INDEX pnode_registry_last_drop ON pnode_registry (last_gossip_drop DESC);

-- The snapshot the leader stored last. `fencing_token` refuses a deposed leader's late write.
CREATE TABLE pnode_snapshot (
    id            smallint PRIMARY KEY CHECK (id = 1),
    cycle         bigint NOT NULL,
    taken_at      bigint NOT NULL,
    fencing_token bigint NOT NULL,
    record        bytea
);
-- The record is MessagePack, rewritten whole every cycle: compressing it costs more time than
-- the space is worth.
ALTER TABLE pnode_snapshot ALTER COLUMN record SET STORAGE EXTERNAL;
INSERT INTO pnode_snapshot (id, cycle, taken_at, fencing_token) VALUES (1, 0, 0, 0);

CREATE TABLE pnode_network_history (
    cycle                     bigint NOT NULL,
    taken_at                  bigint NOT NULL,
    total_pnodes              integer NOT NULL,
    online_pnodes             integer NOT NULL,
    offline_pnodes            integer NOT NULL,
    public_pnodes             integer NOT NULL,
    private_pnodes            integer NOT NULL,
    total_ip_nodes            integer NOT NULL,
    responding_ip_nodes       integer NOT NULL,
    total_storage_committed   bigint NOT NULL,
    total_storage_used        bigint NOT NULL,
    avg_storage_usage_percent double precision NOT NULL,
    avg_uptime_hours          double precision NOT NULL,
    avg_peer_count            double precision NOT NULL,
    avg_cpu_percent           double precision NOT NULL,
    avg_ram_used_percent      double precision NOT NULL,
    total_active_streams      bigint NOT NULL,
    total_bytes_processed     bigint NOT NULL,
    avg_score                 double precision NOT NULL,
    health_score              double precision NOT NULL,
    latest_version            text,
    version_distribution      jsonb NOT NULL
);
CREATE INDEX pnode_network_history_taken_at ON pnode_network_history (taken_at DESC);

CREATE TABLE pnode_node_history (
    address               text NOT NULL,
    taken_at              bigint NOT NULL,
    is_online             boolean NOT NULL,
    version               text,
    uptime                bigint,
    storage_committed     bigint,
    storage_used          bigint,
    storage_usage_percent double precision,
    peer_count            integer NOT NULL,
    peer_sources          text[] NOT NULL,
    score                 double precision NOT NULL,
    trust_score           double precision NOT NULL,
    capacity_score        double precision NOT NULL,
    is_public             boolean
);
CREATE INDEX pnode_node_history_address_taken_at ON pnode_node_history (address, taken_at DESC);
CREATE INDEX pnode_node_history_taken_at ON pnode_node_history (taken_at);
