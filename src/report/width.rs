//! Tables that fit the terminal: every table this tool prints wraps its
//! columns (the reason column first, it is the widest) to the terminal's
//! width, or to `COLUMNS` when set (as shells export it, and as tests pin
//! it); without either (output piped to a file) lines are not limited.

use comfy_table::{ContentArrangement, Table};

/// `COLUMNS`, when it is a plausible width.
pub fn columns_env() -> Option<u16> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
}

/// Makes `t` wrap its cells to the width (see the module docs).
pub fn fit(t: &mut Table) {
    // Dynamic arrangement takes the terminal's width on a TTY by itself.
    t.set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(w) = columns_env() {
        t.set_width(w);
    }
}

/// Keeps the first column (the VM name) at least 18 characters wide
/// (16 of name, the padding aside) when the table must shrink, so names
/// up to that length never break and the reason column wraps instead.
/// Call after the header is set.
pub fn keep_names(t: &mut Table) {
    use comfy_table::{ColumnConstraint, Width};
    if let Some(c) = t.column_mut(0) {
        c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(18)));
    }
}

/// `text` with every line wider than the width (`COLUMNS` or the
/// terminal's, when known) wrapped at spaces, continuation lines indented
/// by two; unchanged when no width is known. For the free text around the
/// tables (summaries, findings).
pub fn wrap(text: &str) -> String {
    let width = columns_env().or_else(|| {
        use std::io::IsTerminal;
        std::io::stdout()
            .is_terminal()
            .then(|| Table::new().width())
            .flatten()
    });
    match width {
        Some(w) => wrap_to(text, w as usize),
        None => text.to_string(),
    }
}

/// [`wrap`] at `width` columns.
pub fn wrap_to(text: &str, width: usize) -> String {
    let width = width.max(20);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let mut cur = String::new();
        let mut cur_len = 0;
        // Runs of spaces collapse in a wrapped line (empty words skipped).
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let sep = !cur.trim().is_empty();
                // A line filled exactly leaves no room (not an underflow).
                let room = width.saturating_sub(cur_len + usize::from(sep));
                if word.len() <= room {
                    if sep {
                        cur.push(' ');
                        cur_len += 1;
                    }
                    cur.extend(word.iter());
                    cur_len += word.len();
                    break;
                }
                if cur_len > 2 {
                    // Start a continuation line.
                    out.push_str(cur.trim_end());
                    out.push('\n');
                    cur = "  ".into();
                    cur_len = 2;
                    continue;
                }
                // A word longer than a line: split it.
                let take = width - cur_len;
                cur.extend(word.drain(..take));
                out.push_str(&cur);
                out.push('\n');
                cur = "  ".into();
                cur_len = 2;
            }
        }
        out.push_str(cur.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_long_lines_only() {
        let text = "short\naaa bbb ccc ddd eee fff ggg hhh iii jjj kkk\n";
        let w = wrap_to(text, 20);
        assert_eq!(
            w,
            "short\naaa bbb ccc ddd eee\n  fff ggg hhh iii\n  jjj kkk\n"
        );
        let long = "x".repeat(45);
        for l in wrap_to(&long, 20).lines() {
            assert!(l.chars().count() <= 20, "{l}");
        }
        assert_eq!(wrap_to(&long, 20).replace(['\n', ' '], ""), long);
    }

    #[test]
    fn a_line_filled_exactly_then_more_words_never_overflows() {
        // Every mix of word lengths 1..=25 around a 20-column limit: no
        // panic, no line over the width, no character lost.
        for a in 1..=25usize {
            for b in 1..=25usize {
                let text = format!("{} {}  {}", "a".repeat(a), "b".repeat(b), "c".repeat(a));
                let w = wrap_to(&text, 20);
                for l in w.lines() {
                    assert!(l.chars().count() <= 20, "{a} {b}: {l:?}");
                }
                assert_eq!(w.replace(['\n', ' '], ""), text.replace(' ', ""), "{a} {b}");
            }
        }
    }
}
