//! `tern-relay`: run the relay, migrate and back up its database, issue
//! invites, move a single relay to a cluster's PostgreSQL.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tern_relay::Backend;
use tern_relay::store::Store;
use tern_relay::store::postgres::PgSettings;
use tern_relay::store::sqlite::SqliteStore;
use tern_relay::store::transfer;
use tern_relay::{Config, Server};

/// Tern relay: stores and forwards end-to-end encrypted messages over QUIC.
///
/// With no configuration it listens on UDP 127.0.0.1:4433, keeps its data in
/// ./tern-data and generates a self-signed certificate there on first start;
/// clients pin the SHA-256 fingerprint it prints.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from; flags override the file.
#[derive(clap::Args)]
struct Common {
    /// TOML configuration file (unknown keys are errors; see docs/operations.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, generated certificate).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        #[command(flatten)]
        common: Common,
        /// UDP address to listen on, e.g. 0.0.0.0:4433.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage invite tokens (for `registration = "invite"`).
    Invite {
        #[command(subcommand)]
        action: InviteAction,
    },
    /// Create or upgrade the database schema, then exit (nodes also migrate
    /// when they start; run this first when upgrading a cluster).
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Write a consistent copy of the SQLite database to PATH (safe while
    /// serving). PostgreSQL: use pg_dump or PITR (docs/cluster.md).
    Backup {
        #[command(flatten)]
        common: Common,
        /// Destination file; must not exist.
        path: PathBuf,
    },
    /// Copy a single SQLite relay (accounts, devices, prekeys, chats, the
    /// log, cursors, complete blobs) into the empty PostgreSQL database the
    /// configuration names: the path from one node to a cluster
    /// (docs/cluster.md). Safe while the old relay serves, but only what it
    /// stored before the copy started moves: stop it for the final
    /// cut-over. Uploads in progress are not moved.
    ImportSqlite {
        /// TOML configuration naming the PostgreSQL store (`[store] backend
        /// = "postgres"` and `url`), e.g. a cluster node's.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The single relay's data directory (holding relay.db and blobs/).
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum InviteAction {
    /// Create a single-use invite token and print it.
    Create {
        #[command(flatten)]
        common: Common,
    },
}

fn load(common: &Common) -> anyhow::Result<Config> {
    let mut config = match &common.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &common.data_dir {
        config.data_dir.clone_from(dir);
    }
    Ok(config)
}

fn open_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(tern_relay::store::open(config)?)
}

fn backup(config: &Config, path: &Path) -> anyhow::Result<()> {
    if config.store.backend != Backend::Sqlite {
        anyhow::bail!(
            "backup copies the SQLite database; back PostgreSQL up with pg_dump or PITR (docs/cluster.md)"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    SqliteStore::open(&config.database_path(), config.storage.synchronous)?.backup(path)?;
    Ok(())
}

fn import_sqlite(config: &Path, from: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let (Backend::Postgres, Some(url)) = (config.store.backend, &config.store.url) else {
        anyhow::bail!(
            "import-sqlite fills a PostgreSQL store: the configuration needs [store] backend = \"postgres\" and url"
        );
    };
    if !config.store.chat_shards.is_empty() {
        anyhow::bail!(
            "import-sqlite fills one PostgreSQL database: import into an unsharded store (docs/cluster.md §6)"
        );
    }
    let target = PgSettings {
        url: url.clone(),
        chat_shards: Vec::new(),
        pool_size: config.store.pool_size,
        queue_quota: config.limits.max_queued_bytes_per_device,
    };
    let started = Instant::now();
    let counts = transfer::import_sqlite(from, &target)
        .with_context(|| format!("importing {} into PostgreSQL", from.display()))?;
    println!("{counts}");
    println!(
        "imported in {:.1} s; start the cluster's nodes on this database",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn serve(mut config: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = listen {
        config.listen = addr;
    }
    let server = Server::start(config)?;
    println!("tern-relay listening on {}", server.local_addr()?);
    println!("certificate sha256 fingerprint: {}", server.fingerprint());
    if let Some(addr) = server.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server.run(shutdown).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { common, listen } => {
            let config = load(&common)?;
            tokio::runtime::Runtime::new()?.block_on(serve(config, listen))
        }
        Command::Invite {
            action: InviteAction::Create { common },
        } => {
            let store = open_store(&load(&common)?)?;
            let token = tern_relay::new_invite_token()?;
            let now = tern_relay::now_ms();
            store.create_invite(&tern_relay::invite_hash(&token), now)?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate { common } => {
            let config = load(&common)?;
            open_store(&config)?;
            let version = match config.store.backend {
                Backend::Sqlite => tern_relay::store::sqlite::schema::SCHEMA_VERSION,
                Backend::Postgres => tern_relay::store::postgres::schema::SCHEMA_VERSION,
            };
            println!("database schema at version {version}");
            Ok(())
        }
        Command::Backup { common, path } => {
            backup(&load(&common)?, &path)?;
            println!("backup written to {}", path.display());
            Ok(())
        }
        Command::ImportSqlite { config, from } => import_sqlite(&config, &from),
    }
}
