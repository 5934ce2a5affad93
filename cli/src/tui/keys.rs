//! Key bindings: parsing names like `ctrl+n` and mapping key presses to actions.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::home::KeyBindings;

/// What a key press asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the input (or run the search).
    Send,
    /// Insert a line break into the input.
    Newline,
    /// Open the next chat.
    NextChat,
    /// Open the previous chat.
    PrevChat,
    /// Search the open chat.
    Search,
    /// Search all chats.
    SearchAll,
    /// Scroll the conversation up.
    ScrollUp,
    /// Scroll the conversation down.
    ScrollDown,
    /// Quit.
    Quit,
}

/// One key with its modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    code: KeyCode,
    modifiers: KeyModifiers,
}

impl KeySpec {
    /// Parses `ctrl+n`, `alt+enter`, `shift+tab`, `pageup`, `f2`, `x`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut modifiers = KeyModifiers::NONE;
        let mut parts: Vec<&str> = spec.split('+').map(str::trim).collect();
        let key = parts
            .pop()
            .filter(|k| !k.is_empty())
            .ok_or(format!("empty key in {spec:?}"))?;
        for part in parts {
            modifiers |= match part.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => KeyModifiers::CONTROL,
                "alt" | "meta" => KeyModifiers::ALT,
                "shift" => KeyModifiers::SHIFT,
                other => return Err(format!("unknown modifier {other:?} in {spec:?}")),
            };
        }
        let lower = key.to_ascii_lowercase();
        let code = match lower.as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backspace" => KeyCode::Backspace,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') => {
                KeyCode::F(f[1..].parse().map_err(|_| format!("unknown key {key:?}"))?)
            }
            _ => {
                let mut chars = lower.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(format!("unknown key {key:?}")),
                }
            }
        };
        Ok(Self { code, modifiers })
    }

    /// Whether a key press is this key.
    pub fn matches(&self, event: &KeyEvent) -> bool {
        let code = match event.code {
            KeyCode::Char(c) => KeyCode::Char(c.to_ascii_lowercase()),
            other => other,
        };
        let modifiers = match event.code {
            KeyCode::Char(_) => event.modifiers - KeyModifiers::SHIFT,
            _ => event.modifiers,
        };
        code == self.code && modifiers == self.modifiers
    }
}

/// The configured bindings, parsed.
#[derive(Clone, Debug)]
pub struct Keymap {
    bindings: Vec<(KeySpec, Action, String)>,
}

impl Keymap {
    /// Parses the configured bindings.
    pub fn new(config: &KeyBindings) -> Result<Self, String> {
        let named = [
            (&config.send, Action::Send),
            (&config.newline, Action::Newline),
            (&config.next_chat, Action::NextChat),
            (&config.prev_chat, Action::PrevChat),
            (&config.search, Action::Search),
            (&config.search_all, Action::SearchAll),
            (&config.scroll_up, Action::ScrollUp),
            (&config.scroll_down, Action::ScrollDown),
            (&config.quit, Action::Quit),
        ];
        let bindings = named
            .into_iter()
            .map(|(spec, action)| Ok((KeySpec::parse(spec)?, action, spec.clone())))
            .collect::<Result<_, String>>()?;
        Ok(Self { bindings })
    }

    /// The action bound to a key press. Ctrl+C always quits.
    pub fn action(&self, event: &KeyEvent) -> Option<Action> {
        if event.code == KeyCode::Char('c') && event.modifiers == KeyModifiers::CONTROL {
            return Some(Action::Quit);
        }
        self.bindings
            .iter()
            .find(|(spec, _, _)| spec.matches(event))
            .map(|(_, action, _)| *action)
    }

    /// The key name bound to `action`, for the help bar.
    pub fn name(&self, action: Action) -> &str {
        self.bindings
            .iter()
            .find(|(_, a, _)| *a == action)
            .map_or("?", |(_, _, name)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn default_bindings_parse_and_match() {
        let keymap = Keymap::new(&KeyBindings::default()).unwrap_or_else(|e| panic!("{e}"));
        let enter = press(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(keymap.action(&enter), Some(Action::Send));
        let alt_enter = press(KeyCode::Enter, KeyModifiers::ALT);
        assert_eq!(keymap.action(&alt_enter), Some(Action::Newline));
        let ctrl_n = press(KeyCode::Char('n'), KeyModifiers::CONTROL);
        assert_eq!(keymap.action(&ctrl_n), Some(Action::NextChat));
        let plain_n = press(KeyCode::Char('n'), KeyModifiers::NONE);
        assert_eq!(keymap.action(&plain_n), None);
        assert_eq!(keymap.name(Action::Quit), "ctrl+q");
    }

    #[test]
    fn bad_key_names_are_rejected() {
        assert!(KeySpec::parse("hyper+x").is_err());
        assert!(KeySpec::parse("ctrl+").is_err());
        assert!(KeySpec::parse("fx").is_err());
        assert_eq!(
            KeySpec::parse("F2"),
            Ok(KeySpec {
                code: KeyCode::F(2),
                modifiers: KeyModifiers::NONE
            })
        );
    }
}
