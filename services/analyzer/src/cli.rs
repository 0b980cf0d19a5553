//! The command line: `serve`, `migrate`, `tenant …`, `token mint …`. Every
//! command reads the same configuration as `serve`; results go to stdout
//! as JSON (or the bare token), logs to stderr.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::{Application, connect_store, shutdown_signal};
use crate::auth::Authenticator;
use crate::config::{Config, Env as _, ProcessEnv};
use crate::secrets::{Overlay, ParameterStore};
use crate::telemetry::{self, Sink};
use crate::tenants::{self, TenantId, TenantName, TenantStatus, Tier};
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
    let sink = match cli.command {
        Command::Serve => Sink::Stdout,
        _ => Sink::Stderr,
    };
    telemetry::init(sink);
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
    }
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
            Some(
                found
                    .with_context(|| format!("--tenant: no tenant {id}"))?
                    .id,
            )
        }
        None => None,
    };
    let token = auth
        .mint(
            tenant.as_ref(),
            args.who.admin,
            Duration::from_secs(args.ttl),
        )
        .context("signing the token")?;
    println!("{token}");
    Ok(())
}
