//! Drawing the UI from its state: a bar at the top, the window list at the
//! left, the messages, the room's peers at the right (on wide terminals),
//! the transfers pane and the input line at the bottom. Every size down to
//! one cell draws without panicking; 80x24 shows everything but the peers.
//!
//! Nothing is told by colour alone: unread counts, mentions (`!`), the
//! window shown and the states of transfers are words and marks, so the UI
//! reads the same with `NO_COLOR`.

use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use chatdrop_client::human_bytes;

use crate::app::App;
use crate::transfers::{Direction, State, Transfer};
use crate::windows::{Kind, Line, Tone, Window};

/// Width of the window list.
const LIST_WIDTH: u16 = 16;
/// Width of the peers column.
const PEERS_WIDTH: u16 = 16;
/// The narrowest terminal that gets the window list.
const LIST_FROM: u16 = 60;
/// The narrowest terminal that gets the peers column.
const PEERS_FROM: u16 = 100;
/// The most rows the transfers pane takes (its title included).
const PANE_ROWS: usize = 6;
/// Cells of a progress bar (half as many below [`PEERS_FROM`] columns).
const BAR: usize = 20;

/// Draws the whole UI.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let input_row = Rect::new(area.x, area.bottom() - 1, area.width, 1);
    draw_input(frame, app, input_row);
    if area.height < 3 {
        return;
    }
    draw_bar(frame, app, Rect::new(area.x, area.y, area.width, 1));
    // An offer of files waiting for an answer: a row above the input.
    let offer_rows = u16::from(!app.offers.is_empty() && area.height >= 5);
    if offer_rows > 0 {
        let r = Rect::new(area.x, input_row.y - 1, area.width, 1);
        draw_offer(frame, app, r);
    }
    // The pane never takes more than a third of the rows between.
    let between = area.height - 2 - offer_rows;
    let pane = pane_lines(app, area.width as usize);
    let pane_rows = pane.len().min(PANE_ROWS).min(between as usize / 3) as u16;
    if pane_rows > 0 {
        let top = input_row.y - offer_rows - pane_rows;
        let r = Rect::new(area.x, top, area.width, pane_rows);
        let shown: Vec<TextLine> = pane.into_iter().take(pane_rows as usize).collect();
        frame.render_widget(Paragraph::new(shown), r);
    }
    let middle = Rect::new(area.x, area.y + 1, area.width, between - pane_rows);
    if middle.height == 0 {
        return;
    }
    let list = if area.width >= LIST_FROM {
        LIST_WIDTH
    } else {
        0
    };
    let current = app.windows.current();
    let peers = if area.width >= PEERS_FROM && matches!(current.kind, Kind::Room(_)) {
        PEERS_WIDTH
    } else {
        0
    };
    if list > 0 {
        draw_list(
            frame,
            app,
            Rect::new(middle.x, middle.y, list, middle.height),
        );
    }
    if peers > 0 {
        let r = Rect::new(middle.right() - peers, middle.y, peers, middle.height);
        draw_peers(frame, app, current, r);
    }
    let messages = Rect::new(
        middle.x + list,
        middle.y,
        middle.width - list - peers,
        middle.height,
    );
    draw_messages(frame, app, current, messages);
}

fn style(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

fn draw_bar(frame: &mut Frame, app: &App, r: Rect) {
    let current = app.windows.current();
    let place = match &current.kind {
        Kind::Room(_) if current.joined => {
            let n = current.peers.len();
            format!(
                "{} ({n} {})",
                current.title(),
                if n == 1 { "member" } else { "members" }
            )
        }
        Kind::Room(_) => format!("{} (not joined)", current.title()),
        _ => current.title(),
    };
    let server = match (&app.server, app.online) {
        (Some(s), true) => s.clone(),
        (_, false) => "connecting...".to_string(),
        (None, true) => String::new(),
    };
    let active = app.transfers.active();
    let moving = if active > 0 {
        format!(" | {active} transfer{}", if active == 1 { "" } else { "s" })
    } else {
        String::new()
    };
    let text = format!(" chatdrop | {} on {server} | {place}{moving}", app.me);
    let mut s = Style::default().add_modifier(Modifier::REVERSED);
    if app.color {
        s = s.fg(Color::Cyan);
    }
    let text = fit(&text, r.width as usize);
    frame.render_widget(Paragraph::new(text).style(s), r);
}

fn draw_list(frame: &mut Frame, app: &App, r: Rect) {
    let width = r.width as usize - 1;
    let lines: Vec<TextLine> = app
        .windows
        .all()
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mark = match (w.unread, w.highlight) {
                (0, _) => String::new(),
                (n, true) => format!(" {n}!"),
                (n, false) => format!(" {n}"),
            };
            let title = fit(&w.title(), width.saturating_sub(3 + mark.len()));
            let text = fit(&format!("{:>2} {title}{mark}", i + 1), width);
            let mut s = Style::default();
            if i == app.windows.current_index() {
                s = s.add_modifier(Modifier::REVERSED);
            } else if w.highlight {
                s = s
                    .add_modifier(Modifier::BOLD)
                    .patch(style(app, Color::Yellow));
            } else if w.unread > 0 {
                s = s.add_modifier(Modifier::BOLD);
            }
            TextLine::from(Span::styled(text, s))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), r);
}

fn draw_peers(frame: &mut Frame, app: &App, w: &Window, r: Rect) {
    let width = r.width as usize - 1;
    let mut lines = vec![TextLine::from(Span::styled(
        fit(&format!(" {} here", w.peers.len()), width),
        style(app, Color::DarkGray),
    ))];
    lines.extend(w.peers.iter().map(|p| {
        let shown = chatdrop_client::shown(p);
        let s = if *p == app.me {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        TextLine::from(Span::styled(fit(&format!(" {shown}"), width), s))
    }));
    let r = Rect::new(r.x + 1, r.y, r.width - 1, r.height);
    frame.render_widget(Paragraph::new(lines), r);
}

/// The rows of one line at `width`: the time and speaker, then the text
/// wrapped under itself.
fn rows_of(app: &App, line: &Line, width: usize) -> Vec<TextLine<'static>> {
    let (who, tone_style) = match line.tone {
        Tone::Chat => (
            line.who.as_ref().map(|w| format!("<{w}> ")),
            Style::default(),
        ),
        Tone::Mine => (
            line.who.as_ref().map(|w| format!("<{w}> ")),
            style(app, Color::Cyan),
        ),
        Tone::Mention => (
            line.who.as_ref().map(|w| format!("<{w}>! ")),
            Style::default()
                .add_modifier(Modifier::BOLD)
                .patch(style(app, Color::Yellow)),
        ),
        Tone::Info => (Some("-- ".to_string()), style(app, Color::DarkGray)),
        Tone::Error => (
            Some("!! ".to_string()),
            Style::default()
                .add_modifier(Modifier::BOLD)
                .patch(style(app, Color::Red)),
        ),
    };
    let head = format!("{} {}", line.time, who.unwrap_or_default());
    let indent = head.width().min(width / 2);
    let first = width.saturating_sub(head.width());
    let chunks = wrap(
        &line.text,
        first.max(1),
        width.saturating_sub(indent).max(1),
    );
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let lead = if i == 0 {
                Span::styled(head.clone(), style(app, Color::DarkGray))
            } else {
                Span::raw(" ".repeat(indent))
            };
            TextLine::from(vec![lead, Span::styled(chunk, tone_style)])
        })
        .collect()
}

fn draw_messages(frame: &mut Frame, app: &App, w: &Window, r: Rect) {
    let height = r.height as usize;
    app.page.set(height.saturating_sub(1).max(1));
    let width = r.width as usize;
    // Rows from the newest up, only as many as the window and its scroll
    // need.
    let want = height + w.scroll;
    let mut rows: Vec<TextLine> = Vec::with_capacity(want);
    let mut complete = true;
    for line in w.lines.iter().rev() {
        if rows.len() >= want {
            complete = false;
            break;
        }
        let mut these = rows_of(app, line, width);
        these.reverse();
        rows.extend(these);
    }
    // Rows known: all of them when every line was laid out, else at
    // least one page more than shown (the top is not reached).
    app.rows.set(if complete {
        rows.len()
    } else {
        rows.len() + height
    });
    let scroll = w.scroll.min(rows.len().saturating_sub(height));
    let mut shown: Vec<TextLine> = rows.into_iter().skip(scroll).take(height).collect();
    shown.reverse();
    if scroll > 0 {
        // Say where the reader is, on the last row.
        if let Some(last) = shown.last_mut() {
            *last = TextLine::from(Span::styled(
                fit(&format!("-- {scroll} rows below: PgDn --"), width),
                Style::default().add_modifier(Modifier::REVERSED),
            ));
        }
    }
    // Lines sit at the bottom, as in a chat, until they fill the window.
    let top = r.y + (height - shown.len()) as u16;
    let area = Rect::new(r.x, top, r.width, shown.len() as u16);
    frame.render_widget(Paragraph::new(shown), area);
}

/// The transfers pane's rows: a title, the transfers (newest first), then
/// the `whohas` answers.
fn pane_lines(app: &App, width: usize) -> Vec<TextLine<'static>> {
    let rows = app.transfers.rows();
    if rows.is_empty() && app.picker.is_none() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let title = if app.picker.is_some() {
        " whohas answers: Up/Down choose, Enter downloads, Esc returns ".to_string()
    } else {
        format!(
            " transfers: {} under way (F2 picks a whohas answer) ",
            app.transfers.active()
        )
    };
    lines.push(TextLine::from(Span::styled(
        fit(&format!("{title:-<width$}"), width),
        style(app, Color::DarkGray),
    )));
    if let Some(chosen) = app.picker {
        for (i, o) in app.owners.iter().enumerate().rev() {
            let text = format!(
                " [{}] {} has {} ({})",
                i + 1,
                chatdrop_client::shown(&o.from),
                chatdrop_client::shown(&o.file),
                human_bytes(o.size)
            );
            let s = if i == chosen {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            lines.push(TextLine::from(Span::styled(fit(&text, width), s)));
        }
        return lines;
    }
    // Those under way first, then the latest finished.
    let mut order: Vec<&Transfer> = rows.iter().rev().filter(|t| t.active()).collect();
    order.extend(rows.iter().rev().filter(|t| !t.active()));
    for t in order {
        lines.push(TextLine::from(transfer_spans(app, t, width)));
    }
    lines
}

fn transfer_spans(app: &App, t: &Transfer, width: usize) -> Vec<Span<'static>> {
    let arrow = match t.direction {
        Direction::Down => "v",
        Direction::Up => "^",
    };
    // A download from several owners names them all.
    let many = t.sources.len() > 1;
    let who = match t.direction {
        Direction::Down if many => {
            let names: Vec<&str> = t.sources.iter().map(|(n, _)| n.as_str()).collect();
            format!("from {}", names.join("+"))
        }
        Direction::Down => format!("from {}", t.peer),
        Direction::Up => format!("to {}", t.peer),
    };
    let head = format!(" {arrow} {} {who} ", t.file);
    let cells = if width >= PEERS_FROM as usize {
        BAR
    } else {
        BAR / 2
    };
    let filled = (t.ratio() * cells as f64).round() as usize;
    let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(cells - filled));
    let (state, state_color) = match &t.state {
        State::Waiting => (
            format!(
                "waiting{}",
                t.note
                    .as_ref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            ),
            Color::Yellow,
        ),
        // Every byte is in: the last part is checked against the hash
        // and the file synced and moved into place.
        State::Moving if t.direction == Direction::Down && t.size > 0 && t.done >= t.size => {
            ("verifying and saving".to_string(), Color::Reset)
        }
        State::Moving => {
            let eta = t.eta().map(clock).unwrap_or_else(|| "-".into());
            let size = if t.size > 0 {
                format!("{} of {}", human_bytes(t.done), human_bytes(t.size))
            } else {
                human_bytes(t.done)
            };
            let path = t.path.as_ref().map(|p| format!(" {p}")).unwrap_or_default();
            let arq = t.arq.as_ref().map(|a| format!(" {a}")).unwrap_or_default();
            // What each owner sent, when several do.
            let shares = match many {
                true => {
                    let each: Vec<String> = (t.sources.iter())
                        .map(|(n, b)| format!("{n} {}", human_bytes(*b)))
                        .collect();
                    format!(" ({})", each.join(", "))
                }
                false => String::new(),
            };
            // What matters most first: a narrow terminal cuts the end.
            (
                format!(
                    "{:>3}% {}/s ETA {eta} {size}{path}{arq}{shares}",
                    (t.ratio() * 100.0).floor() as u32,
                    human_bytes(t.rate as u64)
                ),
                Color::Reset,
            )
        }
        State::Done(Some(path)) => (format!("done, saved as {path}"), Color::Green),
        State::Done(None) => ("done".to_string(), Color::Green),
        State::Failed { reason, resumable } => (
            format!(
                "failed: {reason}{}",
                if *resumable {
                    " (resumable: getfile again)"
                } else {
                    ""
                }
            ),
            Color::Red,
        ),
    };
    let text = fit(&format!("{head}{bar} {state}"), width);
    vec![Span::styled(text, style(app, state_color))]
}

/// `m:ss` (or `h:mm:ss`).
fn clock(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The newest offer waiting, with the keys that answer it (and how many
/// more wait).
fn draw_offer(frame: &mut Frame, app: &App, r: Rect) {
    let Some(o) = app.offers.back() else {
        return;
    };
    let what = match o.files {
        1 => chatdrop_client::shown(&o.first).into_owned(),
        n => format!("{} and {} more", chatdrop_client::shown(&o.first), n - 1),
    };
    let more = match app.offers.len() {
        1 => String::new(),
        n => format!(" ({} more waiting)", n - 1),
    };
    let text = format!(
        " offer {}: {} sends {what} ({}) | F3 accept | F4 decline{more}",
        o.offer,
        chatdrop_client::shown(&o.from),
        human_bytes(o.bytes)
    );
    let mut s = Style::default().add_modifier(Modifier::REVERSED);
    if app.color {
        s = s.fg(Color::Yellow);
    }
    frame.render_widget(Paragraph::new(fit(&text, r.width as usize)).style(s), r);
}

fn draw_input(frame: &mut Frame, app: &App, r: Rect) {
    let current = app.windows.current();
    let prompt = match &app.secret {
        Some(room) => format!("[password for {}] ", chatdrop_client::shown(room)),
        None => format!("[{}] ", current.title()),
    };
    let prompt = fit(&prompt, (r.width as usize / 2).max(1));
    let room = (r.width as usize).saturating_sub(prompt.width());
    // A password shows nothing at all, not even its length.
    let (text, cursor) = if app.secret.is_some() {
        (String::new(), 0)
    } else {
        let chars: Vec<char> = app.input.text().chars().collect();
        let cursor = app.input.cursor();
        // Scroll sideways so that the cursor stays in view.
        let mut start = 0;
        while start < cursor && width_of(&chars[start..cursor]) >= room {
            start += 1;
        }
        let mut shown = String::new();
        let mut w = 0;
        for &c in &chars[start..] {
            let cw = c.width().unwrap_or(0);
            if w + cw > room {
                break;
            }
            shown.push(c);
            w += cw;
        }
        (shown, width_of(&chars[start..cursor]))
    };
    let prompt_width = prompt.width();
    let line = TextLine::from(vec![
        Span::styled(prompt, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(text),
    ]);
    frame.render_widget(Paragraph::new(line), r);
    let x = (r.x as usize + prompt_width + cursor).min(r.right().saturating_sub(1) as usize);
    frame.set_cursor_position(Position::new(x as u16, r.y));
}

fn width_of(chars: &[char]) -> usize {
    chars.iter().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` cut to `width` cells.
fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    out
}

/// `text` in rows of `first` cells, then of `rest`: at spaces where it
/// can, inside a word longer than a row.
fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut row_width = 0;
    let limit = |rows: &Vec<String>| if rows.is_empty() { first } else { rest };
    for word in text.split_inclusive(' ') {
        let ww = word.trim_end().width();
        if row_width + ww > limit(&rows) && !row.is_empty() {
            rows.push(std::mem::take(&mut row).trim_end().to_string());
            row_width = 0;
        }
        for c in word.chars() {
            let cw = c.width().unwrap_or(0);
            if row_width + cw > limit(&rows) && c != ' ' {
                rows.push(std::mem::take(&mut row));
                row_width = 0;
            }
            if c == ' ' && row_width + cw > limit(&rows) {
                continue;
            }
            row.push(c);
            row_width += cw;
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row.trim_end().to_string());
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("hello there world", 11, 11), ["hello there", "world"]);
        assert_eq!(wrap("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 5, 5), [""]);
        assert_eq!(wrap("a b", 1, 1), ["a", "b"]);
        assert_eq!(wrap("日本語です", 4, 4), ["日本", "語で", "す"]);
    }

    #[test]
    fn times_left_read_as_clocks() {
        assert_eq!(clock(std::time::Duration::from_secs(65)), "1:05");
        assert_eq!(clock(std::time::Duration::from_secs(3725)), "1:02:05");
    }
}
