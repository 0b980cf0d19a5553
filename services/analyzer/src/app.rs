//! Startup and shutdown: build every component from configuration, bind
//! the listener, serve until a stop signal, then drain within a bound and
//! flush what is pending.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::cache::generations::Generations;
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::{Config, Environment};
use crate::http::{AppInner, AppState, router};
use crate::limits::Limiter;
use crate::secrets::{Overlay, ParameterStore, changed_names};
use crate::usage::UsageRecorder;
use analyzer_domain::analyze::{Analyst, ExtractiveAnalyst};
use analyzer_domain::embed::{Embedder, HashEmbedder};
use analyzer_store::{Announced, Backend, Db};
use analyzer_vectors::VectorStore;
use analyzer_vectors::breaker::{Breaker, BreakerStore};
#[cfg(feature = "edge")]
use analyzer_vectors::edge::EdgeStore;
use analyzer_vectors::metered::Metered;
use analyzer_vectors::qdrant::QdrantStore;
use std::collections::HashMap;

/// How often usage counters are written to the store.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    parameters: Option<(ParameterStore, HashMap<String, String>)>,
}

impl Application {
    /// Build every component and bind the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let state = build_state(config).await?;
        let listener = TcpListener::bind(state.config.bind)
            .await
            .with_context(|| format!("ANALYZER_BIND: cannot listen on {}", state.config.bind))?;
        Ok(Self {
            listener,
            state,
            parameters: None,
        })
    }

    /// Keep re-reading Parameter Store while serving (values as loaded at
    /// start given), to take rotated keys into use.
    pub fn with_parameter_store(
        mut self,
        store: ParameterStore,
        loaded: HashMap<String, String>,
    ) -> Self {
        self.parameters = Some((store, loaded));
        self
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// In development with no key configured: an admin token signed with
    /// the generated key, for the operator to start with.
    pub fn dev_admin_token(&self) -> Option<String> {
        let config = &self.state.config;
        let dev = config.environment == Environment::Development
            && config.jwt.secret.is_none()
            && config.jwt.public_key_pem.is_none()
            && config.jwt.jwks_url.is_none();
        dev.then(|| {
            self.state
                .auth
                .mint(None, true, Duration::from_secs(24 * 3600))
        })
        .flatten()
    }

    /// Serve until `shutdown` resolves, then stop accepting, let in-flight
    /// requests finish within the configured bound, and flush.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            parameters,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some((store, loaded)) = parameters {
            tokio::spawn(refresh_parameters(
                state.clone(),
                store,
                loaded,
                stop_rx.clone(),
            ));
        }

        tokio::spawn(sweep_vector_journal(state.clone(), stop_rx.clone()));
        tokio::spawn(follow_announcements(state.clone(), stop_rx.clone()));

        // The embedded stores of a single host: `analyzer backup` asks
        // this process for its copy of the vector store.
        if state.config.qdrant.is_none() && state.db.backend() == Backend::Sqlite {
            let data_dir = &state.config.data_dir;
            if let Err(e) =
                crate::control::listen(data_dir, Arc::clone(&state.vectors), stop_rx.clone())
            {
                tracing::warn!(
                    error = %e,
                    socket = %data_dir.join(crate::control::SOCKET).display(),
                    "no control socket: `analyzer backup` cannot copy the vector store while serving"
                );
            }
        }

        // The ledger's last flush must come after the last request: its
        // own stop is sent once the server has drained.
        let (usage_stop_tx, usage_stop_rx) = watch::channel(false);
        let usage_task = tokio::spawn(state.usage.clone().run(
            state.db.clone(),
            USAGE_FLUSH_INTERVAL,
            usage_stop_rx,
        ));

        // Each connection gets a clone of the router, a reference count:
        // `router` ends in `with_state`, so its routes are built once.
        let app = router(state.clone());
        let mut server_config = state.config.server;
        server_config.max_connections =
            crate::serve::connection_bound(server_config.max_connections);
        // The grace period is part of the drain's bound, not added to it.
        server_config.drain_grace = server_config.drain_grace.min(state.config.shutdown_timeout);
        let server = tokio::spawn(crate::serve::serve(
            listener,
            app,
            server_config,
            stop_rx.clone(),
        ));

        shutdown.await;
        tracing::info!(
            timeout_s = state.config.shutdown_timeout.as_secs(),
            "stop signal received; draining"
        );
        let _ = stop_tx.send(true);
        match tokio::time::timeout(state.config.shutdown_timeout, server).await {
            Ok(Ok(())) => tracing::info!("drained"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("drain timed out; closing remaining connections"),
        }
        let _ = usage_stop_tx.send(true);
        if let Err(e) = usage_task.await {
            tracing::error!(error = %e, "usage flusher failed");
        }
        if let Err(e) = state.vectors.flush().await {
            tracing::error!(error = %e, "vector store flush failed");
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often the vector journal is swept (store/cleanups.rs), and how long
/// a revision recorded for removal is left to the request that recorded it.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
const SWEEP_SETTLE: Duration = Duration::from_secs(10);

/// Remove the vectors that requests left behind: at start, then every
/// [`SWEEP_INTERVAL`]. A pending ingest is given up on once it is older
/// than the longest a request may run, plus a margin.
async fn sweep_vector_journal(state: AppState, mut stop: watch::Receiver<bool>) {
    let abandon_after = state.config.longest_request() + Duration::from_secs(5);
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        match crate::documents::sweep(
            &state.db,
            state.vectors.as_ref(),
            SWEEP_SETTLE,
            abandon_after,
        )
        .await
        {
            Ok(swept) if swept.removed + swept.failed + swept.resynced > 0 => tracing::info!(
                removed = swept.removed,
                failed = swept.failed,
                resynced = swept.resynced,
                "vector journal swept"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "vector journal sweep failed; retrying later"),
        }
    }
}

/// Forget cached tenants and keys as other tasks announce their changes
/// (PostgreSQL; see `analyzer_store::Listener`). A listener that cannot
/// connect tries again every few seconds; meanwhile the caches' lifetime
/// bounds how long a change goes unseen.
async fn follow_announcements(state: AppState, mut stop: watch::Receiver<bool>) {
    const RETRY: Duration = Duration::from_secs(5);
    let store = state.config.store();
    loop {
        let listener = tokio::select! {
            listener = analyzer_store::Listener::connect(&store) => listener,
            _ = stop.changed() => return,
        };
        let mut listener = match listener {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other tasks' changes to tenants and keys; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        // Changes made before this listener began may not have been heard.
        state.auth.forget_all();
        loop {
            let announced = tokio::select! {
                announced = listener.next() => announced,
                _ = stop.changed() => return,
            };
            match announced {
                Ok(Announced::Tenant(id)) => state.auth.invalidate_tenant(&id),
                Ok(Announced::ApiKey(id)) => state.auth.forget_api_key(&id),
                Ok(Announced::Missed) => state.auth.forget_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection that hears other tasks' changes; reconnecting");
                    state.auth.forget_all();
                    break;
                }
            }
        }
    }
}

/// Re-read Parameter Store every `ANALYZER_SSM_REFRESH_SECONDS`: a rotated
/// JWT secret or public key is taken into use at once (the old one kept for
/// the overlap); other changes are reported and apply at the next start. A
/// failed or invalid read keeps the values in use.
async fn refresh_parameters(
    state: AppState,
    store: ParameterStore,
    mut current: HashMap<String, String>,
    mut stop: watch::Receiver<bool>,
) {
    const HOT: [&str; 2] = ["JWT_SECRET", "JWT_PUBLIC_KEY"];
    let mut ticker = tokio::time::interval(state.config.ssm_refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let fresh = match store.load().await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "Parameter Store refresh failed; keeping the values in use");
                continue;
            }
        };
        let changed = changed_names(&current, &fresh);
        if changed.is_empty() {
            continue;
        }
        let config = match Config::load(&Overlay {
            parameters: fresh.clone(),
        }) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "Parameter Store values are invalid; keeping the values in use");
                continue;
            }
        };
        if changed.iter().any(|n| HOT.contains(&n.as_str())) {
            match state.auth.rotate(&config.jwt, state.config.key_overlap) {
                Ok(()) => tracing::info!(
                    overlap_s = state.config.key_overlap.as_secs(),
                    "JWT keys rotated from Parameter Store"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "rotated JWT key unusable; keeping the keys in use");
                    continue;
                }
            }
        }
        let cold: Vec<&String> = changed
            .iter()
            .filter(|n| !HOT.contains(&n.as_str()))
            .collect();
        if !cold.is_empty() {
            tracing::warn!(names = ?cold, "Parameter Store values changed; they take effect at the next start");
        }
        current = fresh;
    }
}

/// Build the shared state: store (migrated), auth, embedder, vectors, analyst.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    analyzer_runtime::lanes::start();
    let db = connect_store(&config)
        .await?
        .with_standard_pool(&config.store())
        .await
        .context("DATABASE_URL: cannot open the standard tier's connections")?
        .with_context_cache(&config.data_dir)
        .context("ANALYZER_DATA_DIR")?;
    db.load_unsettled()
        .await
        .context("reading the vector journal")?;
    let auth = Authenticator::from_config(&config)?;
    let (embedder, analyst) = open_ai(&config)?;
    let vectors = open_vectors(&config, &db, embedder.as_ref()).await?;
    let (cache, redis): (Arc<dyn Cache>, _) = match &config.cache.redis_url {
        Some(url) => {
            let redis = Arc::new(
                RedisCache::connect(url.expose_secret(), config.cache.redis_timeout).await?,
            );
            (Arc::clone(&redis) as Arc<dyn Cache>, Some(redis))
        }
        None => (
            Arc::new(MemoryCache::new(crate::cache::in_process_bound(
                config.cache.memory_max_bytes,
            ))),
            None,
        ),
    };
    // With Redis, every write withdraws the tenant's published generation.
    let generations = redis.as_ref().map(|redis| {
        let generations = Arc::new(Generations::new(Arc::clone(redis)));
        db.set_write_notice(Arc::clone(&generations) as Arc<dyn analyzer_store::WriteNotice>);
        generations
    });
    // A crashed task's in-flight leases stop counting after the request
    // timeout plus a margin. Not the upload timeout: a crash would then
    // hold the tenant's slots for minutes; a longer upload's slot may stop
    // counting when nothing else of its tenant reaches its task meanwhile.
    let lease = config.limits.request_timeout + Duration::from_secs(30);
    let limiter = Arc::new(Limiter::new(
        config.premium,
        config.standard,
        config.expected_tasks,
        redis,
        lease,
    ));
    let housekeeping = Arc::downgrade(&limiter);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match housekeeping.upgrade() {
                Some(limiter) => limiter.housekeep(),
                None => break,
            }
        }
    });
    // Files are read by this same binary, run as a child per file.
    let program = std::env::current_exe().context("the path of this binary")?;
    let extractor =
        crate::uploads::Extractor::new(config.uploads, program, config.data_dir.join("uploads"))
            .context("the uploads directory in the data dir")?;
    let state = AppState::new(AppInner {
        limiter,
        extractor,
        config,
        db,
        auth,
        embedder,
        vectors,
        analyst,
        usage: UsageRecorder::default(),
        cache,
        generations,
        cache_stats: Arc::default(),
    });
    crate::gauges::observe(state.downgrade());
    Ok(state)
}

/// The configured embedder and analyst: the OpenAI-compatible provider's,
/// or the built-in ones.
pub fn open_ai(config: &Config) -> anyhow::Result<(Arc<dyn Embedder>, Arc<dyn Analyst>)> {
    Ok(match &config.openai {
        Some(openai) => open_provider(openai)?,
        None => (
            Arc::new(HashEmbedder),
            Arc::new(ExtractiveAnalyst::default()),
        ),
    })
}

/// The OpenAI-compatible provider's embedder and analyst.
#[cfg(feature = "openai")]
fn open_provider(
    openai: &crate::openai::OpenAiConfig,
) -> anyhow::Result<(Arc<dyn Embedder>, Arc<dyn Analyst>)> {
    let api = crate::openai::OpenAi::new(openai.clone()).context("the AI provider client")?;
    tracing::info!(
        embedding_model = %openai.embedding_model,
        chat_model = %openai.chat_model,
        "AI provider: OpenAI-compatible"
    );
    Ok((Arc::new(api.embedder()), Arc::new(api.analyst())))
}

#[cfg(not(feature = "openai"))]
fn open_provider(
    _openai: &crate::openai::OpenAiConfig,
) -> anyhow::Result<(Arc<dyn Embedder>, Arc<dyn Analyst>)> {
    anyhow::bail!(
        "OPENAI_API_KEY / OPENAI_BASE_URL: this build has no AI provider client (cargo feature `openai`)"
    )
}

/// The configured vector store: a Qdrant server behind the circuit breaker,
/// or the embedded Qdrant Edge shard.
async fn open_vectors(
    config: &Config,
    db: &Db,
    embedder: &dyn Embedder,
) -> anyhow::Result<Arc<dyn VectorStore>> {
    let Some(qdrant) = &config.qdrant else {
        return open_edge(config, db, embedder).await;
    };
    let (model, space) = (embedder.model().to_owned(), embedder.space());
    let store = Arc::new(
        QdrantStore::new(qdrant, &model, space)
            .context("QDRANT_URL")?
            .with_search_ef(config.vector_search_ef),
    );
    // A Qdrant that is down at start must not keep the task from serving
    // what it can (cached results, health): the first call that reaches it
    // creates the collection instead.
    if let Err(e) = store.ensure_collection().await {
        tracing::error!(error = %e, "Qdrant unreachable at start; the collection is created on first contact");
    }
    let breaker = Arc::new(Breaker::new(config.breaker));
    Ok(Arc::new(Metered::new(
        Arc::new(BreakerStore::new(store, breaker)),
        "qdrant",
    )))
}

/// The embedded Qdrant Edge shard in the data directory, reconciled with
/// the database after an unclean stop.
#[cfg(feature = "edge")]
async fn open_edge(
    config: &Config,
    db: &Db,
    embedder: &dyn Embedder,
) -> anyhow::Result<Arc<dyn VectorStore>> {
    let (model, space) = (embedder.model().to_owned(), embedder.space());
    let dir = config.data_dir.join("vectors");
    let ef = config.vector_search_ef;
    let store = tokio::task::spawn_blocking(move || EdgeStore::open(&dir, &model, space))
        .await
        .context("opening the vector store")??
        .with_search_ef(ef);
    if let Some(reason) = store.reconcile_reason() {
        let began = std::time::Instant::now();
        let report = crate::documents::reconcile(
            db,
            &store,
            embedder,
            config.chunking,
            crate::documents::Payloads::Current,
        )
        .await
        .context("reconciling the vector store with the database")?;
        tracing::info!(
            documents = report.documents,
            rebuilt = report.rebuilt,
            chunks = report.chunks,
            removed = report.removed,
            duration_ms = began.elapsed().as_millis() as u64,
            reason,
            "vector store reconciled with the database"
        );
    }
    Ok(Arc::new(Metered::new(Arc::new(store), "edge")))
}

#[cfg(not(feature = "edge"))]
async fn open_edge(
    _config: &Config,
    _db: &Db,
    _embedder: &dyn Embedder,
) -> anyhow::Result<Arc<dyn VectorStore>> {
    anyhow::bail!(
        "QDRANT_URL is required: this build has no embedded vector store (cargo feature `edge`)"
    )
}

/// Create the data dir, connect to the configured database and apply
/// migrations: what every command needs before it touches data.
pub async fn connect_store(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "ANALYZER_DATA_DIR: cannot create {}",
            config.data_dir.display()
        )
    })?;
    let db = Db::connect(&config.store())
        .await
        .context("DATABASE_URL: cannot connect to the database")?;
    db.migrate().await.context("applying database migrations")?;
    Ok(db)
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
