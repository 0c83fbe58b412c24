//! `chatdrop demo`: a server and three clients on this machine, in a
//! temporary folder, playing the original's scenario in about ten seconds:
//! bob makes the private room `whatsapp`, carol joins it, alice (whose
//! full-screen UI is shown, typing as a person would) lists the rooms,
//! joins with the password, says hello, asks who has a file, and fetches
//! it from carol, who is busy and refuses, so it comes from bob. Then
//! everything stops and the folder is removed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chatdrop_client::{ClientEvent, ClientOptions, Command, TransferOptions};
use chatdrop_server::{Server, ServerOptions};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::mpsc;

/// The file alice fetches: large enough for a progress bar to show.
const FILE: &str = "song.mp3";
const FILE_BYTES: usize = 64 << 20;

/// What alice does, as typed, with a pause before each line.
const ALICE: &[(u64, &str)] = &[
    (900, "/rooms"),
    (1200, "/join whatsapp"),
    (1300, "1234"),
    (1200, "hello everyone!"),
    (1500, "@all whohas song.mp3"),
    (1800, "@carol getfile song.mp3"),
];

pub fn main() -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let dir = std::env::temp_dir().join(format!("chatdrop-demo-{}", std::process::id()));
    let result = rt.block_on(demo(&dir));
    rt.shutdown_timeout(Duration::from_millis(500));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let mut opts = ServerOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.join("server"));
    opts.name = "demo".into();
    let server = Server::bind(opts).await.context("starting the server")?;
    let addr = server.local_addr().to_string();
    let admin = server.admin();
    let (console, mut console_rx) = mpsc::channel(64);
    tokio::spawn(async move { while console_rx.recv().await.is_some() {} });
    let server_task = tokio::spawn(server.run(console));

    // bob and carol both share the file; carol takes no uploads (busy).
    let song: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let first = |room: &str, password: &str, create: bool| {
        let (room, password) = (room.to_string(), Some(password.to_string()));
        Some(if create {
            Command::Create { room, password }
        } else {
            Command::Join { room, password }
        })
    };
    let bob = background(dir, &addr, "bob", &song, 4, first("whatsapp", "1234", true))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let carol = background(
        dir,
        &addr,
        "carol",
        &song,
        0,
        first("whatsapp", "1234", false),
    )?;
    for c in [&bob, &carol] {
        c.send(Command::Share(chatdrop_client::ShareCommand::Set(
            FILE.into(),
        )))
        .await?;
    }

    let alice = options(dir, &addr, "alice", None, 4)?;
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(64);
    let (ev_tx, ev_rx) = mpsc::channel::<ClientEvent>(256);
    let task = tokio::spawn(chatdrop_client::run(alice, cmd_rx, ev_tx));
    let (keys, script) = mpsc::channel::<KeyEvent>(64);
    let bob_says = bob.commands.clone();
    tokio::spawn(async move {
        for (i, (pause, line)) in ALICE.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(*pause)).await;
            for c in line.chars() {
                let _ = keys
                    .send(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
                    .await;
                tokio::time::sleep(Duration::from_millis(35)).await;
            }
            let _ = keys
                .send(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
                .await;
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let _ = bob_says
                    .send(Command::Say {
                        to: chatdrop_proto::Target::All,
                        room: None,
                        text: "hi alice! I have the song you wanted".into(),
                    })
                    .await;
            }
        }
        // Time to read the end, then the script closes and the UI ends.
        tokio::time::sleep(Duration::from_secs(4)).await;
    });
    let mut app = chatdrop_tui::App::new("alice", chatdrop_tui::local_time);
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.bell = false;
    let shown = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        chatdrop_tui::run(app, cmd_tx, ev_rx, task, Some(script))
            .await
            .context("running the terminal")?;
        true
    } else {
        // No terminal: alice's events as the line mode prints them.
        drop(script);
        lines(cmd_tx, ev_rx).await;
        false
    };
    for c in [bob, carol] {
        let _ = c.commands.send(Command::Quit).await;
    }
    let _ = admin.send(chatdrop_chat::AdminCommand::Exit).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), server_task).await;
    if shown {
        println!("That was chatdrop: a private room, messages, whohas, a busy owner and the next one, a verified download.");
        println!("Run your own: chatdrop server, then chatdrop client --user NAME (README.md).");
    }
    Ok(ExitCode::SUCCESS)
}

/// Without a terminal: alice's script as typed lines, her events as the
/// line mode prints them.
async fn lines(commands: mpsc::Sender<Command>, mut events: mpsc::Receiver<ClientEvent>) {
    let printer = crate::printer::Printer {
        json: false,
        me: "alice".into(),
        ..Default::default()
    };
    let script = async {
        for (pause, line) in ALICE {
            tokio::time::sleep(Duration::from_millis(*pause)).await;
            println!("> {line}");
            let cmd = match *line {
                // The password answers the prompt, as in the UI.
                "1234" => Command::Join {
                    room: "whatsapp".into(),
                    password: Some("1234".into()),
                },
                "hello everyone!" => Command::Say {
                    to: chatdrop_proto::Target::All,
                    room: None,
                    text: (*line).into(),
                },
                line => match chatdrop_client::parse_command(line) {
                    Ok(Some(cmd)) => cmd,
                    _ => continue,
                },
            };
            let _ = commands.send(cmd).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    tokio::pin!(script);
    loop {
        tokio::select! {
            _ = &mut script => break,
            ev = events.recv() => match ev {
                Some(ClientEvent::TransferProgress { .. }) => {}
                Some(ev) => println!("{}", printer.line(&ev)),
                None => break,
            },
        }
    }
}

/// A client of the demo run without a UI: its commands, its events drained.
struct Background {
    commands: mpsc::Sender<Command>,
}

impl Background {
    async fn send(&self, cmd: Command) -> anyhow::Result<()> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| anyhow::anyhow!("a demo client stopped"))
    }
}

fn background(
    dir: &Path,
    server: &str,
    user: &str,
    song: &[u8],
    max_uploads: usize,
    first: Option<Command>,
) -> anyhow::Result<Background> {
    let opts = options(dir, server, user, first, max_uploads)?;
    std::fs::create_dir_all(&opts.transfer.share_dir)?;
    std::fs::write(opts.transfer.share_dir.join(FILE), song)?;
    let (commands, rx) = mpsc::channel(64);
    let (events, mut events_rx) = mpsc::channel(256);
    tokio::spawn(chatdrop_client::run(opts, rx, events));
    tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
    Ok(Background { commands })
}

/// A demo client's options: everything in its own folder of `dir`.
fn options(
    dir: &Path,
    server: &str,
    user: &str,
    first: Option<Command>,
    max_uploads: usize,
) -> anyhow::Result<ClientOptions> {
    let home: PathBuf = dir.join(user);
    Ok(ClientOptions {
        servers: vec![server.to_string()],
        user: user.into(),
        data_dir: home.clone(),
        fingerprint: None,
        first,
        transfer: TransferOptions {
            share_dir: home.join("shared"),
            download_dir: home.join("downloads"),
            scheme: chatdrop_arq::Scheme::SelectiveRepeat,
            window: chatdrop_arq::DEFAULT_WINDOW,
            max_uploads,
            timeout: Duration::from_secs(10),
            auto_accept: Vec::new(),
        },
    })
}
