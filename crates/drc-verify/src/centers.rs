//! Connections to every center, in topology order: one reading session per center, set up
//! for comparing (`READ COMMITTED`, so every statement reads the newest committed rows and
//! holds no snapshot open; `time_zone = '+00:00'`; `character_set_results = NULL`, so string
//! keys arrive as the column's own bytes and are written back exactly), and statements run in
//! every center at once.
//!
//! A transient failure (lost connection, deadlock, lock wait timeout) reconnects and runs the
//! statement again, up to [`ATTEMPTS`] times: every statement here is a read.

use std::time::Duration;

use drc_config::Config;
use drc_core::position::Position;
use drc_mysql::{connect, current_position, server_info, ServerInfo};
use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::error::VerifyError;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of one read before its error is returned.
pub const ATTEMPTS: u32 = 4;

const SETUP: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
     SET SESSION time_zone = '+00:00', character_set_results = NULL";

/// One center's reading session.
pub struct Center {
    /// The center's name.
    pub name: String,
    /// Its connection URL (with password; never printed).
    pub url: String,
    /// Its server.
    pub info: ServerInfo,
    conn: Conn,
}

async fn session(url: &str, name: &str) -> Result<Conn, VerifyError> {
    let mut conn = connect(url, CONNECT_TIMEOUT)
        .await
        .map_err(VerifyError::server(name))?;
    conn.query_drop(SETUP)
        .await
        .map_err(VerifyError::query(name, "setting up the reading session"))?;
    Ok(conn)
}

impl Center {
    /// Connects to center `name` of `config`.
    pub async fn open(config: &Config, name: &str) -> Result<Center, VerifyError> {
        let c = config
            .center(name)
            .ok_or_else(|| VerifyError::Input(format!("unknown center {name}")))?;
        let mut conn = session(c.url(), name).await?;
        let info = server_info(&mut conn)
            .await
            .map_err(VerifyError::server(name))?;
        Ok(Center {
            name: name.to_string(),
            url: c.url().to_string(),
            info,
            conn,
        })
    }

    /// A second session to the same center.
    pub async fn reopen(&self) -> Result<Center, VerifyError> {
        Ok(Center {
            name: self.name.clone(),
            url: self.url.clone(),
            info: self.info.clone(),
            conn: session(&self.url, &self.name).await?,
        })
    }

    /// The session, for statements of the caller's own.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Runs `q` with the binary protocol (values typed exactly), retrying transient failures.
    pub async fn rows(&mut self, q: &str, what: &str) -> Result<Vec<Row>, VerifyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .conn
                .exec::<Row, _, _>(q, ())
                .await
                .map_err(VerifyError::query(&self.name, what));
            match r {
                Ok(rows) => return Ok(rows),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(center = %self.name, error = %e, attempt, "a verify read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    self.conn = session(&self.url, &self.name).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `q` with the text protocol (one round trip), retrying transient failures.
    pub async fn text_rows(&mut self, q: &str, what: &str) -> Result<Vec<Row>, VerifyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .conn
                .query::<Row, _>(q)
                .await
                .map_err(VerifyError::query(&self.name, what));
            match r {
                Ok(rows) => return Ok(rows),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(center = %self.name, error = %e, attempt, "a verify read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    self.conn = session(&self.url, &self.name).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's current end of binlog.
    pub async fn position(&mut self) -> Result<Position, VerifyError> {
        current_position(&mut self.conn, &self.info)
            .await
            .map_err(VerifyError::server(&self.name))
    }
}

/// Every center, in topology order.
pub struct Centers {
    /// The centers.
    pub list: Vec<Center>,
    /// The meta database.
    pub meta: String,
}

impl Centers {
    /// Connects to every center of `config`.
    pub async fn open(config: &Config) -> Result<Centers, VerifyError> {
        let mut list = Vec::new();
        for c in &config.centers {
            list.push(Center::open(config, &c.name).await?);
        }
        Ok(Centers {
            list,
            meta: config.replication.meta_database.clone(),
        })
    }

    /// The centers' names.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|c| c.name.clone()).collect()
    }

    /// Runs `q` in every center at once (`text`: text protocol), and reads each center's
    /// binlog position right after its answer: every change that center had committed when
    /// it read is at or before that position.
    pub async fn everywhere(
        &mut self,
        q: &str,
        text: bool,
        what: &str,
    ) -> Result<Vec<(Vec<Row>, Position)>, VerifyError> {
        try_join_all(self.list.iter_mut().map(|c| async move {
            let rows = if text {
                c.text_rows(q, what).await?
            } else {
                c.rows(q, what).await?
            };
            let pos = c.position().await?;
            Ok::<_, VerifyError>((rows, pos))
        }))
        .await
    }
}
