//! Several analyzer processes on one PostgreSQL database, each with its
//! own data dir: the shape of the production fleet.

use crate::{Options, PgDatabase, TestServer};

/// `n` servers on a fresh database; dropped together.
pub struct Fleet {
    /// The servers, in start order.
    pub servers: Vec<TestServer>,
    _dirs: Vec<tempfile::TempDir>,
    _pg: PgDatabase,
}

impl Fleet {
    /// Start `n` servers with `options`; `None` (with a note) where
    /// PostgreSQL is not reachable outside CI.
    pub async fn start(n: usize, options: &Options) -> Option<Self> {
        let pg = PgDatabase::create().await?;
        let mut servers = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = TestServer::start(dir.path(), Some(&pg.url), options.clone())
                .await
                .expect("server starts");
            servers.push(server);
            dirs.push(dir);
        }
        Some(Self {
            servers,
            _dirs: dirs,
            _pg: pg,
        })
    }
}
