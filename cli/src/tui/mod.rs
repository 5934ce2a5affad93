//! `tern chat`: the interactive client.
//!
//! - `app`: the state and how client events and key presses change it.
//! - `view`: drawing it with ratatui.
//! - `keys`: configurable key bindings.
//!
//! Terminal input is read on its own thread and forwarded to the async loop,
//! which also receives the client's events and a one-second tick.

mod app;
mod keys;
mod view;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::Event;
use tokio::sync::mpsc;

use crate::failure::Failure;
use crate::home::Notify;
use crate::session::Session;
use app::{App, Effect};
use keys::Keymap;

/// How often the input thread checks whether the app is gone.
const INPUT_POLL: Duration = Duration::from_millis(100);
/// Terminal events buffered between the input thread and the loop.
const INPUT_BUFFER: usize = 256;

/// Runs the chat client until the user quits.
pub async fn run(session: &Session) -> anyhow::Result<()> {
    let keymap = Keymap::new(&session.config.keybindings)
        .map_err(|e| Failure::Usage(format!("keybindings in config.toml: {e}")))?;
    let mut events = session.client.subscribe();
    let mut app = App::new(&session.client, session.names()?, keymap)?;
    app.online = session.client.connection_state() == tern_core::ConnectionState::Online;
    if app.online {
        subscribe_presence(session, &app).await;
    }
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let (input_tx, mut input) = mpsc::channel(INPUT_BUFFER);
    std::thread::spawn(move || read_input(&input_tx));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = async {
        while !app.quit {
            terminal.draw(|frame| view::draw(frame, &app))?;
            tokio::select! {
                event = input.recv() => match event {
                    Some(Event::Key(key)) => {
                        let effect = app.on_key(&session.client, key)?;
                        apply(session, &mut app, effect, &mut terminal).await?;
                    }
                    Some(_) => {}
                    None => break,
                },
                event = events.next() => {
                    let Some(event) = event else { break };
                    let effect = app.on_client(&session.client, event, || session.names().ok())?;
                    apply(session, &mut app, effect, &mut terminal).await?;
                }
                _ = tick.tick() => app.on_tick(),
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    ratatui::restore();
    drop(input);
    result
}

/// Carries out what an event asked for.
async fn apply(
    session: &Session,
    app: &mut App,
    effect: Effect,
    terminal: &mut ratatui::DefaultTerminal,
) -> anyhow::Result<()> {
    let client = &session.client;
    match effect {
        Effect::None => {}
        Effect::Notify => notify(session.config.notifications),
        Effect::SubscribePresence => subscribe_presence(session, app).await,
        Effect::SendFile(chat, path) => {
            terminal.draw(|frame| view::draw(frame, app))?;
            let content_type = crate::commands::guess_type(&path).to_owned();
            let sent = client
                .send_attachment(chat, path.clone(), content_type)
                .await;
            let outcome = sent.map(|_| format!("sent {}", path.display()));
            app.after_effect(client, outcome)?;
        }
        Effect::Download(message, dir) => {
            terminal.draw(|frame| view::draw(frame, app))?;
            let outcome = download(client, message, &dir).await;
            app.after_effect(client, outcome)?;
        }
    }
    Ok(())
}

/// Downloads an attachment into `dir` under its (sanitised) name.
async fn download(
    client: &tern_core::Client,
    message: tern_core::MessageId,
    dir: &std::path::Path,
) -> Result<String, tern_core::ClientError> {
    let file = client.attachments(message)?.into_iter().next().ok_or(
        tern_core::ClientError::InvalidArgument("the message has no attachment"),
    )?;
    let dest = dir.join(crate::commands::safe_file_name(&file.file_name));
    if dest.exists() {
        return Ok(format!("{} exists; not overwritten", dest.display()));
    }
    client.download_attachment(message, dest.clone()).await?;
    Ok(format!("saved {}", dest.display()))
}

/// Forwards terminal events until the receiver is gone.
fn read_input(events: &mpsc::Sender<Event>) {
    while !events.is_closed() {
        match crossterm::event::poll(INPUT_POLL) {
            Ok(true) => match crossterm::event::read() {
                Ok(event) => {
                    if events.blocking_send(event).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

async fn subscribe_presence(session: &Session, app: &App) {
    let peers = app.chats.iter().filter_map(|c| c.peer).collect();
    // Presence is best effort: a failure only leaves the dots grey.
    let _ = session.client.subscribe_presence(peers).await;
}

/// Announces a new message as configured.
fn notify(how: Notify) {
    let desktop = how == Notify::Desktop
        && std::process::Command::new("notify-send")
            .args(["tern", "new message"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if how != Notify::Off && !desktop {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x07");
        let _ = out.flush();
    }
}
