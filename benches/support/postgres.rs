//! A real PostgreSQL server of the caller's own, for the tests and the
//! benchmark: Debian's `postgresql` binaries (the README's test command
//! installs them), a fresh cluster in a temporary folder, listening on
//! 127.0.0.1 at a free port, stopped and removed when dropped.
//!
//! The server refuses to run as root, so under root (CI) the cluster
//! belongs to the `postgres` user that Debian's package creates, and every
//! server command runs as that user.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    durable: bool,
}

impl Postgres {
    /// Makes and starts a cluster that favours speed over durability (it is
    /// thrown away); panics saying what to install when the binaries are
    /// missing.
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// A cluster with the server's own durability settings (each commit
    /// waits for its WAL to reach the disk), as a production server runs.
    pub fn start_durable() -> Postgres {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("quiver-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            run(Command::new("chown").args(["postgres:postgres", path(dir.path())]));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            dir,
            bin,
            port,
            as_postgres,
            durable,
        };
        let data = pg.data();
        pg.server(&[
            "initdb",
            "-D",
            &data,
            "-U",
            "quiver",
            "--auth=trust",
            "-E",
            "UTF8",
        ])
        .args(["--no-sync", "--locale=C"])
        .status()
        .map(|s| assert!(s.success(), "initdb failed"))
        .unwrap();
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        format!("{}/data", path(self.dir.path()))
    }

    /// A server program as the cluster's owner.
    fn server(&self, args: &[&str]) -> Command {
        let program = self.bin.join(args[0]);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(&args[1..]);
        cmd.stdout(std::process::Stdio::null());
        cmd
    }

    /// `pg_ctl start|restart|stop`, waiting for it to finish.
    pub fn ctl(&self, action: &str) {
        let data = self.data();
        let log = format!("{}/server.log", path(self.dir.path()));
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c log_connections=on",
            self.port,
            path(self.dir.path())
        );
        if !self.durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut cmd = self.server(&["pg_ctl", "-D", &data, "-l", &log, "-w", "-m", "fast"]);
        if action != "stop" {
            cmd.args(["-o", &options]);
        }
        let status = cmd.arg(action).status().unwrap();
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("pg_ctl {action} failed; the server's log:\n{log}");
        }
    }

    /// How many connections the server has let in whose
    /// `application_name` is `app`, from its log.
    pub fn connections_opened(&self, app: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap();
        let needle = format!("application_name={app}");
        log.lines()
            .filter(|l| l.contains("connection authorized") && l.contains(&needle))
            .count()
    }

    /// A new, empty database and its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://quiver@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in `db` with psql and returns what it printed, unaligned
    /// and without headers (`a|b` per row).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "quiver",
            ])
            .args(["-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .server(&["pg_ctl", "-D", &data, "-w", "-m", "immediate", "stop"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?} failed");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Debian's server binaries, newest version first.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb); \
             the README's test command installs it: apt-get install postgresql"
        )
    })
}
