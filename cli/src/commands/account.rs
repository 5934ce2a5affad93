//! `tern init` and `tern whoami`.

use anyhow::Context;
use serde_json::json;
use tern_core::client::{KdfParams, KeySource};
use tern_core::{Client, ClientConfig};

use crate::args::InitArgs;
use crate::failure::Failure;
use crate::home::{self, Config, Home};
use crate::output::Printer;
use crate::session::{Session, relay_address};

/// Argon2id lanes of the store key.
const KDF_LANES: u32 = 4;

/// Creates the account, registers it and writes `config.toml`.
pub async fn init(home: Home, args: &InitArgs, out: Printer) -> anyhow::Result<()> {
    if home.load_config().is_ok() {
        return Err(Failure::Usage(format!(
            "{} already holds an account; pick another --home",
            home.dir().display()
        ))
        .into());
    }
    let config = Config {
        relay: args.relay.clone(),
        fingerprint: args.fingerprint.clone(),
        server_name: args.server_name.clone(),
        ..Config::default()
    };
    let relay = relay_address(&config)?;
    let memory_kib = args.kdf_memory_mib.saturating_mul(1024);
    let params = KdfParams::new(memory_kib, args.kdf_iterations, KDF_LANES)
        .map_err(|e| Failure::Usage(format!("--kdf-memory-mib/--kdf-iterations: {e}")))?;
    home.create()?;
    let passphrase = home::passphrase(true)?;
    let key = KeySource::passphrase_with_params(passphrase.as_str(), params);
    let client = Client::create(
        ClientConfig::new(home.store_path(), relay),
        key,
        args.name.clone(),
        args.invite.clone(),
    )
    .await
    .with_context(|| format!("cannot register {:?} with {}", args.name, args.relay))?;
    home.save_config(&config)?;
    let account = client.account();
    client.shutdown().await;
    out.emit(
        json!({
            "type": "account",
            "user_name": account.user_name,
            "user_id": hex::encode(account.user_id),
            "device_id": account.device_id,
            "relay": config.relay,
            "home": home.dir(),
        }),
        || {
            format!(
                "created {} (device {}) on {}; state in {}",
                account.user_name,
                account.device_id,
                config.relay,
                home.dir().display()
            )
        },
    );
    Ok(())
}

/// Prints this device's account.
pub fn whoami(session: &Session, out: Printer) -> anyhow::Result<()> {
    let account = session.client.account();
    out.emit(
        json!({
            "type": "account",
            "user_name": account.user_name,
            "user_id": hex::encode(account.user_id),
            "device_id": account.device_id,
            "relay": session.config.relay,
            "home": session.home.dir(),
        }),
        || {
            format!(
                "{} (user id {}, device {}) on relay {}",
                account.user_name,
                hex::encode(account.user_id),
                account.device_id,
                session.config.relay
            )
        },
    );
    Ok(())
}
