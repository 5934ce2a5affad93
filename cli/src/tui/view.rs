//! Drawing the chat client: chat list, conversation, input and help bar.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use tern_core::{ChatKind, TransferState};

use super::app::{App, Mode};
use super::keys::Action;
use crate::output::{format_clock, status_mark};
use crate::peer_text;

/// Width of the chat list.
const LIST_WIDTH: u16 = 26;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let banner_height = u16::from(app.banner.is_some()) * 3;
    let input_lines = u16::try_from(app.input.lines().count().clamp(1, 5)).unwrap_or(5);
    let [banner, body, typing, input, help] = Layout::vertical([
        Constraint::Length(banner_height),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    if let Some(text) = &app.banner {
        let style = Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD);
        let widget = Paragraph::new(peer_text::keep_newlines(text))
            .style(style)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::new().borders(Borders::ALL).border_style(style));
        frame.render_widget(widget, banner);
    }
    let [list, conversation] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(10)]).areas(body);
    draw_chats(frame, app, list);
    draw_conversation(frame, app, conversation);
    let typers = app.typing_here();
    if !typers.is_empty() {
        let text = peer_text::visible(&format!("{} typing…", typers.join(", ")));
        frame.render_widget(
            Paragraph::new(text).style(Style::new().add_modifier(Modifier::ITALIC)),
            typing,
        );
    } else if let Some(notice) = &app.notice {
        frame.render_widget(
            Paragraph::new(notice.as_str()).style(Style::new().fg(Color::Yellow)),
            typing,
        );
    }
    draw_input(frame, app, input);
    draw_help(frame, app, help);
}

fn draw_chats(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .chats
        .iter()
        .map(|chat| {
            let presence = match (chat.info.kind, chat.peer.and_then(|p| app.presence.get(&p))) {
                (ChatKind::Group, _) => "#",
                (_, Some(true)) => "●",
                _ => "○",
            };
            let name = peer_text::visible(&app.names.chat(&chat.info.chat_id));
            let mut spans = vec![Span::raw(format!(
                "{presence} {}",
                name.trim_start_matches('#')
            ))];
            if chat.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", chat.unread),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = if app.online {
        " chats · online "
    } else {
        " chats · offline "
    };
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(title))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_conversation(frame: &mut Frame, app: &App, area: Rect) {
    let title = match (&app.results, app.current()) {
        (Some(hits), _) => format!(" search: {} hits (Esc closes) ", hits.len()),
        (None, Some(chat)) => format!(
            " {} ",
            peer_text::visible(&app.names.chat(&chat.info.chat_id))
        ),
        (None, None) => " no chats yet: `tern contact add NAME` ".into(),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let width = usize::from(inner.width.max(1));
    let mut lines: Vec<Line> = Vec::new();
    match &app.results {
        Some(hits) => {
            for hit in hits {
                let head = format!(
                    "{} {} {}: ",
                    format_clock(hit.sent_at_ms),
                    app.names.chat(&hit.chat_id),
                    app.names.user(&hit.sender.user_id)
                );
                push_wrapped(
                    &mut lines,
                    &format!("{head}{}", hit.snippet),
                    width,
                    Style::new(),
                );
            }
        }
        None => {
            for (message, status, attachment) in &app.messages {
                let mark = status.map(status_mark).unwrap_or_default();
                let body = match attachment {
                    Some(file) => format!(
                        "📎 {} ({} bytes){}",
                        peer_text::visible(&file.file_name),
                        file.size,
                        if file.state == TransferState::Downloaded {
                            ", saved"
                        } else {
                            ""
                        }
                    ),
                    None => peer_text::visible_lines(&message.text),
                };
                let text = format!(
                    "{} {}: {body} {mark}",
                    format_clock(message.sent_at_ms),
                    peer_text::visible(&app.names.sender(message)),
                );
                let style = if message.outgoing {
                    Style::new().fg(Color::Cyan)
                } else {
                    Style::new()
                };
                push_wrapped(&mut lines, text.trim_end(), width, style);
            }
        }
    }
    let height = usize::from(inner.height);
    let end = lines
        .len()
        .saturating_sub(app.scroll.min(lines.len().saturating_sub(height)));
    let start = end.saturating_sub(height);
    let visible: Vec<Line> = lines.drain(start..end).collect();
    frame.render_widget(Paragraph::new(visible).block(block), area);
}

/// Splits text into lines of at most `width` characters.
fn push_wrapped(lines: &mut Vec<Line<'static>>, text: &str, width: usize, style: Style) {
    for logical in text.split('\n') {
        let chars: Vec<char> = logical.chars().collect();
        if chars.is_empty() {
            lines.push(Line::styled(String::new(), style));
        }
        for chunk in chars.chunks(width) {
            lines.push(Line::styled(chunk.iter().collect::<String>(), style));
        }
    }
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let title = match app.mode {
        Mode::Compose => " message · /file PATH sends a file · /download [DIR] saves the newest ",
        Mode::Search { all: false } => " search this chat ",
        Mode::Search { all: true } => " search all chats ",
    };
    let lines: Vec<Line> = app
        .input
        .split('\n')
        .map(|l| Line::raw(l.to_owned()))
        .collect();
    let shown = lines
        .len()
        .saturating_sub(usize::from(area.height.saturating_sub(2)));
    let widget = Paragraph::new(lines[shown..].to_vec())
        .block(Block::new().borders(Borders::ALL).title(title));
    frame.render_widget(widget, area);
    let last = app.input.rsplit('\n').next().unwrap_or("");
    let row = u16::try_from(lines.len() - shown).unwrap_or(1);
    let col = u16::try_from(last.chars().count()).unwrap_or(u16::MAX);
    frame.set_cursor_position((
        area.x
            .saturating_add(1)
            .saturating_add(col)
            .min(area.right().saturating_sub(2)),
        area.y.saturating_add(row),
    ));
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let keys = &app.keymap;
    let text = format!(
        "{} quit · {} send · {} newline · {}/{} chat · {} search · {} all chats · {}/{} scroll · esc back",
        keys.name(Action::Quit),
        keys.name(Action::Send),
        keys.name(Action::Newline),
        keys.name(Action::NextChat),
        keys.name(Action::PrevChat),
        keys.name(Action::Search),
        keys.name(Action::SearchAll),
        keys.name(Action::ScrollUp),
        keys.name(Action::ScrollDown),
    );
    frame.render_widget(
        Paragraph::new(text).style(Style::new().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}
