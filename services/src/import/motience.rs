//! `nodegrid import motience`: a Motience deployment's users, subscriptions and stored data.
//!
//! Motience's schema (its `init-db.sql`): `users(id, username, password_hash, role, device_id,
//! created_at, …)`, `subscriptions(id, consumer_id, producer_id, status, created_at, …)`,
//! `data_history(id, producer_id, device_id, payload, timestamp)`.
//!
//! Users keep their ids, so every `producer_id` devices and consumers already use stays valid;
//! a nodegrid account holding such an id is moved to a free one. Users and subscriptions are
//! written in one transaction under a lock on `users`, so an import is all or nothing and no
//! registration slips in between its checks and its writes. Data rows follow in batches, with
//! their progress kept in `import_progress`: a stopped import resumes where it was.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use serde_json::json;
use tokio_postgres::error::SqlState;

use super::{Counts, ImportError, ImportReport, MovedAccount, ProblemKind};
use crate::bus::RedisBus;
use crate::db::{Database, DbError};
use crate::identity::passwords::HashScheme;
use crate::identity::store::{self, AuditRecord};
use crate::streams::data::{DataStore, StoredRow};

/// What accounts imported from Motience are marked with (`users.imported_from`), before the
/// source database's host, port and name: `motience:db.example:5432/motience`.
const ORIGIN: &str = "motience";
/// The epoch of imported data rows (their `seq` is Motience's `data_history.id`).
const DATA_EPOCH: &str = "motience";
/// Data rows read and written per batch.
const DATA_BATCH_ROWS: i64 = 5_000;
/// Motience's names are VARCHAR(255).
const MAX_NAME_CHARS: usize = 255;

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct MotienceImport {
    /// The Motience database's URL.
    pub source_url: String,
    pub dry_run: bool,
    /// Also copy `data_history` into stored producer data.
    pub data_history: bool,
    /// Only data rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The deployment's `--data-retention-days`: older rows would be dropped at once.
    pub retention_days: u64,
}

/// A user row of the source.
struct SourceUser {
    id: i64,
    username: String,
    password_hash: String,
    role: String,
    device_id: Option<String>,
    created_at: Option<f64>,
}

/// A source user that can be imported.
struct Candidate {
    id: i64,
    username: String,
    lowered: String,
    password_hash: String,
    role: Role,
    device_id: Option<String>,
    created_at: Option<f64>,
}

/// A user row of nodegrid that an import touches.
struct TargetUser {
    id: i64,
    username: String,
    lowered: String,
    role: String,
    imported_from: Option<String>,
    token_version: i32,
}

/// What the users step decided, for the steps after it.
#[derive(Default)]
struct UsersOutcome {
    /// Every imported user present after the import (new or from an earlier run), by id.
    present: HashMap<i64, Role>,
    /// Ids of users inserted by this run, with the token version their row starts at.
    inserted: Vec<(i64, i32)>,
    /// Ids that a moved account held: the new holder's token version refuses the old
    /// holder's tokens.
    displaced: Vec<(i64, i32)>,
    new_subscriptions: Vec<(i64, i64)>,
}

/// Runs the import. `bus` tells running instances what changed (moved accounts, new
/// subscriptions); without it they learn at their next reload.
pub async fn import(
    target: &Database,
    bus: Option<&RedisBus>,
    options: &MotienceImport,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        source: "Motience",
        dry_run: options.dry_run,
        ..ImportReport::default()
    };
    let origin = source_key(&options.source_url)?;
    let source = Database::connect(&options.source_url, 1)
        .await
        .map_err(ImportError::Source)?;
    let source_client = source.client().await.map_err(ImportError::Source)?;
    let users = read_users(&source_client).await?;
    let subscriptions = read_subscriptions(&source_client).await?;
    drop(source_client);

    let outcome = {
        let mut client = target.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        transaction
            .batch_execute(
                "SET LOCAL lock_timeout = '10s'; LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE",
            )
            .await
            .map_err(DbError::from)?;
        let outcome = import_users_and_subscriptions(
            &transaction,
            &origin,
            users,
            subscriptions,
            &mut report,
        )
        .await?;
        if report.aborted.is_none() && !options.dry_run && !report.moved.is_empty() && bus.is_none()
        {
            // The old holders' tokens name the ids they lose: every running instance must hear
            // of the move before it is safe.
            report.aborted = Some(
                "nodegrid accounts must move out of the way and Redis does not answer: running instances could not be told; start Redis (or stop every instance) and run again".into(),
            );
        }
        if report.aborted.is_some() || options.dry_run {
            transaction.rollback().await.map_err(DbError::from)?;
        } else {
            if !report.moved.is_empty() || report.users.imported > 0 {
                // The sequence moves past every id now taken (never back). Not in a dry run:
                // sequences ignore rollbacks.
                transaction
                    .execute(
                        "SELECT setval(pg_get_serial_sequence('users', 'id'), max(id)) FROM users \
                         HAVING max(id) > (SELECT last_value FROM users_id_seq)",
                        &[],
                    )
                    .await
                    .map_err(DbError::from)?;
            }
            if report.changes() > 0 {
                store::insert_audit(
                    &transaction,
                    &AuditRecord {
                        actor_id: None,
                        actor: Some("nodegrid import".into()),
                        action: "import.motience",
                        target: None,
                        source_ip: None,
                        details: json!({
                            "users": report.users,
                            "moved": report.moved,
                            "subscriptions": report.subscriptions,
                            "problems": report.problems.len(),
                        }),
                    },
                )
                .await?;
            }
            transaction.commit().await.map_err(DbError::from)?;
        }
        outcome
    };
    if report.aborted.is_some() {
        return Ok(report);
    }
    if !options.dry_run {
        announce(bus, &outcome, &report.moved, &mut report.warnings).await;
    }
    if options.data_history {
        let progress_key = format!("{origin}:data_history");
        let rows = import_data(
            &source,
            target,
            &outcome.present,
            options,
            &progress_key,
            &mut report,
        )
        .await?;
        report.data_rows = Some(rows);
        if !options.dry_run && rows.imported > 0 {
            let client = target.client().await?;
            store::insert_audit(
                &client,
                &AuditRecord {
                    actor_id: None,
                    actor: Some("nodegrid import".into()),
                    action: "import.motience_data",
                    target: None,
                    source_ip: None,
                    details: json!({ "data_rows": rows }),
                },
            )
            .await?;
        }
    }
    source.close();
    Ok(report)
}

async fn read_users(source: &impl GenericClient) -> Result<Vec<SourceUser>, ImportError> {
    let rows = source
        .query(
            "SELECT id::BIGINT, username::TEXT, password_hash::TEXT, role::TEXT, \
                    device_id::TEXT, extract(epoch FROM created_at)::FLOAT8 \
             FROM users ORDER BY id",
            &[],
        )
        .await
        .map_err(source_error)?;
    Ok(rows
        .iter()
        .map(|row| SourceUser {
            id: row.get(0),
            username: row.get::<_, Option<String>>(1).unwrap_or_default(),
            password_hash: row.get::<_, Option<String>>(2).unwrap_or_default(),
            role: row.get::<_, Option<String>>(3).unwrap_or_default(),
            device_id: row.get(4),
            created_at: row.get(5),
        })
        .collect())
}

/// `(id, consumer_id, producer_id, status, created_at)` of every subscription.
type SourceSubscription = (i64, i64, i64, String, Option<f64>);

async fn read_subscriptions(
    source: &impl GenericClient,
) -> Result<Vec<SourceSubscription>, ImportError> {
    let rows = source
        .query(
            "SELECT id::BIGINT, consumer_id::BIGINT, producer_id::BIGINT, \
                    coalesce(status::TEXT, ''), extract(epoch FROM created_at)::FLOAT8 \
             FROM subscriptions ORDER BY id",
            &[],
        )
        .await
        .map_err(source_error)?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect())
}

/// The source's name for `users.imported_from` and the progress of its data rows: host, port
/// and database, never the user or password.
fn source_key(url: &str) -> Result<String, ImportError> {
    let config: tokio_postgres::Config = url.parse().map_err(|error: tokio_postgres::Error| {
        ImportError::Source(DbError::InvalidUrl(error.to_string()))
    })?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("postgres");
    Ok(format!("{ORIGIN}:{host}:{port}/{database}"))
}

/// A missing table or column means the URL points somewhere else.
fn source_error(error: tokio_postgres::Error) -> ImportError {
    match error.code() {
        Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN => {
            ImportError::NotTheSource {
                system: "Motience",
                reason: error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
            }
        }
        _ => ImportError::Source(DbError::from(error)),
    }
}

/// Decides every source user and subscription against nodegrid's rows and writes them.
async fn import_users_and_subscriptions(
    transaction: &impl GenericClient,
    origin: &str,
    users: Vec<SourceUser>,
    subscriptions: Vec<SourceSubscription>,
    report: &mut ImportReport,
) -> Result<UsersOutcome, ImportError> {
    let candidates = candidates(transaction, users, report).await?;
    let ids: Vec<i64> = candidates.iter().map(|c| c.id).collect();
    let lowered: Vec<&str> = candidates.iter().map(|c| c.lowered.as_str()).collect();
    let existing: Vec<TargetUser> = transaction
        .query(
            "SELECT id, username, lower(username), role, imported_from, token_version FROM users \
             WHERE id = ANY($1) OR lower(username) = ANY($2)",
            &[&ids, &lowered],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| TargetUser {
            id: row.get(0),
            username: row.get(1),
            lowered: row.get(2),
            role: row.get(3),
            imported_from: row.get(4),
            token_version: row.get(5),
        })
        .collect();
    let by_id: HashMap<i64, &TargetUser> = existing.iter().map(|user| (user.id, user)).collect();
    let by_name: HashMap<&str, &TargetUser> = existing
        .iter()
        .map(|user| (user.lowered.as_str(), user))
        .collect();

    let mut outcome = UsersOutcome::default();
    let mut to_insert: Vec<(&Candidate, i32)> = Vec::new();
    let mut to_move: Vec<&TargetUser> = Vec::new();
    for candidate in &candidates {
        let holder = by_id.get(&candidate.id).copied();
        let namesake = by_name.get(candidate.lowered.as_str()).copied();
        if let Some(holder) =
            holder.filter(|holder| holder.imported_from.as_deref() == Some(origin))
        {
            if holder.username == candidate.username {
                report.users.unchanged += 1;
                // The role an earlier run stored (a role never changes in nodegrid).
                let role = Role::parse(&holder.role).unwrap_or(candidate.role);
                outcome.present.insert(candidate.id, role);
            } else {
                // The same account, renamed in Motience since: its devices log in with one
                // name or the other, and nodegrid cannot tell which; an operator decides.
                report.users.skipped += 1;
                report.problem(
                    "users",
                    candidate.id,
                    ProblemKind::Conflict,
                    format!(
                        "renamed in Motience from {:?} to {:?} since the last import; skipped (rename it in one of the two)",
                        holder.username, candidate.username
                    ),
                );
            }
            continue;
        }
        if let Some(namesake) = namesake {
            report.users.skipped += 1;
            report.problem(
                "users",
                candidate.id,
                ProblemKind::Conflict,
                format!(
                    "username {:?} is taken in nodegrid by user {} ({:?}); skipped",
                    candidate.username, namesake.id, namesake.username
                ),
            );
            continue;
        }
        match holder {
            Some(holder) if holder.imported_from.is_some() => {
                report.problem(
                    "users",
                    candidate.id,
                    ProblemKind::Collision,
                    format!(
                        "id {} belongs to {:?}, imported earlier from {}, not to {:?}",
                        candidate.id,
                        holder.username,
                        holder.imported_from.as_deref().unwrap_or("elsewhere"),
                        candidate.username
                    ),
                );
            }
            Some(holder) => {
                to_move.push(holder);
                to_insert.push((candidate, holder.token_version.saturating_add(1)));
            }
            None => to_insert.push((candidate, 0)),
        }
    }
    let collisions = report
        .problems
        .iter()
        .filter(|problem| problem.kind == ProblemKind::Collision)
        .count();
    if collisions > 0 {
        report.aborted = Some(format!(
            "{collisions} id(s) belong to accounts imported earlier from another source"
        ));
        return Ok(outcome);
    }

    // Moved accounts go past both the highest id nodegrid has and the highest the source has.
    let highest: i64 = transaction
        .query_one("SELECT coalesce(max(id), 0) FROM users", &[])
        .await
        .map_err(DbError::from)?
        .get(0);
    let first_free = highest.max(ids.iter().copied().max().unwrap_or(0)) + 1;
    for (to_id, holder) in (first_free..).zip(to_move) {
        move_account(transaction, holder.id, to_id).await?;
        report.moved.push(MovedAccount {
            username: holder.username.clone(),
            from_id: holder.id,
            to_id,
        });
    }
    insert_users(transaction, origin, &to_insert).await?;
    report.users.imported = to_insert.len() as u64;
    for (candidate, token_version) in &to_insert {
        outcome.present.insert(candidate.id, candidate.role);
        outcome.inserted.push((candidate.id, *token_version));
        if *token_version > 0 {
            outcome.displaced.push((candidate.id, *token_version));
        }
    }
    outcome.new_subscriptions =
        import_subscriptions(transaction, subscriptions, &outcome.present, report).await?;
    Ok(outcome)
}

/// The source users that can be imported; the others are reported.
async fn candidates(
    transaction: &impl GenericClient,
    users: Vec<SourceUser>,
    report: &mut ImportReport,
) -> Result<Vec<Candidate>, ImportError> {
    // Names are compared as nodegrid's unique index compares them: by Postgres's lower().
    let names: Vec<&str> = users.iter().map(|user| user.username.as_str()).collect();
    let lowered: Vec<String> = transaction
        .query(
            "SELECT lower(name) FROM unnest($1::TEXT[]) WITH ORDINALITY AS t(name, position) \
             ORDER BY position",
            &[&names],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut first_of_name: HashMap<String, (i64, String)> = HashMap::new();
    let mut candidates = Vec::with_capacity(users.len());
    for (user, lowered) in users.into_iter().zip(lowered) {
        let role = match user.role.as_str() {
            "producer" => Role::Producer,
            "consumer" => Role::Consumer,
            other => {
                report.users.skipped += 1;
                report.problem(
                    "users",
                    user.id,
                    ProblemKind::Skipped,
                    format!("role {other:?} has no nodegrid equivalent"),
                );
                continue;
            }
        };
        let length = user.username.chars().count();
        if length == 0 || length > MAX_NAME_CHARS {
            report.users.skipped += 1;
            report.problem(
                "users",
                user.id,
                ProblemKind::Skipped,
                format!("username of {length} characters (1 to {MAX_NAME_CHARS} are kept)"),
            );
            continue;
        }
        if HashScheme::of(&user.password_hash).is_none() {
            report.users.skipped += 1;
            report.problem(
                "users",
                user.id,
                ProblemKind::Skipped,
                "unknown password hash format (bcrypt $2a$/$2b$/$2y$ of cost 4 to 14, or Argon2, expected)".into(),
            );
            continue;
        }
        if let Some((first_id, first_name)) = first_of_name.get(&lowered) {
            report.users.skipped += 1;
            report.problem(
                "users",
                user.id,
                ProblemKind::Conflict,
                format!(
                    "username {:?} differs only by case from {:?} (user {first_id}), and nodegrid's names ignore case; skipped",
                    user.username, first_name
                ),
            );
            continue;
        }
        first_of_name.insert(lowered.clone(), (user.id, user.username.clone()));
        let device_id = user.device_id.filter(|device| {
            let length = device.chars().count();
            (1..=MAX_NAME_CHARS).contains(&length)
        });
        candidates.push(Candidate {
            id: user.id,
            username: user.username,
            lowered,
            password_hash: user.password_hash,
            role,
            device_id,
            created_at: user.created_at,
        });
    }
    Ok(candidates)
}

/// Gives a nodegrid account another id, with everything that refers to it: foreign keys follow
/// by `ON UPDATE CASCADE`; the audit log and API tokens name ids without one.
async fn move_account(
    transaction: &impl GenericClient,
    from_id: i64,
    to_id: i64,
) -> Result<(), DbError> {
    let (from_target, to_target) = (format!("user:{from_id}"), format!("user:{to_id}"));
    transaction
        .execute(
            "UPDATE users SET id = $2 WHERE id = $1",
            &[&from_id, &to_id],
        )
        .await?;
    transaction
        .execute(
            "UPDATE audit_log SET actor_id = $2 WHERE actor_id = $1",
            &[&from_id, &to_id],
        )
        .await?;
    transaction
        .execute(
            "UPDATE audit_log SET target = $2 WHERE target = $1",
            &[&from_target, &to_target],
        )
        .await?;
    transaction
        .execute(
            "UPDATE producer_data SET producer_id = $2 WHERE producer_id = $1",
            &[&from_id, &to_id],
        )
        .await?;
    transaction
        .execute(
            "UPDATE api_tokens SET producer_ids = array_replace(producer_ids, $1, $2) \
             WHERE $1 = ANY(producer_ids)",
            &[&from_id, &to_id],
        )
        .await?;
    Ok(())
}

async fn insert_users(
    transaction: &impl GenericClient,
    origin: &str,
    users: &[(&Candidate, i32)],
) -> Result<(), DbError> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = users.iter().map(|(user, _)| user.id).collect();
    let names: Vec<&str> = users
        .iter()
        .map(|(user, _)| user.username.as_str())
        .collect();
    let hashes: Vec<&str> = users
        .iter()
        .map(|(user, _)| user.password_hash.as_str())
        .collect();
    let roles: Vec<&str> = users.iter().map(|(user, _)| user.role.as_str()).collect();
    let devices: Vec<Option<&str>> = users
        .iter()
        .map(|(user, _)| user.device_id.as_deref())
        .collect();
    let created: Vec<Option<f64>> = users.iter().map(|(user, _)| user.created_at).collect();
    let versions: Vec<i32> = users.iter().map(|(_, version)| *version).collect();
    transaction
        .execute(
            "INSERT INTO users (id, username, password_hash, role, device_id, created_at, \
                                token_version, imported_from) \
             SELECT id, name, hash, role, device, coalesce(to_timestamp(created), now()), \
                    version, $8 \
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                         $6::FLOAT8[], $7::INT[]) \
                  AS t(id, name, hash, role, device, created, version)",
            &[
                &ids, &names, &hashes, &roles, &devices, &created, &versions, &origin,
            ],
        )
        .await?;
    Ok(())
}

/// Active subscriptions between imported users become nodegrid subscriptions; returns the
/// pairs this run added.
async fn import_subscriptions(
    transaction: &impl GenericClient,
    subscriptions: Vec<SourceSubscription>,
    present: &HashMap<i64, Role>,
    report: &mut ImportReport,
) -> Result<Vec<(i64, i64)>, ImportError> {
    let mut pairs: Vec<(i64, i64, Option<f64>)> = Vec::new();
    let mut seen = HashSet::new();
    for (id, consumer_id, producer_id, status, created_at) in subscriptions {
        let problem = if status != "active" {
            Some(format!(
                "status {status:?}: only active subscriptions are imported"
            ))
        } else if present.get(&consumer_id) != Some(&Role::Consumer) {
            Some(format!(
                "consumer {consumer_id} is not an imported consumer"
            ))
        } else if present.get(&producer_id) != Some(&Role::Producer) {
            Some(format!(
                "producer {producer_id} is not an imported producer"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                report.subscriptions.skipped += 1;
                report.problem("subscriptions", id, ProblemKind::Skipped, message);
            }
            None if seen.insert((consumer_id, producer_id)) => {
                pairs.push((consumer_id, producer_id, created_at));
            }
            None => report.subscriptions.unchanged += 1,
        }
    }
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let consumers: Vec<i64> = pairs.iter().map(|pair| pair.0).collect();
    let producers: Vec<i64> = pairs.iter().map(|pair| pair.1).collect();
    let created: Vec<Option<f64>> = pairs.iter().map(|pair| pair.2).collect();
    let added: Vec<(i64, i64)> = transaction
        .query(
            "INSERT INTO subscriptions (consumer_id, producer_id, created_at) \
             SELECT consumer, producer, coalesce(to_timestamp(created), now()) \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::FLOAT8[]) AS t(consumer, producer, created) \
             ON CONFLICT DO NOTHING RETURNING consumer_id, producer_id",
            &[&consumers, &producers, &created],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    report.subscriptions.imported = added.len() as u64;
    report.subscriptions.unchanged += (pairs.len() - added.len()) as u64;
    Ok(added)
}

/// Tells running instances what the committed import changed: the old holders of moved ids
/// lose their tokens and sockets, no stream state of an earlier holder stays under an imported
/// id, and subscriber indexes learn the new subscriptions.
async fn announce(
    bus: Option<&RedisBus>,
    outcome: &UsersOutcome,
    moved: &[MovedAccount],
    warnings: &mut Vec<String>,
) {
    let Some(bus) = bus else {
        if !outcome.inserted.is_empty() || !outcome.new_subscriptions.is_empty() {
            warnings.push(
                "Redis is not reachable: running instances see the imported accounts and subscriptions after their next reload (or restart)".into(),
            );
        }
        return;
    };
    let mut failed = 0usize;
    let origin = uuid::Uuid::new_v4();
    let mut publish = async |event: ControlEvent| {
        if bus
            .publish_control(&ControlEnvelope { origin, event })
            .await
            .is_err()
        {
            failed += 1;
        }
    };
    // First the old holders of moved ids lose their sockets and tokens (blocked, then
    // unblocked at the new version, which the new holders' tokens carry), so that nothing
    // they send lands in the stream state that is about to change hands.
    for &(user_id, token_version) in &outcome.displaced {
        publish(ControlEvent::UserBlocked {
            user_id,
            token_version,
        })
        .await;
        publish(ControlEvent::UserUnblocked {
            user_id,
            token_version,
        })
        .await;
    }
    for &(consumer_id, producer_id) in &outcome.new_subscriptions {
        publish(ControlEvent::SubscriptionChanged {
            consumer_id,
            producer_id,
            active: true,
        })
        .await;
    }
    for account in moved {
        if bus
            .move_producer_state(account.from_id, account.to_id)
            .await
            .is_err()
        {
            failed += 1;
        }
    }
    let moved_from: HashSet<i64> = moved.iter().map(|account| account.from_id).collect();
    let stale: Vec<i64> = outcome
        .inserted
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !moved_from.contains(id))
        .collect();
    if bus.forget_producer_state(&stale).await.is_err() {
        failed += 1;
    }
    if failed > 0 {
        warnings.push(format!(
            "{failed} notice(s) to running instances failed: restart them, or they see the import after their next reload"
        ));
    }
}

/// Copies `data_history` into stored producer data, in batches, from where the last run
/// stopped. Rows of producers that were not imported, and rows older than the retention (the
/// housekeeper would drop them at once) or than `--since`, are counted as skipped.
async fn import_data(
    source: &Database,
    target: &Database,
    present: &HashMap<i64, Role>,
    options: &MotienceImport,
    progress_key: &str,
    report: &mut ImportReport,
) -> Result<Counts, ImportError> {
    let mut counts = Counts::default();
    let retention_ms = i64::try_from(options.retention_days)
        .unwrap_or(i64::MAX / 86_400_000)
        .saturating_mul(86_400_000);
    let oldest_kept = Utc::now().timestamp_millis().saturating_sub(retention_ms);
    let since = options.since.map_or(oldest_kept, |since| {
        since.timestamp_millis().max(oldest_kept)
    });
    let mut last_id: i64 = {
        let client = target.client().await?;
        client
            .query_opt(
                "SELECT last_id FROM import_progress WHERE source = $1",
                &[&progress_key],
            )
            .await
            .map_err(DbError::from)?
            .map_or(0, |row| row.get(0))
    };
    let store = DataStore::new(target.clone());
    let epoch: Arc<str> = Arc::from(DATA_EPOCH);
    let mut unknown_producers: HashMap<i64, u64> = HashMap::new();
    // Progress only passes rows that are stored: a row skipped now (its producer in conflict,
    // older than `--since`) is read again by the next run, which may take it.
    let mut contiguous = last_id;
    let mut gap = false;
    loop {
        let rows = {
            let client = source.client().await.map_err(ImportError::Source)?;
            client
                .query(
                    "SELECT id::BIGINT, producer_id::BIGINT, payload::TEXT, \
                            (extract(epoch FROM \"timestamp\") * 1000)::BIGINT \
                     FROM data_history WHERE id > $1::BIGINT ORDER BY id LIMIT $2",
                    &[&last_id, &DATA_BATCH_ROWS],
                )
                .await
                .map_err(source_error)?
        };
        let Some(last) = rows.last() else { break };
        last_id = last.get(0);
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let row_id: i64 = row.get(0);
            let producer_id: Option<i64> = row.get(1);
            let ts: Option<i64> = row.get(3);
            let payload: Option<String> = row.get(2);
            let (Some(producer_id), Some(ts), Some(payload)) = (producer_id, ts, payload) else {
                // A row without its producer, time or payload can never be stored.
                counts.skipped += 1;
                if !gap {
                    contiguous = row_id;
                }
                continue;
            };
            if present.get(&producer_id) != Some(&Role::Producer) {
                *unknown_producers.entry(producer_id).or_default() += 1;
                counts.skipped += 1;
                gap = true;
                continue;
            }
            if ts < since {
                counts.skipped += 1;
                gap = true;
                continue;
            }
            if !gap {
                contiguous = row_id;
            }
            batch.push(StoredRow {
                producer_id,
                ts,
                seq: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                epoch: epoch.clone(),
                payload,
            });
        }
        if options.dry_run {
            counts.imported += batch.len() as u64;
            continue;
        }
        let written = store.insert(&batch).await?;
        counts.imported += written;
        counts.unchanged += batch.len() as u64 - written.min(batch.len() as u64);
        let client = target.client().await?;
        client
            .execute(
                "INSERT INTO import_progress (source, last_id) VALUES ($1, $2) \
                 ON CONFLICT (source) DO UPDATE SET last_id = $2, updated_at = now()",
                &[&progress_key, &contiguous],
            )
            .await
            .map_err(DbError::from)?;
    }
    let mut unknown: Vec<(i64, u64)> = unknown_producers.into_iter().collect();
    unknown.sort_unstable();
    for (producer_id, rows) in unknown {
        report.problem(
            "data_history",
            producer_id,
            ProblemKind::Skipped,
            format!("{rows} row(s) of producer {producer_id}, which is not an imported producer"),
        );
    }
    if counts.skipped > 0 {
        report.warnings.push(format!(
            "data rows before {} (the retention of {} days, or --since) or of producers not imported were skipped",
            DateTime::<Utc>::from_timestamp_millis(since)
                .map_or_else(|| since.to_string(), |time| time.to_rfc3339()),
            options.retention_days
        ));
    }
    Ok(counts)
}

/// How long the import waits for Redis before going on without it.
pub const REDIS_WAIT: Duration = Duration::from_secs(5);
