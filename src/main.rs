//! `chatdrop`: the one binary. Subcommands run a server or a client; the
//! libraries do the work, this crate parses arguments and prints.

mod client_cmd;
mod client_config;
mod demo_cmd;
mod echo;
mod paths;
mod printer;
mod progress;
mod server_cmd;
mod transfer_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// chatdrop: chat rooms whose peers send files straight to each other.
#[derive(Debug, Parser)]
#[command(name = "chatdrop", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a server: rooms, users and the admin console.
    #[command(after_help = "Examples:
  chatdrop server                                  a server on port 50000, data in the platform's data dir
  chatdrop server --name hub --config server.toml  options from a file (docs/CONFIG.md)")]
    Server(server_cmd::ServerArgs),
    /// Connect to a server and chat: the full-screen UI on a terminal, the
    /// line mode otherwise (or with --plain).
    #[command(after_help = "Examples:
  chatdrop client --server chat.example.org:50000 --user alice
  chatdrop client --user bob --room lobby --create     bob makes room lobby and enters it
  chatdrop client --plain --user carl < lines.txt      the line mode, reading commands from a file")]
    Client(client_cmd::ClientArgs),
    /// Offer one file to one receiver, without a server: prints a ticket.
    #[command(after_help = "Examples:
  chatdrop send report.pdf                              prints a ticket for `chatdrop recv`
  chatdrop send report.pdf --via chat.example.org:50000 prints a short code instead")]
    Send(transfer_cmd::SendArgs),
    /// Fetch a file offered with `chatdrop send`.
    #[command(after_help = "Examples:
  chatdrop recv chatdrop1-...                  with the ticket `chatdrop send` printed
  chatdrop recv --via chat.example.org:50000   asks for the short code")]
    Recv(transfer_cmd::RecvArgs),
    /// See it work: a server and three clients on this machine play the
    /// original's scenario in about ten seconds, then clean up.
    #[command(after_help = "Example:
  chatdrop demo    alice's full-screen UI: a private room, messages, whohas, a busy owner, a download")]
    Demo,
    /// The client's configuration file: where it is, or a commented one.
    #[command(after_help = "Examples:
  chatdrop config init    writes a commented default (every option of `chatdrop client`)
  chatdrop config path    prints where the client reads it")]
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Print a shell completion script.
    #[command(after_help = "Example:
  chatdrop completions bash > ~/.local/share/bash-completion/completions/chatdrop")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    #[command(after_help = "Example:
  chatdrop man > chatdrop.1 && man ./chatdrop.1")]
    Man,
}

/// `chatdrop config ...`.
#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Write a commented default config file (kept if it exists, unless
    /// --force).
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Where to write it [default: the path `chatdrop config path`
        /// prints].
        #[arg(long, value_name = "FILE")]
        path: Option<std::path::PathBuf>,
    },
    /// Print where the client reads its config file.
    Path,
}

/// `chatdrop config`, `completions` and `man`: they print and exit.
fn small(command: Cmd) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut out = std::io::stdout();
    match command {
        Cmd::Config {
            action: ConfigCmd::Path,
        } => println!("{}", client_config::default_path().display()),
        Cmd::Config {
            action: ConfigCmd::Init { force, path },
        } => {
            let path = path.unwrap_or_else(client_config::default_path);
            client_config::init(&path, force)?;
            println!("wrote {}", path.display());
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "chatdrop", &mut out)
        }
        Cmd::Man => clap_mangen::Man::new(Cli::command()).render(&mut out)?,
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client's config file is folded in first: it may name the data
    // directory, where the full-screen UI's log goes.
    let command = match cli.command {
        Cmd::Client(args) => match client_cmd::merge(args) {
            Ok(args) => Cmd::Client(args),
            Err(e) => {
                eprintln!("chatdrop: error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        other => other,
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,chatdrop=info"))
    };
    // The full-screen UI owns the terminal: its log goes to a file.
    let log_file = match &command {
        Cmd::Client(args) if args.full_screen() => Some(open_log(&args.data_dir())),
        // The demo's server and clients log nothing over its UI.
        Cmd::Demo if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            Some(Box::new(std::io::sink()) as Box<dyn std::io::Write + Send>)
        }
        _ => None,
    };
    match log_file {
        Some(file) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    log_panics();
    let result = match command {
        Cmd::Server(args) => server_cmd::main(args),
        Cmd::Client(args) => client_cmd::main(args),
        Cmd::Send(args) => transfer_cmd::send(args),
        Cmd::Recv(args) => transfer_cmd::recv(args),
        Cmd::Demo => demo_cmd::main(),
        other => small(other),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chatdrop: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `client.log` in `dir`, opened to append; if it cannot be, the log is
/// dropped rather than drawn over the UI.
fn open_log(dir: &std::path::Path) -> Box<dyn std::io::Write + Send> {
    let file = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("client.log"))
    });
    match file {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::sink()),
    }
}

/// Logs every panic as an error through tracing, with its thread and place,
/// then lets the default hook print it as usual. tokio catches a panic in a
/// spawned task and the process goes on without it; this puts it in the
/// log, among the lines around it.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let place = info
            .location()
            .map_or_else(|| "an unknown place".to_string(), |l| l.to_string());
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        tracing::error!(
            "thread '{}' panicked at {place}: {message}",
            thread.name().unwrap_or("<unnamed>"),
        );
        default(info);
    }));
}

#[cfg(test)]
mod cli_tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command's `--help` ends with an example, and the completion
    /// scripts and the man page, made from the same definition, name every
    /// command.
    #[test]
    fn help_completions_and_the_man_page_cover_every_command() {
        let cli = Cli::command();
        let names: Vec<String> = cli
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .filter(|n| n != "help")
            .collect();
        for sub in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Example") && after.contains("chatdrop "),
                "`chatdrop {} --help` has no example",
                sub.get_name()
            );
        }
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "chatdrop", &mut script);
            let script = String::from_utf8(script).unwrap();
            for name in &names {
                assert!(script.contains(name.as_str()), "{shell}: no {name}");
            }
            // Flags too (fish names them without the dashes).
            assert!(
                script.contains("plain") && script.contains("download-dir"),
                "{shell}"
            );
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH chatdrop"),
            "{page}"
        );
        for name in &names {
            assert!(page.contains(name.as_str()), "man: no {name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A log written into memory.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A panic in a thread (as in a spawned task) is in the log with the
    /// thread's name, the place and the message.
    #[test]
    fn a_panic_is_logged_with_its_thread_and_place() {
        super::log_panics();
        let log = Log::default();
        let sink = log.clone();
        let doomed = std::thread::Builder::new()
            .name("doomed".into())
            .spawn(move || {
                let subscriber = tracing_subscriber::fmt()
                    .with_writer(move || sink.clone())
                    .with_ansi(false)
                    .finish();
                tracing::subscriber::with_default(subscriber, || panic!("on purpose"));
            })
            .unwrap();
        assert!(doomed.join().is_err());
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("ERROR"), "{text}");
        assert!(
            text.contains("thread 'doomed' panicked at src/main.rs:"),
            "{text}"
        );
        assert!(text.contains("on purpose"), "{text}");
    }
}
