//! The configuration's contract: defaults, precedence, the file, validation, the README table.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};

use super::file::{file_defaults, mutate_path, read_file};
use super::*;
use crate::identity::passwords::PasswordCost;
use crate::identity::tokens::DEVELOPMENT_JWT_SECRET;
use crate::pnodes::XANDEUM_PUBLIC_SEEDS;

/// Options from flags alone (no environment).
fn options(args: &[&str]) -> ServeOptions {
    ServeOptions::parse_from(
        std::iter::once("nodegrid").chain(args.iter().copied()),
        false,
    )
    .unwrap()
}

fn resolved(args: &[&str]) -> Result<Settings, ConfigError> {
    options(args).resolve()
}

#[test]
fn defaults_match_the_documented_contract() {
    let settings = Settings::defaults().unwrap();
    assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(
        settings.database_url,
        "postgres://postgres@127.0.0.1:5432/nodegrid"
    );
    assert_eq!(settings.redis_url, "redis://127.0.0.1:6379");
    assert_eq!(settings.redis_prefix, "nodegrid");
    assert_eq!(settings.log_format, LogFormat::Human);
    assert_eq!(settings.password_min_length, 8);
    assert_eq!(settings.stream.buffer_messages, 1_000);
    assert_eq!(settings.stream.token_expiry, WsTokenExpiry::Refresh);
    assert_eq!(settings.password_cost, PasswordCost::default());
}

#[test]
fn pnode_polling_is_off_by_default_and_the_public_seeds_are_a_preset() {
    let settings = Settings::defaults().unwrap();
    assert!(settings.pnodes.seeds.is_empty());
    let public = resolved(&["--pnode-seeds", "xandeum-public,127.0.0.1:7000"]).unwrap();
    assert_eq!(public.pnodes.seeds.len(), 10);
    assert_eq!(
        public.pnodes.seeds[0].rpc_url(),
        format!("http://{}:6000/rpc", XANDEUM_PUBLIC_SEEDS[0])
    );
    assert_eq!(
        public.pnodes.seeds[9].rpc_url(),
        "http://127.0.0.1:7000/rpc"
    );
    assert_eq!(settings.pnodes.interval, Duration::from_secs(60));
    assert_eq!(settings.pnodes.rpc_timeout, Duration::from_secs(3));
    assert_eq!(settings.pnodes.latest_version, None);
    let off = resolved(&[
        "--pnode-seeds",
        "",
        "--pnode-interval",
        "1",
        "--pnode-latest-version",
        "0.8.0",
    ])
    .unwrap();
    assert!(off.pnodes.seeds.is_empty());
    assert_eq!(off.pnodes.interval, Duration::from_secs(1));
    assert_eq!(off.pnodes.latest_version.as_deref(), Some("0.8.0"));
    for bad in [
        &["--pnode-interval", "0"][..],
        &["--pnode-seeds", "10.0.0.1:http"],
        &["--pnode-rpc-timeout-ms", "0"],
    ] {
        assert!(resolved(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_scoring_file_changes_weights_and_thresholds_and_refuses_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("nodegrid-scoring-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("scoring.toml");
    std::fs::write(
        &good,
        "[scoring]\nuptime_full_days = 10.0\n[alerts]\nstorage_critical_percent = 90.0\n",
    )
    .unwrap();
    let settings = resolved(&["--pnode-scoring-file", good.to_str().unwrap()]).unwrap();
    assert_eq!(settings.pnodes.analytics.scoring.uptime_full_days, 10.0);
    assert_eq!(settings.pnodes.analytics.scoring.trust_uptime_points, 40.0);
    assert_eq!(
        settings.pnodes.analytics.alerts.storage_critical_percent,
        90.0
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[scoring]\nuptime_days = 10.0\n").unwrap();
    assert!(
        super::ServeOptions::parse_from(
            ["nodegrid", "--pnode-scoring-file", bad.to_str().unwrap()],
            false
        )
        .unwrap()
        .resolve()
        .is_err()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A command with `serve` taking the options, as the binary has.
fn cli() -> Command {
    Command::new("nodegrid").subcommand(ServeOptions::augment_args(Command::new("serve")))
}

fn serve_options(command: Command, args: &[&str]) -> ServeOptions {
    let matches = command
        .mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)))
        .try_get_matches_from(args)
        .unwrap();
    let (_, serve) = matches.subcommand().unwrap();
    ServeOptions::from_arg_matches(serve).unwrap()
}

#[test]
fn flags_win_over_file_and_file_over_defaults() {
    let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nodegrid.toml");
    std::fs::write(
        &path,
        "redis_prefix = \"from-file\"\nhttp_addr = \"127.0.0.1:9000\"\nlog_format = \"json\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\ndatabase_pool_size = 3\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let values = read_file(Path::new(path)).unwrap();
    let args = [
        "nodegrid",
        "serve",
        "--config",
        path,
        "--http-addr",
        "127.0.0.1:9100",
    ];
    let command = mutate_path(cli(), &["serve".to_owned()], &|command| {
        file_defaults(command, &values)
    });
    let settings = serve_options(command, &args).resolve().unwrap();
    assert_eq!(settings.http_addr.to_string(), "127.0.0.1:9100");
    assert_eq!(settings.redis_prefix, "from-file");
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.trusted_proxies.len(), 2);
    assert_eq!(settings.database_pool_size, 3);
    assert_eq!(settings.redis_url, "redis://127.0.0.1:6379", "the default");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn production_refuses_a_missing_or_weak_jwt_secret() {
    for secret in [None, Some("short"), Some(DEVELOPMENT_JWT_SECRET)] {
        let mut args = vec!["--environment", "production"];
        if let Some(secret) = secret {
            args.extend(["--jwt-secret", secret]);
        }
        assert!(
            matches!(
                resolved(&args),
                Err(ConfigError::Invalid {
                    name: "jwt_secret",
                    ..
                })
            ),
            "{secret:?} accepted"
        );
    }
    assert!(
        resolved(&[
            "--environment",
            "production",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef"
        ])
        .is_ok()
    );
}

#[test]
fn trusted_proxies_take_addresses_and_networks() {
    let settings_ok = resolved(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]).unwrap();
    assert_eq!(settings_ok.trusted_proxies.len(), 2);
    assert!(resolved(&["--trusted-proxies", "proxy.local"]).is_err());
}

#[test]
fn unknown_file_keys_and_bad_prefixes_are_refused() {
    let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nodegrid.toml");
    std::fs::write(&path, "http_adr = \"127.0.0.1:9000\"\n").unwrap();
    assert!(matches!(
        read_file(&path),
        Err(ConfigError::ParseFile { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
    assert!(matches!(
        resolved(&["--redis-prefix", "bad:prefix"]),
        Err(ConfigError::Invalid {
            name: "redis_prefix",
            ..
        })
    ));
}

/// The README's option table is the declarations' table.
#[test]
fn the_readme_option_table_matches_the_declarations() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start =
        "<!-- options:start (generated from services/src/config.rs; a test checks it) -->\n";
    let end = "<!-- options:end -->";
    let from = readme
        .find(start)
        .expect("the README marks its option table")
        + start.len();
    let to = readme[from..].find(end).expect("the table's end mark") + from;
    let expected = options_markdown();
    // `NODEGRID_BLESS_README=1 cargo test -p nodegrid-services readme` rewrites the table.
    if std::env::var_os("NODEGRID_BLESS_README").is_some() && readme[from..to] != expected {
        let blessed = format!("{}{}{}", &readme[..from], expected, &readme[to..]);
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"),
            blessed,
        )
        .unwrap();
        return;
    }
    assert!(
        readme[from..to] == expected,
        "README.md's option table differs from the declarations; replace it with:\n{expected}"
    );
}
