//! Test support: real `chatdrop` processes on loopback, with their output
//! read line by line so tests can wait for events instead of sleeping.

#![allow(dead_code)]

pub mod netns;
pub mod peer;
pub mod raw;
pub mod tmux;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single expected event may take to show up.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `chatdrop` process.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    err_lines: Receiver<String>,
    /// The threads reading stdout and stderr; they end with the process.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chatdrop")
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        Self::spawn_with_stdin(name, args, Stdio::piped())
    }

    /// Like [`Proc::spawn`] with the given standard input (a terminal, say).
    pub fn spawn_with_stdin(name: &str, args: &[&str], stdin: Stdio) -> Proc {
        Self::spawn_cmd(name, Command::new(bin()), args, stdin)
    }

    /// Like [`Proc::spawn`], with `env` set.
    pub fn spawn_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied());
        Self::spawn_cmd(name, cmd, args, Stdio::piped())
    }

    /// Like [`Proc::spawn`], in network namespace `ns` (made by the test:
    /// see [`netns`]).
    pub fn spawn_in(ns: &str, name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin()]);
        Self::spawn_cmd(name, cmd, args, Stdio::piped())
    }

    fn spawn_cmd(name: &str, mut cmd: Command, args: &[&str], stdin: Stdio) -> Proc {
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "warn,chatdrop=debug")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning chatdrop");
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("stdout");
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let (etx, err_lines) = channel();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
                let _ = etx.send(line);
            }
        });
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            err_lines,
            seen: Vec::new(),
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Types one line on the process's standard input.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to stdin");
        stdin.flush().expect("flushing stdin");
    }

    /// Closes standard input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line matching `pred`; panics with everything seen
    /// when none comes within [`WAIT`] or the process ends first.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_for(WAIT, what, pred)
    }

    /// Like [`Proc::wait_line`], waiting up to `limit`.
    pub fn wait_line_for(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        match self.next_line(limit, pred) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no {what} within {limit:?}.\nstdout:\n{}\nstderr:\n{}",
                self.name,
                self.seen.join("\n"),
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: ended before {what}.\nstdout:\n{}\nstderr:\n{}",
                self.name,
                self.seen.join("\n"),
                self.stderr()
            ),
        }
    }

    /// The next stdout line matching `pred` within `limit`, or why none came.
    fn next_line(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, RecvTimeoutError> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left)?;
            self.seen.push(line.clone());
            if pred(&line) {
                return Ok(line);
            }
        }
    }

    /// Waits for a standard-error line matching `pred` (a prompt, say).
    pub fn wait_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no {what} on stderr within {WAIT:?}.\nstderr:\n{}\nstdout:\n{}",
                    self.name,
                    self.stderr(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for a JSON event matching `pred` and returns it.
    pub fn wait_event(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_event_for(WAIT, what, pred)
    }

    /// Like [`Proc::wait_event`], waiting up to `limit`.
    pub fn wait_event_for(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_line_for(limit, what, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).unwrap()
    }

    /// Waits for an event of kind `kind` whose fields include `fields`.
    pub fn expect(&mut self, kind: &str, fields: &[(&str, Value)]) -> Value {
        self.expect_for(WAIT, kind, fields)
    }

    /// Like [`Proc::expect`], waiting up to `limit`.
    pub fn expect_for(&mut self, limit: Duration, kind: &str, fields: &[(&str, Value)]) -> Value {
        let what = format!("{kind} {fields:?}");
        self.wait_event_for(limit, &what, |v| {
            v["event"] == kind && fields.iter().all(|(k, want)| &v[*k] == want)
        })
    }

    /// Like [`Proc::expect`], but also takes a matching event that was read
    /// already (while waiting for another one).
    pub fn expect_ever(&mut self, kind: &str, fields: &[(&str, Value)]) -> Value {
        let matches =
            |v: &Value| v["event"] == kind && fields.iter().all(|(k, want)| &v[*k] == want);
        if let Some(v) = self.events().into_iter().find(|v| matches(v)) {
            return v;
        }
        self.expect(kind, fields)
    }

    /// Waits until `n` events of kind `kind` with `fields` have been seen in
    /// all (counting those read already) and returns the last.
    pub fn expect_nth(&mut self, n: usize, kind: &str, fields: &[(&str, Value)]) -> Value {
        let matches =
            |v: &Value| v["event"] == kind && fields.iter().all(|(k, want)| &v[*k] == want);
        loop {
            let seen: Vec<Value> = self.events().into_iter().filter(|v| matches(v)).collect();
            if seen.len() >= n {
                return seen[n - 1].clone();
            }
            self.expect(kind, fields);
        }
    }

    /// All JSON events seen so far.
    pub fn events(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many `message` events with this text were seen.
    pub fn count_text(&self, text: &str) -> usize {
        self.events()
            .iter()
            .filter(|v| v["event"] == "message" && v["text"] == text && v["history"] == false)
            .count()
    }

    /// Waits for the process to end (within [`WAIT`]) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        // The process's stdout closes when it ends: wait for that, reading
        // what it still prints, then collect its status.
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not exit.\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let status = self.child.wait().expect("waiting for the process");
        self.check_no_panic();
        status
    }

    /// Fails the test when the process reported a panic on standard error:
    /// tokio catches a panic in a spawned task and the process goes on, so
    /// neither its exit status nor its output would show it otherwise.
    /// Checked when the process is waited for and when it is dropped (after
    /// all of its standard error was read); never while already panicking.
    fn check_no_panic(&self) {
        if std::thread::panicking() {
            return;
        }
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked at"),
            "{} (pid {}) panicked.\nstderr:\n{stderr}\nstdout:\n{}",
            self.name,
            self.pid(),
            self.seen.join("\n")
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process: read what it still said.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.check_no_panic();
    }
}

/// A running server and what it printed at start-up.
pub struct ServerProc {
    pub proc: Proc,
    pub addr: String,
    pub fingerprint: String,
    pub data_dir: PathBuf,
}

impl ServerProc {
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProc {
        Self::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// Starts a server listening on `listen`. A given port (one that a
    /// server before had) may be held for a while by another test's socket
    /// by then: a server that finds its address in use is started again,
    /// for up to [`WAIT`].
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> ServerProc {
        Self::start_in(None, listen, data_dir, extra)
    }

    /// Like [`ServerProc::start_on`], in network namespace `ns` if given.
    pub fn start_in(ns: Option<&str>, listen: &str, data_dir: &Path, extra: &[&str]) -> ServerProc {
        let dir = data_dir.to_str().unwrap();
        let mut args = vec!["server", "--listen", listen, "--data-dir", dir];
        args.extend_from_slice(extra);
        let deadline = Instant::now() + WAIT;
        let listening = |l: &str| l.contains("listening on");
        let (mut proc, line) = loop {
            let mut proc = match ns {
                Some(ns) => Proc::spawn_in(ns, "server", &args),
                None => Proc::spawn("server", &args),
            };
            let why = match proc.next_line(WAIT, listening) {
                Ok(line) => break (proc, line),
                Err(why) => why,
            };
            if why == RecvTimeoutError::Disconnected {
                proc.wait_exit(); // all of its standard error
            }
            let in_use =
                proc.stderr().contains("cannot listen on") && proc.stderr().contains("in use");
            assert!(
                in_use && Instant::now() < deadline,
                "server on {listen} did not start ({why:?}).\nstdout:\n{}\nstderr:\n{}",
                proc.seen.join("\n"),
                proc.stderr()
            );
            // Give the port's holder a moment before trying again.
            std::thread::sleep(Duration::from_millis(100));
        };
        let addr = line.rsplit(' ').next().unwrap().to_string();
        let line = proc.wait_line("fingerprint line", |l| {
            l.starts_with("certificate fingerprint")
        });
        let fingerprint = line.rsplit(' ').next().unwrap().to_string();
        ServerProc {
            proc,
            addr,
            fingerprint,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Types an admin command at the console.
    pub fn console(&mut self, line: &str) {
        self.proc.send(line);
    }

    pub fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }
}

/// Starts `chatdrop client --json` as `user` against `server`, with its own
/// data directory under `root`.
pub fn client(server: &ServerProc, root: &Path, user: &str, extra: &[&str]) -> Proc {
    client_in(server, &root.join(user), user, extra)
}

pub fn client_in(server: &ServerProc, dir: &Path, user: &str, extra: &[&str]) -> Proc {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "client",
        "--json",
        "--server",
        &server.addr,
        "--user",
        user,
        "--data-dir",
        dir,
    ];
    args.extend_from_slice(extra);
    Proc::spawn(user, &args)
}

/// A client already in `room` (created with `--create` when `create`).
pub fn joined(server: &ServerProc, root: &Path, user: &str, room: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--room", room];
    args.extend_from_slice(extra);
    let mut c = client(server, root, user, &args);
    c.expect("joined", &[("room", Value::from(room))]);
    c
}

/// The network key the tests' servers share.
pub const NETWORK_KEY: &str = "test-network-key-0123456789";

impl ServerProc {
    /// Starts a server of the test network named `name`, linking to `links`.
    pub fn linked(data_dir: &Path, name: &str, links: &[&str], extra: &[&str]) -> ServerProc {
        Self::linked_on("127.0.0.1:0", data_dir, name, links, extra)
    }

    /// Like [`ServerProc::linked`], listening on `listen`.
    pub fn linked_on(
        listen: &str,
        data_dir: &Path,
        name: &str,
        links: &[&str],
        extra: &[&str],
    ) -> ServerProc {
        let mut args = vec!["--name", name, "--network-key", NETWORK_KEY];
        for l in links {
            args.push("--link");
            args.push(l);
        }
        args.extend_from_slice(extra);
        let mut s = Self::start_on(listen, data_dir, &args);
        s.proc.name = name.to_string();
        s
    }

    /// Waits until the server says it holds the state of `n` reachable
    /// servers, all there are.
    pub fn wait_in_sync(&mut self, n: usize) {
        let want = format!("{n}/{n} reachable servers in sync");
        self.proc
            .wait_line(&want, |l| l.starts_with("[network]") && l.ends_with(&want));
    }

    /// Waits until the server knows room `room` (created anywhere in the
    /// network), asking its console. Bounded by [`WAIT`].
    pub fn wait_room(&mut self, room: &str) {
        let deadline = Instant::now() + WAIT;
        let prefix = format!("{room} (");
        loop {
            self.console("rooms");
            let line = self.proc.wait_line("rooms answer", |l| {
                l.starts_with(&prefix) || l == "no rooms" || l.contains(" members): ")
            });
            if line.starts_with(&prefix) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: room {room} never arrived",
                self.proc.name
            );
            // Let the other servers' news arrive before asking again.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The console's `network` line about server `name`.
    pub fn route_to(&mut self, name: &str) -> String {
        self.console("network");
        let prefix = format!("{name} (");
        self.proc
            .wait_line("network answer", |l| l.starts_with(&prefix))
    }
}

/// A TCP relay for tests: forwards to a target, optionally delaying every
/// chunk each way, and can cut every connection (and refuse new ones) until
/// healed: a network split, or a distant server, on loopback.
pub struct Proxy {
    pub addr: String,
    state: Arc<ProxyState>,
}

struct ProxyState {
    open: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    conns: Mutex<Vec<std::net::TcpStream>>,
}

impl Proxy {
    pub fn start(target: &str, delay: Duration) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(ProxyState {
            open: true.into(),
            stop: false.into(),
            conns: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let target = target.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = conn else { continue };
                if !st.open.load(Ordering::SeqCst) {
                    continue; // dropped: the far side is unreachable
                }
                let Ok(up) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(down.try_clone().unwrap());
                    conns.push(up.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        use std::io::Read;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if !delay.is_zero() {
                                std::thread::sleep(delay); // the emulated distance
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, state }
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.state.open.store(false, Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.state
            .open
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// `user`'s share folder under `root`, holding `files`, and its download
/// folder, as arguments.
pub fn folders(root: &Path, user: &str, files: &[(&str, &[u8])]) -> (String, String) {
    let share = root.join(format!("{user}-share"));
    std::fs::create_dir_all(&share).unwrap();
    for (name, data) in files {
        let path = share.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let share = share.to_str().unwrap().to_string();
    let downloads = root.join(format!("{user}-downloads"));
    (share, downloads.to_str().unwrap().to_string())
}

/// A client in `room` with its own share folder holding `files`.
pub fn sharer(
    server: &ServerProc,
    root: &Path,
    user: &str,
    room: &str,
    files: &[(&str, &[u8])],
    extra: &[&str],
) -> Proc {
    let (share, downloads) = folders(root, user, files);
    let mut args = vec!["--share-dir", &share, "--download-dir", &downloads];
    args.extend_from_slice(extra);
    joined(server, root, user, room, &args)
}

/// Asserts that `event` carries exactly `fields` besides `event`, and that
/// docs/EVENTS.md lists each of them for its kind: the `--json` contract.
pub fn assert_documented(event: &Value, fields: &[&str]) {
    let kind = event["event"].as_str().expect("an event");
    assert_keys(event, "event", fields);
    let listed = documented(kind);
    for f in fields {
        assert!(
            listed.contains(&format!("`{f}`")),
            "docs/EVENTS.md does not list `{f}` for {kind}: {listed}"
        );
    }
}

/// Asserts that each entry of the list `event[list]` carries exactly
/// `fields`, and that docs/EVENTS.md shows them so (`[{a, b}]`, in order).
pub fn assert_documented_entries(event: &Value, list: &str, fields: &[&str]) {
    let kind = event["event"].as_str().expect("an event");
    let entries = event[list].as_array().expect("a list");
    assert!(!entries.is_empty(), "{kind}: no {list} to check in {event}");
    for entry in entries {
        assert_keys(entry, "", fields);
    }
    let shape = format!("`{list}`: `[{{{}}}]`", fields.join(", "));
    let listed = documented(kind);
    assert!(
        listed.contains(&shape),
        "docs/EVENTS.md does not show {shape} for {kind}: {listed}"
    );
}

fn assert_keys(v: &Value, besides: &str, fields: &[&str]) {
    let mut got: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .filter(|k| *k != besides)
        .collect();
    got.sort_unstable();
    let mut want = fields.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "the fields of {v}");
}

/// The fields cell of `kind`'s row in docs/EVENTS.md.
pub fn documented(kind: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/EVENTS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let name = format!("`{kind}`");
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            (cells.len() > 3 && cells[1].contains(&name)).then(|| cells[2].to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("docs/EVENTS.md has no row for {kind}"))
}

/// The most a transfer followed by [`Proc::expect_progressing`] may take in
/// all, however steadily it moves.
pub const PATIENCE: Duration = Duration::from_secs(300);

impl Proc {
    /// Like [`Proc::expect`], for an event at the end of a transfer that may
    /// take longer than [`WAIT`] on a loaded machine: every
    /// `transfer_progress` event that shows more bytes than the one before
    /// restarts the [`WAIT`] deadline, so a transfer that keeps moving is
    /// waited for (up to [`PATIENCE`]) and one that stalls fails within
    /// [`WAIT`].
    pub fn expect_progressing(&mut self, kind: &str, fields: &[(&str, Value)]) -> Value {
        let matches =
            |v: &Value| v["event"] == kind && fields.iter().all(|(k, want)| &v[*k] == want);
        let what = format!("{kind} {fields:?} (or progress)");
        let start = Instant::now();
        let (mut bytes, mut moved) = (None, start);
        loop {
            let v = self.wait_event(&what, |v| matches(v) || v["event"] == "transfer_progress");
            if matches(&v) {
                return v;
            }
            let now = v["bytes"].as_u64();
            if now > bytes {
                (bytes, moved) = (now, Instant::now());
            }
            assert!(
                moved.elapsed() < WAIT,
                "{}: the transfer stopped moving at {bytes:?} bytes",
                self.name
            );
            assert!(
                start.elapsed() < PATIENCE,
                "{}: no {kind} within {PATIENCE:?}",
                self.name
            );
        }
    }
}

/// A temporary directory, deleted when dropped.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `len` bytes that are always the same for `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut d = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut d);
    d
}
