//! `tern link new|accept` and `tern device list|remove`.
//!
//! Linking follows the usual direction: the new device shows a code (and QR
//! code) holding a fresh key; an existing device accepts it and hands over
//! the account, encrypted to that key, through the relay.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tern_core::client::PendingLink;

use crate::args::{DeviceCommand, RelayArgs};
use crate::home::Home;
use crate::output::Printer;
use crate::qr;
use crate::session::Session;

use super::account::{prepare, print_created};

/// How long device commands wait for the relay.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// `tern link new`: runs without an account, so it opens no session.
pub async fn link_new(
    home: Home,
    relay: &RelayArgs,
    timeout: u64,
    out: Printer,
) -> anyhow::Result<()> {
    let (config, client_config, key) = prepare(&home, relay)?;
    let pending = PendingLink::start(client_config, key)
        .await
        .with_context(|| format!("cannot reach the relay at {}", config.relay))?;
    let code = pending.link_code();
    out.emit(json!({"type": "link_code", "code": code}), || {
        format!(
            "On a device that already has your account, run:\n\n    tern link accept {code}\n\nor scan:\n\n{}\nWaiting up to {timeout} s…",
            qr::render(&pending.qr_payload())
        )
    });
    let _ = std::io::stdout().flush();
    let client = pending
        .finish(Duration::from_secs(timeout))
        .await
        .context("linking did not complete")?;
    home.save_config(&config)?;
    print_created(&home, &config, &client.account(), out);
    client.shutdown().await;
    Ok(())
}

/// `tern link accept`.
pub async fn link_accept(session: &Session, code: String, out: Printer) -> anyhow::Result<()> {
    session.online(RELAY_TIMEOUT).await?;
    let device_id = session.client.link_device(code.trim().to_owned()).await?;
    out.emit(json!({"type": "linked", "device_id": device_id}), || {
        format!("linked device {device_id}")
    });
    Ok(())
}

/// `tern device list|remove`.
pub async fn run(session: &Session, command: DeviceCommand, out: Printer) -> anyhow::Result<()> {
    session.online(RELAY_TIMEOUT).await?;
    match command {
        DeviceCommand::List => {
            for device in session.client.devices().await? {
                out.emit(
                    json!({
                        "type": "device",
                        "device_id": device.device_id,
                        "identity_key": hex::encode(device.identity_key),
                        "this_device": device.this_device,
                    }),
                    || {
                        format!(
                            "{}  {}{}",
                            device.device_id,
                            hex::encode(device.identity_key),
                            if device.this_device {
                                "  (this device)"
                            } else {
                                ""
                            }
                        )
                    },
                );
            }
        }
        DeviceCommand::Remove { id } => {
            session.client.remove_device(id).await?;
            out.emit(json!({"type": "device_removed", "device_id": id}), || {
                format!("removed device {id}")
            });
        }
    }
    Ok(())
}
