//! The `nodegrid` binary as an operator runs it: exit codes, signals, two processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    closed_port, database_url, fresh_database, redis_url, spawn_server_process, unique_prefix,
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
