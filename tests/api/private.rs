//! A Redis and a PostgreSQL of a test's own (own port, own data directory), that the test can
//! kill and start again while the machine's shared ones serve the rest of the suite.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::eventually;

/// Waits until something accepts connections on `port`.
async fn answers(what: &str, port: u16) {
    eventually(what, Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// A `redis-server` without persistence: a restart loses everything, as a failed-over Redis
/// without replicas would.
pub struct OwnRedis {
    process: Option<std::process::Child>,
}

impl OwnRedis {
    pub async fn start(port: u16) -> OwnRedis {
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        answers("redis-server answers", port).await;
        OwnRedis {
            process: Some(process),
        }
    }

    /// Kills it (SIGKILL): no goodbye to its clients.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster in a temporary directory, trust authentication on loopback. As root it
/// runs as `postgres` (PostgreSQL refuses to run as root).
pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl OwnPostgres {
    /// A new cluster on `port`, started.
    pub async fn start(port: u16) -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries under /usr/lib/postgresql")
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb");
        let data = std::env::temp_dir().join(format!("nodegrid-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data).unwrap();
        // PostgreSQL refuses to run as root; as root, it runs as `postgres`.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory");
        }
        let postgres = OwnPostgres {
            port,
            bin,
            data,
            as_postgres,
        };
        let status = postgres
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(&postgres.data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb");
        postgres.resume().await;
        postgres
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the cluster (again).
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.data.display()
        );
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl start");
        answers("the private PostgreSQL answers", self.port).await;
    }

    /// Stops it at once (`immediate`: no checkpoint, clients cut off, as a crash would).
    pub fn kill(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
