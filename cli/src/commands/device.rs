//! `tern link new|accept` and `tern device list|remove`.
//!
//! Linking runs in the direction of the issue: an existing device opens a
//! provisioning mailbox and shows a one-time code (and QR code); the new
//! device enters it and sends an encrypted request; the existing device signs
//! the new device into the account's device list and hands over the account
//! through the relay, end-to-end encrypted.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use tern_core::Client;

use crate::args::{DeviceCommand, RelayArgs};
use crate::failure::Failure;
use crate::home::Home;
use crate::output::Printer;
use crate::qr;
use crate::record::{DeviceRecord, DeviceRemovedRecord, LinkCodeRecord, Record};
use crate::session::Session;

use super::account::{prepare, print_created};

/// How long device commands wait for the relay.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// `tern link new`, on the existing device.
pub async fn link_new(
    session: &Session,
    timeout: u64,
    confirm: bool,
    out: Printer,
) -> anyhow::Result<()> {
    session.online(RELAY_TIMEOUT).await?;
    let offer = session.client.offer_link().await?;
    let code = offer.link_code();
    let config = &session.config;
    let trust = match &config.fingerprint {
        Some(fingerprint) => format!(" --fingerprint {fingerprint}"),
        None => String::new(),
    };
    let record = Record::LinkCode(LinkCodeRecord { code: code.clone() });
    out.emit(&record, || {
        format!(
            "On the new device, run:\n\n    tern --home NEW_HOME link accept {code} --relay {}{trust}\n\nor scan:\n\n{}\nThe code works once, for {timeout} s. Waiting…",
            config.relay,
            qr::render(&offer.qr_payload())
        )
    })?;
    let _ = std::io::stdout().flush();
    let approval = offer
        .wait_request(Duration::from_secs(timeout))
        .await
        .context("no device was linked")?;
    let key = hex::encode(approval.device_identity());
    if confirm && !ask_yes(&format!("Link the device with key {key}? [y/N] ")).await? {
        approval.reject().await?;
        return Err(Failure::Usage("linking refused".into()).into());
    }
    let device_id = session.client.approve_link(approval).await?;
    let linked = DeviceRecord {
        device_id,
        identity_key: key.clone(),
        this_device: false,
    };
    out.emit(&Record::Linked(linked), || {
        format!("linked device {device_id} (key {key})")
    })
}

/// Asks a yes/no question on the terminal; anything but `y`/`yes` is no.
async fn ask_yes(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `tern link accept`, on the new device: runs without an account, so it
/// opens no session.
pub async fn link_accept(
    home: Home,
    code: String,
    relay: &RelayArgs,
    timeout: u64,
    out: Printer,
) -> anyhow::Result<()> {
    let (config, client_config, key) = prepare(&home, relay)?;
    let client = Client::accept_link(client_config, key, code, Duration::from_secs(timeout))
        .await
        .with_context(|| format!("linking through {} did not complete", config.relay))?;
    home.save_config(&config)?;
    let printed = print_created(&home, &config, &client.account(), out);
    client.shutdown().await;
    printed
}

/// `tern device list|remove`.
pub async fn run(session: &Session, command: DeviceCommand, out: Printer) -> anyhow::Result<()> {
    session.online(RELAY_TIMEOUT).await?;
    match command {
        DeviceCommand::List => {
            for device in session.client.devices().await? {
                out.emit(&Record::Device(DeviceRecord::new(&device)), || {
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
                })?;
            }
        }
        DeviceCommand::Remove { id } => {
            session.client.remove_device(id).await?;
            let removed = DeviceRemovedRecord { device_id: id };
            out.emit(&Record::DeviceRemoved(removed), || {
                format!("removed device {id}")
            })?;
        }
    }
    Ok(())
}
