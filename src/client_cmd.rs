//! `chatdrop client`: standard input to commands, events to standard output.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chatdrop_client::TransferOptions;
use chatdrop_client::HELP;
use chatdrop_client::{parse_command, ClientError, ClientEvent, ClientOptions, Command, ErrorKind};
use chatdrop_proto::ErrorCode;
use clap::Args;
use tokio::sync::mpsc;

use crate::printer::Printer;
use crate::progress::Meter;

/// Options of `chatdrop client`. Each may also be set in the client's
/// config file (`chatdrop config path` says where); a flag given wins.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// A config file to read instead of the default one (see `chatdrop
    /// config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Server address, HOST:PORT; or several, comma-separated, servers of
    /// one network: the client measures the round-trip time to each, uses
    /// the closest, and moves to the next closest when its server fails
    /// [default: 127.0.0.1:50000].
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// User name (asked for when missing and standard input is a terminal).
    #[arg(long)]
    user: Option<String>,
    /// Room to join (or create, with --create) after connecting.
    #[arg(long)]
    room: Option<String>,
    /// Create --room instead of joining it.
    #[arg(long, requires = "room")]
    create: bool,
    /// Password of --room; with --create the room is private.
    #[arg(long, requires = "room")]
    password: Option<String>,
    /// Directory of the identity key and known hosts [default: the
    /// platform's data directory for chatdrop, then `client`]. Given, it
    /// also holds the default share and download folders.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Pin the server's certificate SHA-256 fingerprint (hex) instead of
    /// trusting it on first use.
    #[arg(long)]
    server_fingerprint: Option<String>,
    /// Print one JSON object per event instead of text.
    #[arg(long)]
    json: bool,
    /// The line mode: events printed as lines, commands read line by line
    /// (the default when standard input or output is not a terminal).
    /// Without it, a terminal gets the full-screen UI.
    #[arg(long, conflicts_with = "json")]
    plain: bool,
    /// No terminal bell in the full-screen UI (it rings when someone names
    /// you or writes to you, and when a download finishes).
    #[arg(long)]
    no_bell: bool,
    /// Also a desktop notification, through the terminal (OSC 777: foot,
    /// WezTerm, Ghostty, rxvt-unicode...), when the bell would ring.
    #[arg(long)]
    notify: bool,
    /// The folder whose files can be shared [default: `shared` in the data
    /// directory].
    #[arg(long)]
    share_dir: Option<PathBuf>,
    /// Where downloads go [default: your Downloads folder; with
    /// --data-dir, `downloads` in it].
    #[arg(long)]
    download_dir: Option<PathBuf>,
    /// ARQ scheme for sending files: `sr` (Selective Repeat) or `gbn`
    /// (Go-Back-N) [default: sr].
    #[arg(long)]
    arq: Option<chatdrop_arq::Scheme>,
    /// Window cap in packets, for sending files: the most ever in flight
    /// (the congestion controller decides how many below it) [default:
    /// 16384].
    #[arg(short = 'w', long = "window")]
    window: Option<u32>,
    /// Uploads at once; further requests are refused as busy [default: 4].
    #[arg(long)]
    max_uploads: Option<usize>,
    /// Seconds of silence after which a file transfer fails [default: 10].
    #[arg(long)]
    timeout: Option<u64>,
    /// Accept files USER offers (`/send`) without asking; repeat for
    /// several users [default: nobody].
    #[arg(long = "auto-accept", value_name = "USER")]
    auto_accept: Vec<String>,
    /// From the config file: colours in the full-screen UI.
    #[arg(skip)]
    colors: Option<bool>,
}

/// Folds the config file (the one named, or the default one if it exists)
/// into the flags: a flag given wins.
pub fn merge(mut args: ClientArgs) -> anyhow::Result<ClientArgs> {
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (crate::client_config::default_path(), false),
    };
    let Some(c) = crate::client_config::load(&path, required)? else {
        return Ok(args);
    };
    if args.server.is_empty() {
        args.server = c.servers.unwrap_or_default();
    }
    args.user = args.user.or(c.user);
    args.data_dir = args.data_dir.or(c.data_dir);
    args.share_dir = args.share_dir.or(c.share_dir);
    args.download_dir = args.download_dir.or(c.download_dir);
    if args.arq.is_none() {
        if let Some(arq) = c.arq {
            let scheme = arq
                .parse()
                .map_err(|e| anyhow::anyhow!("in {}: arq: {e}", path.display()))?;
            args.arq = Some(scheme);
        }
    }
    args.window = args.window.or(c.window);
    args.max_uploads = args.max_uploads.or(c.max_uploads);
    args.timeout = args.timeout.or(c.timeout);
    if args.auto_accept.is_empty() {
        args.auto_accept = c.auto_accept.unwrap_or_default();
    }
    args.no_bell |= c.bell == Some(false);
    args.notify |= c.notify == Some(true);
    args.colors = c.colors;
    Ok(args)
}

/// The questions asked, as the original does, when no room was given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prompt {
    /// Not asking anything.
    Off,
    /// "create or join?"
    Choose,
    /// Name of the room to create.
    CreateName,
    /// Password of the room to create.
    CreatePassword(String),
    /// Name of the room to join.
    JoinName,
    /// Password of a private room.
    Password(String),
    /// Waiting for the server's answer about this room.
    Waiting(String),
}

impl Prompt {
    fn question(&self) -> Option<String> {
        Some(match self {
            Prompt::Off | Prompt::Waiting(_) => return None,
            Prompt::Choose => "Send create/join a chatroom (or press Enter to skip):".into(),
            Prompt::CreateName => "Name of the new chatroom:".into(),
            Prompt::CreatePassword(_) => "Password (empty for a public room):".into(),
            Prompt::JoinName => "Which chatroom?".into(),
            Prompt::Password(room) => {
                format!("Chatroom {room} is private. Please enter password:")
            }
        })
    }
}

/// Takes Ctrl-C (SIGINT) from now on, instead of dying of it.
fn on_interrupt() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok()
}

/// The next Ctrl-C, once taken; pending for ever before.
async fn interrupted(interrupt: &mut Option<tokio::signal::unix::Signal>) {
    match interrupt {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Asks `prompt`'s question, if it has one; a password's answer is typed
/// without echo (the guard returned turns it back on).
fn ask_prompt(prompt: &Prompt, interactive: bool) -> Option<crate::echo::EchoOff> {
    let q = prompt.question()?;
    ask(&q);
    let secret = matches!(prompt, Prompt::Password(_) | Prompt::CreatePassword(_));
    (secret && interactive)
        .then(crate::echo::EchoOff::new)
        .flatten()
}

fn ask(q: &str) {
    eprintln!("{q}");
    let _ = std::io::stderr().flush();
}

impl ClientArgs {
    /// Whether the full-screen UI runs: a terminal on both ends, and
    /// neither `--plain` nor `--json`.
    pub fn full_screen(&self) -> bool {
        !self.plain
            && !self.json
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
    }

    /// The data directory, as given or the platform's.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| crate::paths::default_data_dir("client"))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
}

pub fn main(args: ClientArgs) -> anyhow::Result<ExitCode> {
    if args.full_screen() {
        return full_screen(args);
    }
    let interactive = std::io::stdin().is_terminal();
    let rt = runtime()?;
    // Standard input blocks, so a thread reads it into a bounded channel.
    let (line_tx, line_rx) = mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rt.block_on(client(args, interactive, line_rx))
}

/// The full-screen UI, around the same client as the line mode.
fn full_screen(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let user = match args.user.clone() {
        Some(u) => u,
        None => {
            ask("Please enter your username:");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the user name")?;
            line.trim().to_string()
        }
    };
    if let Err(why) = chatdrop_proto::names::check_user_name(&user) {
        anyhow::bail!("{why}");
    }
    let (bell, notify) = (!args.no_bell, args.notify);
    let colors = args.colors.unwrap_or(true);
    let opts = options(args, &user)?;
    let (share_dir, download_dir) = (
        opts.transfer.share_dir.clone(),
        opts.transfer.download_dir.clone(),
    );
    let first_room = match &opts.first {
        Some(Command::Join { room, .. } | Command::Create { room, .. }) => Some(room.clone()),
        _ => None,
    };
    let rt = runtime()?;
    let ended = rt.block_on(async {
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(64);
        let (ev_tx, ev_rx) = mpsc::channel::<ClientEvent>(256);
        let task = tokio::spawn(chatdrop_client::run(opts, cmd_rx, ev_tx));
        let mut app = chatdrop_tui::App::new(&user, chatdrop_tui::local_time);
        // https://no-color.org: present and not empty.
        app.color = colors && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        app.set_folders(&share_dir, &download_dir);
        app.bell = bell;
        app.notify = notify;
        if let Some(room) = first_room {
            app.joining(&room);
        }
        chatdrop_tui::run(app, cmd_tx, ev_rx, task, None).await
    });
    // A client that did not end within the quit's wait is not waited for.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match ended.context("running the terminal")? {
        None | Some(Ok(Ok(_))) => Ok(ExitCode::SUCCESS),
        Some(Ok(Err(e))) => {
            eprintln!("chatdrop: {e}");
            Ok(ExitCode::from(match e {
                ClientError::Kicked(_) => 3,
                _ => 1,
            }))
        }
        Some(Err(e)) => Err(e).context("client task failed"),
    }
}

/// The client's options from the command line, for user `user`.
fn options(args: ClientArgs, user: &str) -> anyhow::Result<ClientOptions> {
    let servers = if args.server.is_empty() {
        vec!["127.0.0.1:50000".to_string()]
    } else {
        args.server.clone()
    };
    let window = args.window.unwrap_or(chatdrop_arq::DEFAULT_WINDOW);
    let first = args.room.clone().map(|room| {
        let password = args.password.clone();
        if args.create {
            Command::Create { room, password }
        } else {
            Command::Join { room, password }
        }
    });
    anyhow::ensure!(
        (1..=chatdrop_arq::MAX_WINDOW).contains(&window),
        "-w must be between 1 and {} packets",
        chatdrop_arq::MAX_WINDOW
    );
    let data_dir = args.data_dir();
    let download_dir = match (args.download_dir, &args.data_dir) {
        (Some(dir), _) => dir,
        // A data directory given holds everything of this client.
        (None, Some(given)) => given.join("downloads"),
        (None, None) => directories::UserDirs::new()
            .and_then(|u| u.download_dir().map(PathBuf::from))
            .unwrap_or_else(|| data_dir.join("downloads")),
    };
    let transfer = TransferOptions {
        share_dir: args.share_dir.unwrap_or_else(|| data_dir.join("shared")),
        download_dir,
        scheme: args.arq.unwrap_or(chatdrop_arq::Scheme::SelectiveRepeat),
        window,
        max_uploads: args.max_uploads.unwrap_or(4),
        auto_accept: args.auto_accept.clone(),
        timeout: std::time::Duration::from_secs(args.timeout.unwrap_or(10).max(1)),
    };
    Ok(ClientOptions {
        servers,
        user: user.to_string(),
        data_dir,
        fingerprint: args.server_fingerprint,
        first,
        transfer,
    })
}

async fn client(
    args: ClientArgs,
    interactive: bool,
    mut lines: mpsc::Receiver<String>,
) -> anyhow::Result<ExitCode> {
    let user = match args.user.clone() {
        Some(u) => u,
        None if interactive => {
            ask("Please enter your username:");
            lines.recv().await.unwrap_or_default().trim().to_string()
        }
        None => anyhow::bail!("--user is required when standard input is not a terminal"),
    };
    if let Err(why) = chatdrop_proto::names::check_user_name(&user) {
        anyhow::bail!("{why}");
    }
    let json = args.json;
    let opts = options(args, &user)?;
    let mut prompt = if opts.first.is_none() && interactive {
        Prompt::Choose
    } else {
        Prompt::Off
    };
    // The terminal's echo, off while a password is typed.
    let mut hidden: Option<crate::echo::EchoOff> = None;
    // Ctrl-C, taken from the first password asked on.
    let mut interrupt: Option<tokio::signal::unix::Signal> = None;
    let printer = Printer {
        json,
        me: user,
        ..Printer::default()
    };
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(64);
    let (ev_tx, mut ev_rx) = mpsc::channel::<ClientEvent>(256);
    let mut task = tokio::spawn(chatdrop_client::run(opts, cmd_rx, ev_tx));
    let mut cmd_tx = Some(cmd_tx);
    let mut stdout = std::io::stdout().lock();
    let mut bars: HashMap<String, Meter> = HashMap::new();
    let result = loop {
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { continue };
                if !printer.json && show_progress(&mut bars, &printer, &ev) {
                    continue;
                }
                let _ = writeln!(stdout, "{}", printer.line(&ev));
                let _ = stdout.flush();
                if let Some(next) = advance(&prompt, &ev) {
                    prompt = next;
                    hidden = ask_prompt(&prompt, interactive);
                    if interrupt.is_none() && hidden.is_some() {
                        interrupt = on_interrupt();
                    }
                }
            }
            line = lines.recv(), if cmd_tx.is_some() => {
                let Some(line) = line else {
                    cmd_tx = None; // end of input: quit cleanly
                    continue;
                };
                if hidden.take().is_some() {
                    // The Enter of a hidden answer was not echoed either.
                    eprintln!();
                }
                let Some(tx) = &cmd_tx else { continue };
                let (cmd, next) = if prompt != Prompt::Off && !line.starts_with(['@', '/']) {
                    answer(&prompt, line.trim())
                } else {
                    match parse_command(&line) {
                        Ok(cmd) => (cmd, None),
                        Err(why) => {
                            let ev = ClientEvent::Error { code: ErrorKind::BadCommand, message: why };
                            let _ = writeln!(stdout, "{}", printer.line(&ev));
                            (None, None)
                        }
                    }
                };
                if let Some(next) = next {
                    prompt = next;
                    hidden = ask_prompt(&prompt, interactive);
                    if interrupt.is_none() && hidden.is_some() {
                        interrupt = on_interrupt();
                    }
                }
                let sent = match cmd {
                    Some(Command::Help) => { let _ = writeln!(stdout, "{HELP}"); true }
                    Some(cmd) => tx.send(cmd).await.is_ok(),
                    None => true,
                };
                if !sent {
                    cmd_tx = None;
                }
                let _ = stdout.flush();
            }
            // Ctrl-C once a password was asked (the echo may be off): the
            // terminal is put back before the process ends.
            _ = interrupted(&mut interrupt) => {
                if hidden.take().is_some() {
                    eprintln!();
                }
                return Ok(ExitCode::from(130));
            }
            r = &mut task => break r,
        }
    };
    // Print what the client said before it ended.
    while let Ok(ev) = ev_rx.try_recv() {
        let _ = writeln!(stdout, "{}", printer.line(&ev));
    }
    let _ = stdout.flush();
    match result.context("client task failed")? {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            if printer.json && !matches!(e, ClientError::Kicked(_)) {
                let ev = ClientEvent::Error {
                    code: e.kind(),
                    message: e.to_string(),
                };
                let _ = writeln!(stdout, "{}", printer.line(&ev));
            }
            eprintln!("chatdrop: {e}");
            Ok(ExitCode::from(match e {
                ClientError::Kicked(_) => 3,
                _ => 1,
            }))
        }
    }
}

/// Keeps the progress bars of transfers in human mode. Returns true when the
/// event is shown by a bar alone.
fn show_progress(bars: &mut HashMap<String, Meter>, printer: &Printer, ev: &ClientEvent) -> bool {
    match ev {
        ClientEvent::TransferStarted { id, size, .. } => {
            bars.insert(id.clone(), Meter::new(printer, id, *size));
            false
        }
        ClientEvent::TransferProgress {
            id, bytes, total, ..
        } => {
            if let Some(m) = bars.get_mut(id) {
                m.update(*bytes, *total);
            }
            true
        }
        ClientEvent::TransferDone { id, .. } | ClientEvent::TransferFailed { id, .. } => {
            if let Some(m) = bars.remove(id) {
                m.finish();
            }
            false
        }
        _ => false,
    }
}

/// The prompt an event leads to, if it changes.
fn advance(prompt: &Prompt, ev: &ClientEvent) -> Option<Prompt> {
    match (prompt, ev) {
        (Prompt::Off, _) => None,
        (_, ClientEvent::Joined { .. }) => Some(Prompt::Off),
        (Prompt::Choose, ClientEvent::Connected { .. }) => Some(Prompt::Choose),
        (Prompt::Waiting(room), ClientEvent::Error { code, .. }) => Some(match code {
            ErrorKind::Server(ErrorCode::PasswordRequired | ErrorCode::WrongPassword) => {
                Prompt::Password(room.clone())
            }
            _ => Prompt::Choose,
        }),
        _ => None,
    }
}

/// Handles an answer to the current prompt: the command to send, and the
/// next prompt.
fn answer(prompt: &Prompt, text: &str) -> (Option<Command>, Option<Prompt>) {
    match prompt {
        Prompt::Off | Prompt::Waiting(_) => (None, None),
        Prompt::Choose => match text {
            "" => (None, Some(Prompt::Off)),
            "create" | "c" => (None, Some(Prompt::CreateName)),
            "join" | "j" => (Some(Command::ListRooms), Some(Prompt::JoinName)),
            _ => (None, Some(Prompt::Choose)),
        },
        Prompt::CreateName if text.is_empty() => (None, Some(Prompt::CreateName)),
        Prompt::CreateName => (None, Some(Prompt::CreatePassword(text.into()))),
        Prompt::CreatePassword(room) => (
            Some(Command::Create {
                room: room.clone(),
                password: (!text.is_empty()).then(|| text.into()),
            }),
            Some(Prompt::Waiting(room.clone())),
        ),
        Prompt::JoinName if text.is_empty() => (None, Some(Prompt::JoinName)),
        Prompt::JoinName => (
            Some(Command::Join {
                room: text.into(),
                password: None,
            }),
            Some(Prompt::Waiting(text.into())),
        ),
        Prompt::Password(room) => (
            Some(Command::Join {
                room: room.clone(),
                password: Some(text.into()),
            }),
            Some(Prompt::Waiting(room.clone())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_join_dialogue() {
        let (cmd, p) = answer(&Prompt::Choose, "join");
        assert_eq!(cmd, Some(Command::ListRooms));
        let (cmd, p) = answer(&p.unwrap(), "whatsapp");
        assert!(matches!(cmd, Some(Command::Join { password: None, .. })));
        let p = p.unwrap();
        let err = ClientEvent::Error {
            code: ErrorKind::Server(ErrorCode::PasswordRequired),
            message: String::new(),
        };
        let p = advance(&p, &err).unwrap();
        assert_eq!(p, Prompt::Password("whatsapp".into()));
        let (cmd, p) = answer(&p, "1234");
        assert_eq!(
            cmd,
            Some(Command::Join {
                room: "whatsapp".into(),
                password: Some("1234".into())
            })
        );
        let joined = ClientEvent::Joined {
            room: "whatsapp".into(),
            room_id: "x".into(),
            created: false,
            peers: vec![],
        };
        assert_eq!(advance(&p.unwrap(), &joined), Some(Prompt::Off));
    }
}
