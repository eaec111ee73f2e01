//! The `nodegrid` binary as an operator runs it: exit codes, signals, two processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    TEST_ADMIN, TEST_ADMIN_PASSWORD, closed_port, database_url, fresh_database, redis_url,
    spawn_server_process, spawn_server_process_with, unique_prefix,
};

#[test]
fn a_missing_database_is_one_clear_line_and_a_non_zero_exit() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["serve", "--http-addr", "127.0.0.1:0"])
        .env("NODEGRID_DATABASE_URL", database_url("ngt_does_not_exist"))
        .env("NODEGRID_REDIS_URL", redis_url())
        .env("NODEGRID_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{stderr}");
    assert!(
        lines[0].contains("\"ngt_does_not_exist\" does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unreachable_database_is_one_clear_line_and_a_non_zero_exit() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["migrate"])
        .env(
            "NODEGRID_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/nodegrid", closed_port()),
        )
        .env("NODEGRID_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_options_exit_with_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["serve", "--redis-prefix", "no:colons"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("redis_prefix"));
}

#[tokio::test]
async fn migrate_twice_in_a_row_succeeds() {
    let database = fresh_database().await;
    for _ in 0..2 {
        let status = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
            .args(["migrate", "--database-url", &database.url])
            .env("NODEGRID_LOG", "off")
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn two_processes_share_one_database_and_redis_and_are_both_ready() {
    let database = fresh_database().await;
    let prefix = unique_prefix();
    // Started together against a fresh database: both run migrations at once.
    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn_server_process(&database.url, &prefix));
        let b = scope.spawn(|| spawn_server_process(&database.url, &prefix));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(first.port, second.port);
    for server in [&first, &second] {
        let (status, body) = get(server.port, "/ready");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"status\":\"ready\""), "{body}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_and_exits_zero() {
    let database = fresh_database().await;
    let mut server = spawn_server_process(&database.url, &unique_prefix());
    let (status, _) = get(server.port, "/health");
    assert_eq!(status, 200);

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    let log = server.drain_log().join("\n");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
}

#[tokio::test]
async fn sigint_also_shuts_down_gracefully() {
    let database = fresh_database().await;
    let mut server = spawn_server_process(&database.url, &unique_prefix());
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    let log = server.drain_log().join("\n");
    assert!(log.contains("SIGINT"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

#[tokio::test]
async fn admin_create_user_reads_the_password_from_stdin_and_stores_only_a_hash() {
    use std::process::Stdio;
    let database = fresh_database().await;
    let run = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
            .args(["admin", "create-user", "--username", "cli-root"])
            .args(["--database-url", &database.url, "--log", "off"])
            .env("NODEGRID_REDIS_URL", redis_url())
            .env("NODEGRID_REDIS_PREFIX", unique_prefix())
            .env("NODEGRID_PASSWORD_MEMORY_KIB", "1024")
            .env("NODEGRID_PASSWORD_ITERATIONS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"cli-password-1\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "created admin cli-root"
    );
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("exists already"));

    let client = crate::helpers::connect(&database.url).await;
    let row = client
        .query_one(
            "SELECT role, password_hash FROM users WHERE username = 'cli-root'",
            &[],
        )
        .await
        .unwrap();
    let role: String = row.get(0);
    let hash: String = row.get(1);
    assert_eq!(role, "admin");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("cli-password-1"));
    let audit: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'admin.create' AND actor = 'system'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1);
}

/// A server started with no pNode option polls nobody: it says so once, lists no poller, and
/// makes no pRPC request.
#[tokio::test]
async fn a_server_without_pnode_options_never_polls_anyone() {
    let database = fresh_database().await;
    let server = spawn_server_process_with(
        &database.url,
        &unique_prefix(),
        0,
        &[
            ("NODEGRID_ADMIN_USERNAME", TEST_ADMIN),
            ("NODEGRID_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD),
        ],
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": TEST_ADMIN, "password": TEST_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let pollers: serde_json::Value = http
        .get(format!("{base}/api/admin/pollers"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pollers["pollers"], serde_json::json!([]), "{pollers}");
    assert_eq!(pollers["leader"], false, "{pollers}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "nodegrid_pnode_polls_total{",
        "nodegrid_pnode_call_failures_total{",
        "nodegrid_pnode_poll_duration_seconds_count{",
    ] {
        assert!(
            !metrics.contains(series),
            "a pRPC request was attempted: {series}"
        );
    }
    let log = server.drain_log().join("\n");
    assert_eq!(
        log.matches("pNode polling is off").count(),
        1,
        "one line says polling is off and how to turn it on:\n{log}"
    );
    assert!(log.contains("xandeum-public"), "{log}");
    assert!(!log.contains("pRPC seed poll failed"), "{log}");
}

/// The `--config` file sits under flags and variables and over the defaults; an unknown key is
/// refused with exit code 2.
#[tokio::test]
async fn a_config_file_sets_options_and_refuses_unknown_keys() {
    let database = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("ngt-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "database_url = \"{}\"\nlog = \"off\"\ndatabase_pool_size = 2\n",
            database.url
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["migrate", "--config", good.to_str().unwrap()])
        .env_remove("NODEGRID_DATABASE_URL")
        .status()
        .unwrap();
    assert!(status.success(), "the file named the database");
    // A variable wins over the file: this one names a database that does not exist.
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["migrate", "--config", good.to_str().unwrap()])
        .env("NODEGRID_DATABASE_URL", database_url("ngt_not_this_one"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ngt_not_this_one"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "databse_url = \"postgres://x\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["migrate", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown key \"databse_url\""),
        "{output:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
