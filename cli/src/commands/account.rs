//! `tern init` and `tern whoami`.

use anyhow::Context;
use tern_core::{AccountInfo, KdfParams, KeySource};
use tern_core::{Client, ClientConfig};

use crate::args::{InitArgs, RelayArgs};
use crate::failure::Failure;
use crate::home::{self, Config, Home};
use crate::output::Printer;
use crate::record::{AccountRecord, Record};
use crate::session::{Session, host_of, relay_address};

/// Argon2id lanes of the store key.
const KDF_LANES: u32 = 4;

/// Creates the account, registers it and writes `config.toml`.
pub async fn init(home: Home, args: &InitArgs, out: Printer) -> anyhow::Result<()> {
    let (config, client_config, key) = prepare(&home, &args.relay)?;
    let client = Client::create(client_config, key, args.name.clone(), args.invite.clone())
        .await
        .with_context(|| format!("cannot register {:?} with {}", args.name, config.relay))?;
    home.save_config(&config)?;
    let printed = print_created(&home, &config, &client.account(), out);
    client.shutdown().await;
    printed
}

/// Checks that `home` is free, and builds its config and the new store's key.
pub fn prepare(home: &Home, args: &RelayArgs) -> anyhow::Result<(Config, ClientConfig, KeySource)> {
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
        server_name: args.server_name.clone().unwrap_or_else(|| {
            if args.fingerprint.is_some() {
                "tern-relay".into()
            } else {
                host_of(&args.relay).to_owned()
            }
        }),
        ..Config::default()
    };
    let relay = relay_address(&config)?;
    let memory_kib = args.kdf_memory_mib.saturating_mul(1024);
    let params = KdfParams::new(memory_kib, args.kdf_iterations, KDF_LANES)
        .map_err(|e| Failure::Usage(format!("--kdf-memory-mib/--kdf-iterations: {e}")))?;
    home.create()?;
    let passphrase = home::passphrase(true)?;
    let key = KeySource::passphrase_with_params(passphrase.as_str(), params);
    Ok((config, ClientConfig::new(home.store_path(), relay), key))
}

/// The `--json` record of an account on this device.
fn account_record(home: &Home, config: &Config, account: &AccountInfo) -> Record {
    Record::Account(AccountRecord::new(home.dir(), &config.relay, account))
}

/// Prints the account a new device belongs to.
pub fn print_created(
    home: &Home,
    config: &Config,
    account: &AccountInfo,
    out: Printer,
) -> anyhow::Result<()> {
    out.emit(&account_record(home, config, account), || {
        format!(
            "{} (device {}) is ready on {}; state in {}",
            account.user_name,
            account.device_id,
            config.relay,
            home.dir().display()
        )
    })
}

/// Prints this device's account.
pub fn whoami(session: &Session, out: Printer) -> anyhow::Result<()> {
    let account = session.client.account();
    out.emit(
        &account_record(&session.home, &session.config, &account),
        || {
            format!(
                "{} (user id {}, device {}) on relay {}",
                account.user_name,
                hex::encode(account.user_id),
                account.device_id,
                session.config.relay
            )
        },
    )
}
