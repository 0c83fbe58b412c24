//! A peer the test drives step by step, built from chatdrop's own pieces:
//! the client's login, the protocol's messages and the transfer's sessions.
//! It asks for and offers files as a `chatdrop client` does, or forges what
//! a client never would: a request signed with another key, an offer
//! altered after it was signed, an offer that differs from its `whohas`
//! answer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chatdrop_arq::{Config, Scheme};
use chatdrop_proto::auth::{offer_transcript, request_transcript};
use chatdrop_proto::{ClientMsg, FileAnswer, Offer, ServerMsg};
use chatdrop_transfer::{
    fetch, serve, Download, FetchOptions, Role, ServeOptions, SessionKeys, Source, TransferError,
    TransferStats,
};
use ed25519_dalek::{Signer, SigningKey};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use x25519_dalek::{PublicKey, StaticSecret};

use super::{ServerProc, WAIT};

/// Seconds of silence after which the peer's own sessions fail.
const SILENCE: Duration = Duration::from_secs(5);

/// A logged-in peer in a room.
pub struct RawPeer {
    pub name: String,
    /// Its identity key, as the server bound it to `name`.
    pub key: SigningKey,
    rt: tokio::runtime::Runtime,
    out: mpsc::UnboundedSender<ClientMsg>,
    msgs: Receiver<ServerMsg>,
}

/// A file request that reached the peer as an owner.
#[derive(Debug, Clone)]
pub struct Request {
    pub req: u64,
    pub from: String,
    pub file: String,
    pub eph: [u8; 32],
    /// The asker's IP as the server sees it.
    pub from_ip: std::net::IpAddr,
}

/// An accepted request: the offer (signed) and what serving it needs.
pub struct Deal {
    pub offer: Offer,
    socket: UdpSocket,
    keys: SessionKeys,
}

/// A request this peer sent as an asker.
pub struct Asked {
    pub owner: String,
    pub file: String,
    eph: StaticSecret,
}

/// Session keys from the ephemeral X25519 exchange, bound to the offer
/// transcript (docs/PROTOCOL.md, "Finding and fetching files").
fn session_keys(
    mine: &StaticSecret,
    theirs: &[u8; 32],
    session: [u8; 8],
    transcript: &[u8],
    role: Role,
) -> SessionKeys {
    let shared = mine.diffie_hellman(&PublicKey::from(*theirs));
    SessionKeys::derive(
        shared.as_bytes(),
        session,
        &Sha256::digest(transcript),
        role,
    )
}

impl RawPeer {
    /// Logs in to `server` as `name` with a new identity key and joins
    /// `room`. A background task keeps the connection alive (pings), sends
    /// what [`RawPeer::send`] queues and hands every message from the
    /// server to [`RawPeer::expect`].
    pub fn join(server: &ServerProc, name: &str, room: &str) -> RawPeer {
        let mut peer = Self::login(server, name);
        peer.send(ClientMsg::JoinRoom {
            room: room.to_string(),
            password: None,
        });
        peer.expect("joined", |m| matches!(m, ServerMsg::Joined { .. }));
        peer
    }

    /// Like [`RawPeer::join`], making the (public) room first.
    pub fn create(server: &ServerProc, name: &str, room: &str) -> RawPeer {
        let mut peer = Self::login(server, name);
        peer.send(ClientMsg::CreateRoom {
            room: room.to_string(),
            password: None,
        });
        peer.expect("joined", |m| matches!(m, ServerMsg::Joined { .. }));
        peer
    }

    /// Logs in to `server` as `name`, in no room.
    pub fn login(server: &ServerProc, name: &str) -> RawPeer {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::login_key(server, name, key).unwrap_or_else(|e| panic!("{name} cannot log in: {e}"))
    }

    /// Logs in to `server` as `name` with identity `key`, in no room; or
    /// the server's refusal.
    pub fn login_key(
        server: &ServerProc,
        name: &str,
        key: SigningKey,
    ) -> Result<RawPeer, chatdrop_client::ConnectError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pinned = Some(server.fingerprint.clone());
        let mut session =
            rt.block_on(chatdrop_client::connect(&server.addr, name, &key, pinned))?;
        let (out, mut queued) = mpsc::unbounded_channel::<ClientMsg>();
        let (tx, msgs) = channel();
        rt.spawn(async move {
            let mut ping = tokio::time::interval(Duration::from_secs(3));
            let mut closed = false;
            loop {
                tokio::select! {
                    frame = session.frames.next() => {
                        let Some(Ok(payload)) = frame else { break };
                        let Ok(msg) = chatdrop_proto::decode::<ServerMsg>(&payload) else {
                            break;
                        };
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    msg = queued.recv(), if !closed => {
                        let Some(msg) = msg else { break };
                        // The server may close while this peer still has
                        // things to send: stop sending, read what it said.
                        closed = session.send(&msg).await.is_err();
                    }
                    _ = ping.tick(), if !closed => {
                        closed = session.send(&ClientMsg::Ping).await.is_err();
                    }
                }
            }
        });
        Ok(RawPeer {
            name: name.to_string(),
            key,
            rt,
            out,
            msgs,
        })
    }

    /// Queues a message to the server.
    pub fn send(&self, msg: ClientMsg) {
        self.out.send(msg).expect("the connection is open");
    }

    /// Queues each message, as a flooder would, and stops once the server
    /// has closed the connection (which may come before the last).
    pub fn flood(&self, msgs: impl IntoIterator<Item = ClientMsg>) {
        for msg in msgs {
            if self.out.send(msg).is_err() {
                return;
            }
        }
    }

    /// Waits (within [`WAIT`]) for a message matching `pred`, passing over
    /// the others.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.msgs.recv_timeout(left) {
                Ok(m) if pred(&m) => return m,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} within {WAIT:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: the connection ended before {what}", self.name)
                }
            }
        }
    }

    /// Every message up to and including the first that matches `pred`
    /// (within [`WAIT`]).
    pub fn until(&mut self, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> Vec<ServerMsg> {
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.msgs.recv_timeout(left) {
                Ok(m) => {
                    let done = pred(&m);
                    got.push(m);
                    if done {
                        return got;
                    }
                }
                Err(e) => panic!("{}: no {what} within {WAIT:?} ({e:?})", self.name),
            }
        }
    }

    /// Waits (within [`WAIT`]) for the server to close the connection;
    /// returns what it sent until then.
    pub fn expect_closed(&mut self) -> Vec<ServerMsg> {
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.msgs.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(RecvTimeoutError::Disconnected) => return got,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: still connected after {WAIT:?}: {got:?}", self.name)
                }
            }
        }
    }

    /// Answers the next `whohas` with this size and hash.
    pub fn have(&mut self, size: u64, blake3: [u8; 32]) {
        let ServerMsg::WhoHas { from, file } =
            self.expect("whohas", |m| matches!(m, ServerMsg::WhoHas { .. }))
        else {
            unreachable!()
        };
        self.send(ClientMsg::HaveFile {
            to: from,
            file,
            size,
            blake3,
        });
    }

    /// Asks `owner` for `file`, the request signed by `signer` over the
    /// transcript of a request to `signed_for` (a genuine request: this
    /// peer's own key, and `signed_for` = `owner`).
    pub fn ask(&self, owner: &str, file: &str, signer: &SigningKey, signed_for: &str) -> Asked {
        let eph = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let eph_pub = PublicKey::from(&eph).to_bytes();
        let sig = signer.sign(&request_transcript(
            &self.name,
            signed_for,
            file,
            None,
            &eph_pub,
            &[],
        ));
        self.send(ClientMsg::GetFile {
            owner: owner.to_string(),
            file: file.to_string(),
            offer: None,
            eph: eph_pub,
            sig: sig.to_bytes().to_vec(),
            candidates: Vec::new(),
        });
        Asked {
            owner: owner.to_string(),
            file: file.to_string(),
            eph,
        }
    }

    /// Waits for the owner's answer to `asked`: its offer (with the address
    /// to fetch from), or the refusal.
    pub fn answer_to(&mut self, asked: &Asked) -> ServerMsg {
        let what = format!("an answer from {} for {}", asked.owner, asked.file);
        self.expect(&what, |m| match m {
            ServerMsg::FileOffer { from, file, .. }
            | ServerMsg::TransferRefused { from, file, .. } => {
                from == &asked.owner && file == &asked.file
            }
            _ => false,
        })
    }

    /// Fetches what `offer` (a `FileOffer` answering `asked`) offers into
    /// `dir`, as a client does, and returns where the file was saved.
    pub fn fetch(
        &self,
        asked: &Asked,
        offer: &ServerMsg,
        dir: &Path,
    ) -> Result<PathBuf, TransferError> {
        let ServerMsg::FileOffer {
            from, addr, offer, ..
        } = offer
        else {
            panic!("not an offer: {offer:?}")
        };
        let my_pub = PublicKey::from(&asked.eph).to_bytes();
        let transcript = offer_transcript(from, &self.name, &asked.file, &my_pub, offer);
        let keys = session_keys(
            &asked.eph,
            &offer.eph,
            offer.session,
            &transcript,
            Role::Receiver,
        );
        let cfg = Config::announced(offer.selective_repeat, offer.window, offer.mss, SILENCE);
        let download = Download::open(dir, &asked.file, offer.size, offer.blake3)?;
        self.rt.block_on(async {
            let socket = chatdrop_transfer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let opts = FetchOptions { cfg };
            fetch(&socket, *addr, keys, &download, &opts, |_, _| {}).await
        })?;
        download.finish().map(|(path, _)| path)
    }

    /// Waits for a file request.
    pub fn request(&mut self) -> Request {
        let ServerMsg::FileRequest {
            req,
            from,
            file,
            eph,
            from_ip,
            ..
        } = self.expect("a file request", |m| {
            matches!(m, ServerMsg::FileRequest { .. })
        })
        else {
            unreachable!()
        };
        Request {
            req,
            from,
            file,
            eph,
            from_ip,
        }
    }

    /// A genuine offer for `r` of a file of `size` bytes with hash `blake3`,
    /// signed with this peer's key, with a socket bound to serve it.
    pub fn deal(&self, r: &Request, size: u64, blake3: [u8; 32]) -> Deal {
        let _rt = self.rt.enter();
        let socket = chatdrop_transfer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let my_eph = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let mut offer = Offer {
            size,
            blake3,
            port: socket.local_addr().unwrap().port(),
            eph: PublicKey::from(&my_eph).to_bytes(),
            session: rand::random(),
            selective_repeat: true,
            window: chatdrop_arq::DEFAULT_WINDOW,
            mss: chatdrop_transfer::MAX_MSS,
            asker_ip: r.from_ip,
            candidates: Vec::new(),
            observed: None,
            sig: Vec::new(),
        };
        let transcript = offer_transcript(&self.name, &r.from, &r.file, &r.eph, &offer);
        let keys = session_keys(&my_eph, &r.eph, offer.session, &transcript, Role::Sender);
        self.sign(r, &self.key, &mut offer);
        Deal {
            offer,
            socket,
            keys,
        }
    }

    /// Signs `offer` for request `r` with `key`.
    pub fn sign(&self, r: &Request, key: &SigningKey, offer: &mut Offer) {
        let transcript = offer_transcript(&self.name, &r.from, &r.file, &r.eph, offer);
        offer.sig = key.sign(&transcript).to_bytes().to_vec();
    }

    /// Answers request `r` with `offer`.
    pub fn accept(&self, r: &Request, offer: Offer) {
        self.send(ClientMsg::FileAnswer {
            req: r.req,
            answer: FileAnswer::Accept(offer),
        });
    }

    /// Serves `deal` from `file` in the background, as an owner does. With
    /// `cut`, only the first `cut` bytes of the file can be read (the rest
    /// of a copy is cut off once it is opened): the session fails when it
    /// reaches them, the socket closes, and the asker hears nothing more, as
    /// from an owner whose client was killed mid-transfer.
    pub fn serve(
        &self,
        deal: Deal,
        file: &Path,
        cut: Option<u64>,
    ) -> tokio::task::JoinHandle<Result<TransferStats, TransferError>> {
        let outline = chatdrop_transfer::hash_file(file).unwrap();
        assert_eq!(outline.size(), deal.offer.size, "the file offered");
        let source = match cut {
            None => Source::open(file, &outline).unwrap(),
            Some(cut) => {
                let copy = file.with_extension(format!("cut-{cut}"));
                std::fs::copy(file, &copy).unwrap();
                let source = Source::open(&copy, &outline).unwrap();
                let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
                f.set_len(cut).unwrap();
                source
            }
        };
        let mut cfg = Config::new(Scheme::SelectiveRepeat, deal.offer.window);
        cfg.idle_timeout = SILENCE;
        cfg.mss = deal.offer.mss;
        let opts = ServeOptions {
            cfg,
            wait_for_start: Some(WAIT),
            peer_ips: vec![deal.offer.asker_ip],
            punch: Vec::new(),
            later_peer_ips: None,
        };
        self.rt.spawn(async move {
            let Deal { socket, keys, .. } = deal;
            serve(&socket, keys, &source, &opts, |_, _| {}).await
        })
    }

    /// Waits for a task [`RawPeer::serve`] started.
    pub fn finish<T>(&self, task: tokio::task::JoinHandle<T>) -> T {
        self.rt.block_on(task).unwrap()
    }
}
