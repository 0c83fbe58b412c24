//! `chatdrop`: the one binary. Subcommands run a server or a client; the
//! libraries do the work, this crate parses arguments and prints.

mod client_cmd;
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
    Server(server_cmd::ServerArgs),
    /// Connect to a server and chat.
    Client(client_cmd::ClientArgs),
    /// Offer one file to one receiver, without a server: prints a ticket.
    Send(transfer_cmd::SendArgs),
    /// Fetch a file offered with `chatdrop send`.
    Recv(transfer_cmd::RecvArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,chatdrop=info"))
    };
    // The full-screen UI owns the terminal: its log goes to a file.
    let log_file = match &cli.command {
        Cmd::Client(args) if args.full_screen() => Some(open_log(&args.data_dir())),
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
    let result = match cli.command {
        Cmd::Server(args) => server_cmd::main(args),
        Cmd::Client(args) => client_cmd::main(args),
        Cmd::Send(args) => transfer_cmd::send(args),
        Cmd::Recv(args) => transfer_cmd::recv(args),
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
