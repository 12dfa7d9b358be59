//! What `sink.postgres` and `fetch.postgres` share: where the database is
//! (without its password), one connection pool per resource, and how a
//! Postgres error becomes an [`OpError`] the executor can act on.
//!
//! The pool lives in the run's [`RunState`](crate::RunState) under the
//! resource's name and the server's address, and holds at most as many
//! connections as the resource lets nodes run at once: nodes borrow a
//! connection for one attempt and give it back, so a run of a thousand
//! sinks opens a handful of connections, not a thousand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::{ExecContext, OpError, ParamError};

pub mod types;

/// Connections per pool when the node names no resource with a
/// concurrency.
const DEFAULT_POOL: usize = 4;

/// How long opening a connection may take before it counts as a transient
/// failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database to connect to: its settings, and a name for messages that
/// carries the host, port, database and user but never the password.
#[derive(Clone)]
pub struct Database {
    config: Config,
    shown: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Database {
    /// Parses a connection string, a URL (`postgres://user:pw@host:5432/db`)
    /// or libpq's `key=value` form. TLS is not supported yet.
    pub fn parse(url: &str) -> Result<Self, ParamError> {
        let mut config: Config = url.parse().map_err(|e| {
            ParamError::new(
                &["url"],
                format!(
                    "is not a Postgres connection string ({e}); write a URL like \
                     postgres://USER@HOST:5432/DATABASE or key=value pairs like \
                     'host=HOST dbname=DATABASE', and keep the password out of the \
                     file: url: ${{env:DATABASE_URL}}"
                ),
            )
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(ParamError::new(
                &["url"],
                "asks for TLS (sslmode=require), which quiver's Postgres operators do not \
                 support yet; connect over a local socket, a private network or a tunnel",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("quiver");
        let shown = shown(&config);
        Ok(Self { config, shown })
    }

    /// `postgres://USER@HOST:PORT/DB`, without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The run's pool for this database under the node's resource,
    /// made on first use.
    pub fn pool(&self, ctx: &ExecContext) -> Arc<Pool> {
        let resource = ctx.resource();
        let key = format!(
            "postgres:{}:{}",
            resource.map_or("", |r| &r.name),
            self.shown
        );
        let size = resource
            .and_then(|r| r.concurrency)
            .unwrap_or(DEFAULT_POOL)
            .max(1);
        ctx.run_state()
            .get_or_insert(&key, || Pool::new(self.clone(), size))
    }
}

fn shown(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map_or(String::new(), |u| format!("{u}@"));
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

/// Connections to one database for one resource.
pub struct Pool {
    db: Database,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn new(db: Database, size: usize) -> Self {
        Self {
            db,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// A connection for one attempt: an idle one that is still open, or a
    /// new one, waiting while the pool's every connection is lent out.
    pub async fn get(self: &Arc<Self>) -> Result<Conn, OpError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OpError::Internal("a Postgres pool's semaphore closed".into()))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match reused {
            Some(client) => client,
            None => self.connect().await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            reusable: false,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, OpError> {
        let (client, connection) = self.db.config.connect(NoTls).await.map_err(|e| {
            // Nothing the server said: the network or the server's state.
            // A server that refuses the login says so with a SQLSTATE.
            error(&format!("cannot connect to {}", self.db.shown), &e)
        })?;
        let shown = self.db.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(database = %shown, error = %e, "A Postgres connection ended");
            }
        });
        tracing::debug!(database = %self.db.shown, "Opened a Postgres connection");
        Ok(client)
    }
}

/// A connection lent by a [`Pool`]. It goes back to the pool only when
/// the work says it is in a clean state ([`Conn::done`]); dropped in the
/// middle of a transaction (an error, a timeout), it is closed instead,
/// and the server rolls the transaction back.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }

    /// The work finished with no transaction open: keep the connection.
    pub fn done(mut self) {
        self.reusable = true;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.reusable
            && !client.is_closed()
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(client);
        }
    }
}

/// A Postgres failure as the executor needs it: transient when trying
/// again may work (the connection broke, the server is starting or
/// shutting down, a serialization failure or deadlock, resources ran
/// out), the pipeline's fault when the server rejected the statement
/// (bad SQL, a missing table, a type mismatch, a constraint), an
/// environment failure otherwise. The message carries the server's
/// detail and hint.
pub fn error(context: &str, e: &tokio_postgres::Error) -> OpError {
    let Some(db) = e.as_db_error() else {
        let cause = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        return OpError::Source {
            message: format!("{context}: {e}{cause}"),
            transient: true,
        };
    };
    let mut message = format!("{context}: {}", db.message());
    if let Some(detail) = db.detail() {
        message.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    message.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
    let code = db.code();
    let class = &code.code()[..2];
    let transient = matches!(class, "08" | "53" | "57")
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED;
    if transient {
        OpError::Source {
            message,
            transient: true,
        }
    } else if matches!(class, "22" | "23" | "42" | "2B" | "0A") {
        OpError::Invalid(message)
    } else {
        OpError::Source {
            message,
            transient: false,
        }
    }
}

/// `"name"`, with quotes inside doubled: an identifier Postgres takes as
/// written, whatever it holds.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name as written in the pipeline, `table` or `schema.table`,
/// quoted part by part.
pub fn quote_table(name: &str) -> Result<String, ParamError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(ParamError::new(
            &["table"],
            format!("'{name}' is not a table name; write `table` or `schema.table`"),
        ));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_name_has_no_password() {
        let db =
            Database::parse("postgres://ingest:hunter2secret@db.internal:6543/market").unwrap();
        assert_eq!(db.shown(), "postgres://ingest@db.internal:6543/market");
        let db = Database::parse("host=/tmp/pg port=5433 dbname=x password=hunter2secret").unwrap();
        assert_eq!(db.shown(), "postgres:///tmp/pg:5433/x");
        assert!(!format!("{db:?}").contains("hunter2"));
    }

    #[test]
    fn bad_connection_strings_and_tls_are_refused_with_a_way_out() {
        let e = Database::parse("postgres://host:notaport/db").unwrap_err();
        assert!(e.message.contains("${env:DATABASE_URL}"), "{}", e.message);
        let e = Database::parse("postgres://h/db?sslmode=require").unwrap_err();
        assert!(e.message.contains("TLS"), "{}", e.message);
    }

    #[test]
    fn table_names_are_quoted_part_by_part() {
        assert_eq!(quote_table("bars").unwrap(), "\"bars\"");
        assert_eq!(quote_table("md.Bars").unwrap(), "\"md\".\"Bars\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(quote_table("a.b.c").is_err());
        assert!(quote_table("a.").is_err());
    }
}
