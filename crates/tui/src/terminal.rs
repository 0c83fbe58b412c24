//! The terminal: raw mode and the alternate screen while the UI runs,
//! restored on every way out (quit, the client ending, a signal, a panic);
//! keys, pastes and resizes in, client events in, a redraw after each.

use std::future::Future;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use chatdrop_client::{ClientEvent, Command};
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event, EventStream, KeyEvent};
use crossterm::execute;
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::app::{now_ms, Action, App};

/// How often the screen is redrawn with nothing happening: transfer rates
/// and ETAs move on.
const TICK: Duration = Duration::from_millis(250);
/// How long a quit waits for the client to say goodbye to its server.
const QUIT_WAIT: Duration = Duration::from_secs(3);

/// Puts the terminal back as it was, also when dropped by a panic's
/// unwinding (ratatui's hook restores it before a panic is printed).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), DisableBracketedPaste);
        let _ = ratatui::try_restore();
    }
}

/// Runs the UI until the user quits or `client` ends; returns the
/// client's result if it ended (after a quit, if it ended within a few
/// seconds). Commands go out on `commands`; events come on `events`.
/// Keys come from the terminal, and from `script` if given (`chatdrop
/// demo` types through it, and ends the UI by closing it).
pub async fn run<T>(
    mut app: App,
    commands: mpsc::Sender<Command>,
    mut events: mpsc::Receiver<ClientEvent>,
    client: impl Future<Output = T>,
    mut script: Option<mpsc::Receiver<KeyEvent>>,
) -> io::Result<Option<T>> {
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    execute!(io::stdout(), EnableBracketedPaste)?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::pin!(client);
    app.set_time(now_ms());
    app.welcome();
    let ended = loop {
        terminal.draw(|f| crate::draw::draw(f, &app))?;
        if let Some(text) = app.take_notice() {
            // OSC 777 (foot, WezTerm, Ghostty, rxvt-unicode and others
            // show it as a desktop notification; terminals that do not
            // know it ignore it).
            let mut out = io::stdout();
            let _ = write!(out, "\x1b]777;notify;chatdrop;{text}\x1b\\");
            let _ = out.flush();
        }
        if app.take_ring() {
            let mut out = io::stdout();
            let _ = out.write_all(b"\x07");
            let _ = out.flush();
        }
        let actions = tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => {
                    app.set_time(now_ms());
                    app.on_key(key)
                }
                Some(Ok(Event::Paste(text))) => {
                    app.on_paste(&text);
                    Vec::new()
                }
                Some(Ok(_)) => Vec::new(),
                // The terminal is gone.
                Some(Err(_)) | None => vec![Action::Quit],
            },
            ev = events.recv() => {
                if let Some(ev) = ev {
                    app.on_event(&ev, now_ms(), Instant::now());
                    // Take what else is there before drawing again.
                    while let Ok(ev) = events.try_recv() {
                        app.on_event(&ev, now_ms(), Instant::now());
                    }
                }
                Vec::new()
            }
            _ = tick.tick() => {
                app.set_time(now_ms());
                Vec::new()
            }
            key = next_scripted(&mut script) => match key {
                Some(key) => {
                    app.set_time(now_ms());
                    app.on_key(key)
                }
                None => vec![Action::Quit],
            },
            _ = hangup.recv() => vec![Action::Quit],
            _ = terminate.recv() => vec![Action::Quit],
            result = &mut client => break Some(result),
        };
        let mut quit = false;
        for action in actions {
            match action {
                Action::Send(cmd) => {
                    if commands.send(cmd).await.is_err() {
                        quit = true;
                    }
                }
                Action::Quit => quit = true,
            }
        }
        if quit {
            let _ = commands.try_send(Command::Quit);
            break tokio::time::timeout(QUIT_WAIT, &mut client).await.ok();
        }
    };
    drop(terminal);
    Ok(ended)
}

/// The next scripted key; pending for ever without a script.
async fn next_scripted(script: &mut Option<mpsc::Receiver<KeyEvent>>) -> Option<KeyEvent> {
    match script {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
