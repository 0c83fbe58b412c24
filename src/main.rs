//! `chatdrop`: the one binary. Subcommands run a server or a client; the
//! libraries do the work, this crate parses arguments and prints.

mod client_cmd;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,chatdrop=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
