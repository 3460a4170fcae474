//! Text a peer, an agent or a client chose, made safe to log (issue 12 item 6): control
//! characters (newlines among them, which would forge log lines) are escaped and the text is cut
//! to [`MAX_CHARS`] characters, so one field cannot flood the log.

use std::fmt;

/// The most characters of outside text one log field shows.
pub const MAX_CHARS: usize = 200;

/// `s` escaped and truncated for a log line (see [`Safe`]).
pub fn text(s: &str) -> Safe<'_> {
    Safe(s)
}

/// Displays its text with control characters escaped (`\n`, `\u{1b}`, …) and at most
/// [`MAX_CHARS`] characters, then `…(N more)`.
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_CHARS {
                let rest = self.0.chars().count() - shown;
                return write!(f, "…({rest} more)");
            }
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_cannot_forge_a_log_line() {
        let forged = "a1\n2026-01-01T00:00:00Z  INFO node started\u{1b}[2J";
        let shown = text(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with("a1\\n2026"), "{shown}");
        assert_eq!(text("ä ✓").to_string(), "ä ✓");
    }

    #[test]
    fn long_text_is_truncated() {
        let shown = text(&"x".repeat(65_536)).to_string();
        assert!(shown.ends_with("…(65336 more)"), "{}", &shown[190..]);
        assert_eq!(
            shown.chars().count(),
            MAX_CHARS + "…(65336 more)".chars().count()
        );
    }
}
