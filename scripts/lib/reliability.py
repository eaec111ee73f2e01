#!/usr/bin/env python3
"""Writes RELIABILITY.md from a run of the reliability tests.

Usage: reliability.py <test output file> <reports dir> <RELIABILITY.md>

Each row names its test; the test's outcome comes from the run's output, and the figures
(what happened, messages lost, time to recover) from the JSON report the test wrote, or,
for tests that only assert, from the row's own description here.
"""
import json
import re
import sys
from pathlib import Path

# (fault or attack, the test, what the test shows when it passes)
ROWS = [
    ("Redis killed and restarted empty under 100 producers",
     "faults::a_hundred_producers_ride_out_a_redis_restart", None),
    ("PostgreSQL crashed and restarted while sockets stream",
     "faults::while_postgres_restarts_rest_answers_503_and_sockets_stay_up", None),
    ("Slow, lossy network",
     "faults::over_a_slow_lossy_link_every_message_arrives_once_in_order", None),
    ("Clock jump",
     "clock::an_instance_whose_clock_jumped_ahead_refuses_and_is_refused_and_leads_alone", None),
    ("Forged, expired, future-dated and foreign access tokens",
     "identity::expired_tampered_and_foreign_algorithm_tokens_are_refused",
     "refused (alg none, HS512 with the right secret, a tampered payload, expired, garbage); "
     "the same cases and more (RS256 header, unknown key id, issued in the future, another "
     "deployment's secret) in the unit test `identity::tokens::tests::tokens_that_must_not_pass`"),
    ("Redis away and back (one producer, one consumer)",
     "streaming::delivery_survives_redis_going_away_and_coming_back",
     "`unavailable` instead of an ack while it is away, /ready 503, delivery resumes by "
     "itself with `seq` still rising"),
    ("PostgreSQL away while messages are stored",
     "stored::while_postgres_is_away_accepted_messages_wait_and_are_stored_when_it_is_back",
     "accepted messages wait in the writer's buffer and are all stored once it is back"),
    ("One of two instances SIGKILLed while a consumer reads",
     "history::a_consumer_whose_instance_is_killed_resumes_on_another_exactly_once_in_order",
     "the consumer resumes on the other instance: every message exactly once, in order"),
    ("Consumers reconnecting at random points",
     "history::consumers_reconnecting_at_random_points_see_every_sequence_without_gaps",
     "every sequence without a gap or a duplicate"),
    ("pNode leader SIGKILLed",
     "pnodes::two_instances_share_one_leader_and_the_survivor_takes_over_when_it_dies",
     "the survivor takes the lease and writes the next cycles; the API stays healthy"),
    ("Lease holder dies",
     "lease::leadership_moves_when_the_holder_dies",
     "another instance holds the lease within its TTL"),
    ("An instance dies with devices connected",
     "nodes::devices_of_an_instance_that_dies_are_settled_down_by_the_leader",
     "the housekeeping leader marks its devices DOWN"),
    ("More callers than pooled connections (sign-ups, logins)",
     "concurrency::concurrent_registrations_and_logins_never_exhaust_a_small_pool",
     "every request answers on a pool of 2; rows and audit entries counted"),
    ("More callers than pooled connections (blocks, registry, prunes)",
     "concurrency::concurrent_blocks_registry_changes_and_prunes_never_exhaust_a_small_pool",
     "every answer comes; every change counted and audited"),
    ("2,000 sockets opened at once",
     "concurrency::two_thousand_sockets_opened_at_once_all_open_on_a_small_pool",
     "all open, all counted, the last still answers"),
    ("Frames declaring huge lengths",
     "security::frames_declaring_huge_lengths_are_refused_at_their_header_on_every_socket",
     "refused at the header, before the bytes are buffered"),
    ("Slow bodies, too many connections from one address",
     "security::slow_bodies_time_out_and_connections_per_address_are_capped",
     "timed out and capped"),
    ("Secrets in logs",
     "security::no_secret_reaches_the_log_even_at_debug",
     "no password, token or key in a debug log of a full session"),
    ("Every route × every role",
     "authorization::every_documented_route_refuses_exactly_whom_it_should",
     "the expected status for nobody, consumer, producer, admin; no 5xx"),
    ("A user blocked on the other instance",
     "identity::a_block_on_one_instance_is_enforced_by_the_other",
     "their tokens refused and sockets closed on both instances"),
    ("Logout and blocks across instances",
     "sessions::logout_ends_the_session_its_tokens_and_its_sockets_on_every_instance",
     "tokens refused and sockets closed on every instance"),
]

# Tests that assert no acked message is lost (they fail otherwise).
LOST = {
    "streaming::delivery_survives_redis_going_away_and_coming_back": "0",
    "stored::while_postgres_is_away_accepted_messages_wait_and_are_stored_when_it_is_back": "0",
    "history::a_consumer_whose_instance_is_killed_resumes_on_another_exactly_once_in_order": "0",
    "history::consumers_reconnecting_at_random_points_see_every_sequence_without_gaps": "0",
}

def cluster_row(output: "Path | None") -> tuple[str, bool]:
    """The row of the run of the Redis tests against a Redis Cluster, and whether it passed."""
    text = output.read_text(errors="replace") if output and output.exists() else ""
    passed = sum(1 for line in text.splitlines() if re.match(r"^test \S+ \.\.\. ok", line))
    failed = [m.group(1) for m in re.finditer(r"^test (\S+) \.\.\. FAILED", text, re.M)]
    ran = bool(re.search(r"^test result:", text, re.M))
    ok = ran and not failed and passed > 0
    happened = (
        f"{passed} tests of what lives in Redis (streaming, publishing, history and resume across "
        "instances, sessions, the bus, the leader lease, the registry, the children) pass against "
        "three primaries: keys a script touches share a hash tag"
        if ok
        else f"{passed} passed, failed: {', '.join(failed) or 'the run did not finish'}"
    )
    row = (
        f"| Scale-out on a Redis Cluster | {happened} | 0 | — | "
        f"`scripts/reliability.sh` cluster run (as in `scripts/test.sh`) | {'ok' if ok else 'FAILED'} |"
    )
    return row, ok


def main() -> None:
    output, reports, target = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    results = {}
    for line in output.read_text(errors="replace").splitlines():
        match = re.match(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", line)
        if match:
            results[match.group(1)] = match.group(2)
    lines = [
        "# Reliability",
        "",
        "What nodegrid survived, as shown by its tests (regenerated by `scripts/reliability.sh`,",
        "which runs them; each fault test runs its own Redis or PostgreSQL and kills only that).",
        "Messages lost counts messages that were acked and never delivered.",
        "",
        "| fault or attack | what happened | messages lost | time to recover | test | result |",
        "|---|---|---|---|---|---|",
    ]
    for fault, test, shown in ROWS:
        report = reports / (test.replace("::", "__") + ".json")
        result = results.get(test, "not run")
        if report.exists():
            row = json.loads(report.read_text())
            happened = row["happened"]
            lost = str(row["lost"])
            recovered = row.get("recovered_ms")
            if recovered is None:
                recovered = "—"
            elif recovered < 1000:
                recovered = f"{recovered} ms"
            else:
                recovered = f"{recovered / 1000:.1f} s"
        else:
            happened, lost, recovered = shown or "", LOST.get(test, "—"), "—"
        lines.append(f"| {fault} | {happened} | {lost} | {recovered} | `{test}` | {result} |")
    cluster, cluster_ok = cluster_row(Path(sys.argv[4]) if len(sys.argv) > 4 else None)
    lines.append(cluster)
    lines.append("")
    target.write_text("\n".join(lines))
    failed = [test for _, test, _ in ROWS if results.get(test) != "ok"]
    if not cluster_ok:
        failed.append("the Redis Cluster run")
    if failed:
        print("not passed: " + ", ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
