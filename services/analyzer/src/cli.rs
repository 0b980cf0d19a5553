//! The command line: `serve`, `migrate`, `tenant …`, `token mint …`,
//! `usage report`, `backup`, `restore`. Every
//! command reads the same configuration as `serve`; results go to stdout
//! as JSON (or the bare token), logs to stderr.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, connect_store, shutdown_signal};
use crate::auth::Authenticator;
use crate::config::{Config, Env as _, ProcessEnv};
use crate::secrets::{Overlay, ParameterStore};
use crate::tenants;
use crate::usage::{Period, Report, metrics};
use analyzer_domain::tenants::{TenantId, TenantName, TenantStatus, Tier};
use analyzer_telemetry::{self as telemetry, Exports, Sink};
use std::collections::HashMap;

/// Multi-tenant AI analyzer backend.
#[derive(Debug, Parser)]
#[command(name = "analyzer", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (bind with ANALYZER_BIND, default 0.0.0.0:8000).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Mint tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Usage reports from the ledger.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Copy the embedded data (SQLite database, vector store) to a new or
    /// empty directory or to `s3://bucket/prefix`, while a server on the
    /// same data dir keeps serving; prints the backup's manifest.
    Backup {
        /// A directory, or `s3://BUCKET/PREFIX` (AWS SDK, default credentials).
        #[arg(long)]
        to: String,
    },
    /// Rebuild an empty data dir from a backup, then bring its vector store
    /// in line with its database; prints what was done.
    Restore {
        /// A backup's directory or `s3://BUCKET/PREFIX`.
        #[arg(long)]
        from: String,
    },
    /// Exit 0 if the server on this host answers `GET /health` with 200
    /// (the container's health check: the image has no shell or curl).
    Healthcheck {
        /// The port to ask; default: the port of ANALYZER_BIND (8000).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Extract an uploaded file's text (the server runs this as a child
    /// process per file; see `uploads`).
    #[command(hide = true)]
    Extract {
        /// The file.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Its name as uploaded (its extension must agree with its content).
        #[arg(long)]
        name: String,
        /// Where to write the answer (JSON).
        #[arg(long)]
        output: std::path::PathBuf,
        /// The bounds, as JSON (`analyzer_extract::Limits`).
        #[arg(long)]
        limits: String,
        /// Address space limit of this process.
        #[arg(long)]
        memory_bytes: u64,
        /// CPU time limit of this process.
        #[arg(long)]
        cpu_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
enum UsageCommand {
    /// Usage per tenant over a period, for cost allocation. Counts reach
    /// the ledger within a serving task's flush interval (2 s).
    Report {
        /// Start: a date (2026-11-01) or an RFC 3339 time, included.
        #[arg(long)]
        from: String,
        /// End: a date (its whole day included) or an RFC 3339 time (not
        /// included).
        #[arg(long)]
        to: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// Aligned columns for a terminal.
    Table,
    /// The same JSON as `GET /v1/admin/usage`.
    Json,
    /// One line per tenant, with a header line.
    Csv,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print it as JSON.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// `standard` or `premium`.
        #[arg(long, default_value = "standard")]
        tier: String,
    },
    /// Print all tenants as JSON.
    List,
    /// Change a tenant's tier and/or status.
    Set {
        /// The tenant id.
        id: String,
        /// New tier: `standard` or `premium`.
        #[arg(long)]
        tier: Option<String>,
        /// New status: `active` or `suspended`.
        #[arg(long)]
        status: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a signed JWT (needs JWT_SECRET, or the dev key in the data dir).
    Mint(MintArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// Mint a tenant token for this tenant id.
    #[arg(long)]
    tenant: Option<String>,
    /// Mint an admin token.
    #[arg(long)]
    admin: bool,
}

#[derive(Debug, Args)]
struct MintArgs {
    #[command(flatten)]
    who: Who,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Before configuration and Parameter Store: it runs every few seconds.
    if let Command::Healthcheck { port } = cli.command {
        return healthcheck(port).await;
    }
    // A child of the server's: no configuration, no telemetry, no secrets.
    if let Command::Extract {
        input,
        name,
        output,
        limits,
        memory_bytes,
        cpu_seconds,
    } = &cli.command
    {
        let limits = serde_json::from_str(limits).context("--limits")?;
        return crate::uploads::run_child(
            input,
            name,
            output,
            &limits,
            *memory_bytes,
            *cpu_seconds,
        )
        .context("extract");
    }
    // Only the server exports telemetry; a CLI command's spans stay local.
    let (sink, exports) = match cli.command {
        Command::Serve => (Sink::Stdout, Exports::from_env(|k| std::env::var(k).ok())),
        _ => (Sink::Stderr, Ok(Exports::none())),
    };
    let exports = exports.context("OpenTelemetry configuration")?;
    let telemetry = telemetry::init(sink, &exports)?;
    let result = run_command(cli).await;
    // Spans and metrics still buffered go out before the process ends.
    if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        tracing::warn!(error = %e, "telemetry shutdown failed");
    }
    result
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    // Parameter Store comes before anything else reads configuration.
    let secrets = match ProcessEnv.var("ANALYZER_SSM_PATH") {
        Some(path) => {
            let store = ParameterStore::new(&path).await;
            let parameters = store.load().await?;
            tracing::info!(path = %store.path(), count = parameters.len(), "loaded Parameter Store");
            Some((store, parameters))
        }
        None => None,
    };
    let overlay = Overlay {
        parameters: secrets.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
    };
    let config = Config::load(&overlay)?;
    match cli.command {
        Command::Serve => serve(config, secrets).await,
        Command::Migrate => {
            let db = connect_store(&config).await?;
            db.close().await;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Tenant(cmd) => tenant(config, cmd).await,
        Command::Token(TokenCommand::Mint(args)) => mint(config, args).await,
        Command::Usage(UsageCommand::Report { from, to, format }) => {
            usage_report(config, &from, &to, format).await
        }
        Command::Backup { to } => {
            let manifest = crate::backup::backup(&config, &to).await?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::Restore { from } => {
            let restored = crate::backup::restore(&config, &from).await?;
            println!("{}", serde_json::to_string_pretty(&restored)?);
            Ok(())
        }
        Command::Healthcheck { port } => healthcheck(port).await,
        // Run by `run` before any configuration is read.
        Command::Extract { .. } => anyhow::bail!("`extract` runs without configuration"),
    }
}

async fn healthcheck(port: Option<u16>) -> anyhow::Result<()> {
    let port = match port {
        Some(port) => port,
        None => ProcessEnv
            .var("ANALYZER_BIND")
            .as_deref()
            .unwrap_or("0.0.0.0:8000")
            .parse::<std::net::SocketAddr>()
            .context("ANALYZER_BIND: expected HOST:PORT")?
            .port(),
    };
    let url = format!("http://127.0.0.1:{port}/health");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    Ok(())
}

async fn usage_report(
    config: Config,
    from: &str,
    to: &str,
    format: ReportFormat,
) -> anyhow::Result<()> {
    let period = Period::parse(from, to).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let db = connect_store(&config).await?;
    let rows = db.usage_report(period.from, period.to).await;
    db.close().await;
    let report = Report::from_rows(period, rows?);
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => print!("{}", report.to_csv()),
        ReportFormat::Table => print!("{}", table(&report)),
    }
    Ok(())
}

/// The report as aligned columns.
fn table(report: &Report) -> String {
    let mut rows = vec![
        [
            "tenant",
            "tier",
            "calls",
            "searches",
            "analyses",
            "docs",
            "chunks",
            "emb tok",
            "llm tok",
            "cost USD",
            "compute ms",
            "stored bytes",
        ]
        .map(str::to_owned),
    ];
    for t in &report.tenants {
        let n = |name: &str| t.counters.get(name).copied().unwrap_or(0);
        rows.push([
            t.name.clone(),
            t.tier.as_str().to_owned(),
            n(metrics::API_CALLS).to_string(),
            n(metrics::SEARCHES).to_string(),
            n(metrics::ANALYSES).to_string(),
            n(metrics::DOCUMENTS_INGESTED).to_string(),
            n(metrics::CHUNKS_INGESTED).to_string(),
            n(metrics::EMBEDDING_TOKENS).to_string(),
            (n(metrics::LLM_PROMPT_TOKENS) + n(metrics::LLM_COMPLETION_TOKENS)).to_string(),
            format!("{:.4}", t.estimated_cost_usd),
            format!("{:.1}", t.compute_ms),
            t.storage_bytes.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("usage from {} to {}\n", report.from, report.to);
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn serve(
    config: Config,
    secrets: Option<(ParameterStore, HashMap<String, String>)>,
) -> anyhow::Result<()> {
    let mut app = Application::build(config).await?;
    if let Some((store, parameters)) = secrets {
        app = app.with_parameter_store(store, parameters);
    }
    let addr = app.local_addr()?;
    tracing::info!(%addr, "listening");
    if let Some(token) = app.dev_admin_token() {
        // Printed on purpose, in development only, so a fresh checkout is
        // usable at once; it is not a log line.
        println!(
            "\nDevelopment mode: no JWT key configured, a signing key was generated in the data dir.\n\
             Admin token (valid 24 h):\n\n{token}\n"
        );
    }
    app.run_until_stopped(shutdown_signal()).await
}

async fn tenant(config: Config, cmd: TenantCommand) -> anyhow::Result<()> {
    let db = connect_store(&config).await?;
    let result = match cmd {
        TenantCommand::Create { name, tier } => {
            let name = TenantName::try_from(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let tier: Tier = tier.parse().map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
            let tenant = tenants::create(&db, name, tier).await?;
            serde_json::to_string_pretty(&tenant)?
        }
        TenantCommand::List => serde_json::to_string_pretty(&tenants::list(&db).await?)?,
        TenantCommand::Set { id, tier, status } => {
            let id: TenantId = id.parse().map_err(|e| anyhow::anyhow!("ID: {e}"))?;
            let tier: Option<Tier> = tier
                .map(|t| t.parse())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
            let status: Option<TenantStatus> = status
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
            if tier.is_none() && status.is_none() {
                bail!("give --tier, --status or both");
            }
            serde_json::to_string_pretty(&tenants::update(&db, &id, tier, status).await?)?
        }
    };
    db.close().await;
    println!("{result}");
    Ok(())
}

async fn mint(config: Config, args: MintArgs) -> anyhow::Result<()> {
    if !(60..=365 * 24 * 3600).contains(&args.ttl) {
        bail!("--ttl: expected 60 to 31536000 seconds");
    }
    let auth = Authenticator::from_config(&config)?;
    if !auth.can_mint() {
        bail!(
            "token mint needs JWT_SECRET (this configuration only verifies tokens issued elsewhere)"
        );
    }
    let tenant = match &args.who.tenant {
        Some(id) => {
            let id: TenantId = id.parse().map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let db = connect_store(&config).await?;
            let found = tenants::get(&db, &id).await;
            db.close().await;
            Some(found.with_context(|| format!("--tenant: no tenant {id}"))?)
        }
        None => None,
    };
    let ttl = Duration::from_secs(args.ttl);
    let token = match &tenant {
        Some(tenant) => auth.mint_for(tenant, ttl),
        None => auth.mint(None, args.who.admin, ttl),
    }
    .context("signing the token")?;
    println!("{token}");
    Ok(())
}
