//! File requests between peers: answering `whohas`, asking with `getfile`,
//! accepting or refusing requests, and running the uploads and downloads.
//!
//! The server only brokers: it passes requests and offers between members
//! of a room, with each side's identity key. The key exchange rides on them:
//! the asker signs an ephemeral X25519 key with its identity key; the owner
//! checks that, and signs its own ephemeral key together with the offer;
//! the asker checks that. Both then derive the session keys from the X25519
//! shared secret (HKDF-SHA256, bound to the whole signed offer), and the
//! file moves peer to peer over UDP.
//!
//! Each side first opens the UDP socket of the transfer and asks its
//! server where it sees it (`paths.rs`): the request and the offer carry
//! each side's candidate addresses, signed with the rest, and the session
//! opens on the first pair that answers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatdrop_arq::{Config, Scheme};
use chatdrop_proto::auth::{offer_transcript, request_transcript};
use chatdrop_proto::{ClientMsg, FileAnswer, Offer, OfferedFile, RefuseReason, ServerMsg};
use chatdrop_transfer::outline::Outline;
use chatdrop_transfer::{
    fetch_from, serve, Candidates, Download, FetchOptions, LaterIps, Role, ServeOptions,
    SessionKeys, Source, TransferError,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::event::{arq_name, ClientEvent, ErrorKind};
use crate::offers::{self, SharedOffers, MAX_OFFER_UPLOADS};
use crate::paths::{self, Observations, Outgoing, Own};
use crate::relay::{Hook, RelayPlace, RelayedAt, Relays, RELAY_AFTER};
use crate::session::Session;
use crate::shares::Shares;
use crate::swarm::{Next, Swarm, MAX_SOURCES};

/// How this client transfers files.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// The share folder.
    pub share_dir: PathBuf,
    /// Where downloads go.
    pub download_dir: PathBuf,
    /// ARQ scheme used when sending.
    pub scheme: Scheme,
    /// Window used when sending, in packets.
    pub window: u32,
    /// Uploads at once; more requests are refused as busy.
    pub max_uploads: usize,
    /// Seconds of silence after which a transfer fails.
    pub timeout: Duration,
    /// Users whose offers are accepted without asking.
    pub auto_accept: Vec<String>,
}

/// A `share` command (`@me ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareCommand {
    /// `@me setshare FILE`.
    Set(String),
    /// `@me clrshare FILE`.
    Clear(String),
    /// `@me setglobalshare`.
    SetGlobal,
    /// `@me clrglobalshare`.
    ClearGlobal,
    /// `@me getsharestatus`.
    Status,
}

/// A peer that answered `whohas`, with the size and hash it announced.
#[derive(Debug, Clone)]
struct Holder {
    user: String,
    size: u64,
    hash: [u8; 32],
}

/// A `getfile` waiting for its offer.
struct Asking {
    eph: StaticSecret,
    /// The size and hash the owner announced in `whohas`, if it did.
    expect: Option<(u64, [u8; 32])>,
    /// The socket the request's candidates are addresses of.
    socket: UdpSocket,
    /// Its UDP reaches the server (a relay's leg can be UDP).
    reached: bool,
    /// The rest of the offer this file is of, to fetch after it.
    fetch: Option<Fetch>,
}

/// What a request is for: the owner, the file, and the offer of files
/// (`/send`) it is of, if any (a file of an offer and one of the owner's
/// share folder may have one name).
type AskKey = (String, String, Option<u64>);

/// Requests sent, by [`AskKey`]: filled by the tasks that prepare them,
/// emptied by offers and refusals.
type AskingMap = Arc<Mutex<HashMap<AskKey, Asking>>>;

fn lock(map: &AskingMap) -> std::sync::MutexGuard<'_, HashMap<AskKey, Asking>> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a file of an accepted offer waits for its owner's answer
/// before it counts as failed and the offer goes on: the answer may be
/// lost for good (the owner left, the server refused the request for a
/// limit, the connection was replaced).
const OFFER_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Files of an offer asked for at once before the rest are paced, and
/// the pace: under the server's `getfile` limit (1 a second, 10 at once
/// by default), so that many small files do not run into it.
const OFFER_BURST: u32 = 6;
const OFFER_PACE: Duration = Duration::from_millis(1100);
/// Times a file of an offer refused as busy is asked again (after 1, 2
/// and 4 s) before it counts as failed.
const OFFER_BUSY_RETRIES: u32 = 3;

/// Files whose `whohas` answers are remembered at once.
const MAX_ASKED: usize = 64;
/// Answers remembered for one file.
const MAX_HOLDERS: usize = 256;

/// State of this client's file requests.
pub struct Peer {
    opts: TransferOptions,
    shares: Shares,
    /// Who answered `whohas` for each file asked about, in order of
    /// answer: at most [`MAX_ASKED`] files (the oldest question is
    /// forgotten first) and [`MAX_HOLDERS`] answers each, and only for
    /// files this client asked about, so answers nobody asked for cannot
    /// grow it.
    holders: HashMap<String, Vec<Holder>>,
    /// The files in `holders`, oldest question first.
    asked: std::collections::VecDeque<String>,
    /// Owners already asked for each file (so fallback moves on).
    tried: HashMap<String, HashSet<String>>,
    /// Requests sent, by (owner, file).
    asking: AskingMap,
    /// Owners asked for each file whose answer has not come.
    pending: HashMap<String, HashSet<String>>,
    /// Downloads running, by file name.
    swarms: Swarms,
    uploads: Arc<AtomicUsize>,
    events: mpsc::Sender<ClientEvent>,
    /// To the server, from the tasks that prepare requests and offers.
    outgoing: Outgoing,
    /// Observations of this client's sockets waiting for the server.
    observations: Observations,
    /// The current server's address (its UDP port has the same number).
    server: Option<SocketAddr>,
    /// Transfers that may be relayed, and the relays bound.
    relays: Relays,
    /// Offers made and received.
    offers: SharedOffers,
    /// The rest of each offer being fetched, by the id of the download
    /// of its current file.
    fetches: Fetches,
}

impl Peer {
    /// File requests for a client with these options.
    pub fn new(
        opts: TransferOptions,
        data_dir: &std::path::Path,
        events: mpsc::Sender<ClientEvent>,
        outgoing: Outgoing,
    ) -> Result<Peer, crate::ClientError> {
        let shares = Shares::open(&opts.share_dir, data_dir)?;
        Ok(Peer {
            opts,
            shares,
            holders: HashMap::new(),
            asked: std::collections::VecDeque::new(),
            tried: HashMap::new(),
            asking: AskingMap::default(),
            pending: HashMap::new(),
            swarms: Swarms::default(),
            uploads: Arc::new(AtomicUsize::new(0)),
            events,
            outgoing,
            observations: Observations::default(),
            server: None,
            relays: Relays::default(),
            offers: SharedOffers::default(),
            fetches: Fetches::default(),
        })
    }

    /// The server this client is now connected to, at `addr`.
    pub fn set_server(&mut self, addr: SocketAddr) {
        self.server = Some(addr);
    }

    /// The server's `Observed`.
    pub fn observed(&self, token: [u8; 16], addr: SocketAddr) {
        self.observations.answered(token, addr);
    }

    async fn emit(&self, e: ClientEvent) {
        let _ = self.events.send(e).await;
    }

    async fn error(&self, code: ErrorKind, message: String) {
        self.emit(ClientEvent::Error { code, message }).await;
    }

    /// Size and hash of a shared file. Hashing a large file for the first
    /// time takes a while, so it runs where it may block (the client runs on
    /// a multi-threaded runtime).
    fn describe(&mut self, name: &str) -> Result<(PathBuf, Arc<Outline>), RefuseReason> {
        let shares = &mut self.shares;
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| shares.describe(name))
            }
            _ => shares.describe(name),
        }
    }

    /// `@me ...`.
    pub async fn share_command(&mut self, cmd: ShareCommand) {
        let result = match &cmd {
            ShareCommand::Set(f) => self.shares.set_share(f),
            ShareCommand::Clear(f) => self.shares.clear_share(f),
            ShareCommand::SetGlobal => self.shares.set_global(true),
            ShareCommand::ClearGlobal => self.shares.set_global(false),
            ShareCommand::Status => Ok(()),
        };
        match result {
            Ok(()) => {
                let (global, files) = self.shares.status();
                self.emit(ClientEvent::ShareStatus { global, files }).await;
            }
            Err(why) => self.error(ErrorKind::Share, why).await,
        }
    }

    /// `@all whohas FILE` in `room`: forget earlier answers for it and ask.
    pub fn who_has(&mut self, room: String, file: &str) -> ClientMsg {
        self.tried.remove(file);
        self.asked.retain(|f| f != file);
        if self.asked.len() == MAX_ASKED {
            if let Some(oldest) = self.asked.pop_front() {
                self.holders.remove(&oldest);
                self.tried.remove(&oldest);
            }
        }
        self.asked.push_back(file.to_string());
        self.holders.insert(file.to_string(), Vec::new());
        ClientMsg::WhoHas {
            room,
            file: file.into(),
        }
    }

    /// `@USER getfile FILE`: opens the transfer's socket, learns where the
    /// server sees it, and sends the request, signed with those candidate
    /// addresses, in a task of its own. Where `whohas` found other owners
    /// of the same file (same hash and size), up to [`MAX_SOURCES`] in all
    /// are asked at once, and the download takes parts from each (see
    /// `swarm.rs`).
    pub fn get_file(&mut self, me: &str, key: &SigningKey, owner: &str, file: &str) {
        let holders = self.holders.get(file).cloned().unwrap_or_default();
        let expect = holders
            .iter()
            .find(|h| h.user == owner)
            .map(|h| (h.size, h.hash));
        let running = {
            let mut swarms = lock_swarms(&self.swarms);
            swarms.retain(|_, s| !s.is_over());
            swarms.contains_key(&(file.to_string(), None))
        };
        let requester = self.requester(me, key);
        let tried = self.tried.entry(file.to_string()).or_default();
        let mut owners = vec![owner.to_string()];
        if let (Some(same), false) = (expect, running) {
            let others = holders.iter().filter(|h| (h.size, h.hash) == same);
            let others = others.filter(|h| h.user != owner && h.user != me);
            let others = others.filter(|h| !tried.contains(&h.user));
            owners.extend(others.take(MAX_SOURCES - 1).map(|h| h.user.clone()));
        }
        for owner in owners {
            tried.insert(owner.clone());
            (self.pending.entry(file.to_string()).or_default()).insert(owner.clone());
            let expect = holders
                .iter()
                .find(|h| h.user == owner)
                .map(|h| (h.size, h.hash));
            requester.ask(&owner, file, expect, None);
        }
    }

    /// Handles a file-related message from the server, answering through
    /// `s` where one is due. Fails only if writing to the server fails.
    pub async fn on_server(
        &mut self,
        msg: ServerMsg,
        me: &str,
        key: &SigningKey,
        s: &mut Session,
    ) -> std::io::Result<()> {
        match msg {
            ServerMsg::WhoHas { from, file } => {
                // Only shared files are answered; anything else stays quiet.
                if let Ok((_, outline)) = self.describe(&file) {
                    s.send(&ClientMsg::HaveFile {
                        to: from,
                        file,
                        size: outline.size(),
                        blake3: outline.root(),
                    })
                    .await?;
                }
            }
            ServerMsg::HaveFile {
                from,
                file,
                size,
                blake3,
            } => {
                // An answer to a question this client did not ask (or no
                // longer remembers) is dropped unshown.
                let Some(list) = self.holders.get_mut(&file) else {
                    return Ok(());
                };
                if list.len() >= MAX_HOLDERS || list.iter().any(|h| h.user == from) {
                    return Ok(());
                }
                list.push(Holder {
                    user: from.clone(),
                    size,
                    hash: blake3,
                });
                self.emit(ClientEvent::WhohasReply {
                    file,
                    from,
                    size,
                    blake3: hex::encode(blake3),
                })
                .await;
            }
            ServerMsg::FileRequest {
                req,
                from,
                from_key,
                file,
                offer,
                eph,
                sig,
                from_ip,
                candidates,
            } => {
                let asker = Asker {
                    req,
                    name: from,
                    key: from_key,
                    eph,
                    sig,
                    ip: from_ip,
                    candidates,
                };
                if let Some(answer) = self.answer(me, key, asker, &file, offer).await {
                    s.send(&ClientMsg::FileAnswer { req, answer }).await?;
                }
            }
            ServerMsg::FileOffer {
                from,
                from_key,
                file,
                addr,
                offer,
                offered,
            } => {
                let offered = Offered {
                    owner: from,
                    owner_key: from_key,
                    file,
                    addr,
                    offer,
                    of_offer: offered,
                };
                self.on_offer(me, key, offered).await
            }
            ServerMsg::Relay { session, token } => {
                if let Some(server) = self.server {
                    let relay = RelayPlace::Own(server);
                    self.relays.open(session, token, relay, &self.outgoing);
                }
            }
            ServerMsg::RelayAt { session, token, at } => {
                let relay = RelayPlace::Other(at);
                self.relays.open(session, token, relay, &self.outgoing);
            }
            ServerMsg::RelayRefused { session, why } => self.relays.refused(session, why),
            ServerMsg::Tunnel { session, data } => self.relays.tunnel(session, data),
            ServerMsg::FilesOffered { from, offer, files } => {
                return self.offered(me, key, (from, offer, files), s).await;
            }
            ServerMsg::OfferAnswered {
                from,
                offer,
                accept,
            } => {
                let number = {
                    let mut offers = offers::lock(&self.offers);
                    let number = offers.made_to(offer, &from);
                    if number.is_some() && !accept {
                        offers.close(offer);
                    }
                    number
                };
                // An answer to no offer of this client's is dropped.
                let Some(number) = number else {
                    return Ok(());
                };
                self.emit(ClientEvent::OfferAnswered {
                    offer: number,
                    to: from,
                    accepted: accept,
                })
                .await;
            }
            ServerMsg::TransferRefused {
                from,
                file,
                reason,
                detail,
                offered,
            } => {
                let asked = lock(&self.asking).remove(&(from.clone(), file.clone(), offered));
                let others_asked = offered.is_none() && !self.answered(&file, &from).is_empty();
                self.emit(ClientEvent::TransferRefused {
                    file: file.clone(),
                    from: from.clone(),
                    reason: reason.as_str().into(),
                    detail: detail.clone(),
                })
                .await;
                // A file of an offer: asked again if the owner is busy,
                // else the offer goes on with the next.
                if let Some(fetch) = asked.and_then(|a| a.fetch) {
                    let busy = reason == RefuseReason::Busy;
                    self.requester(me, key).refused(fetch, busy);
                    return Ok(());
                }
                let running = lock_swarms(&self.swarms)
                    .get(&(file.clone(), offered))
                    .cloned();
                if let Some(swarm) = running {
                    // A download from several owners: another takes its
                    // place, if one is left.
                    let busy = reason == RefuseReason::Busy;
                    let next = swarm.refused(&from, &detail, busy);
                    let requester = self.requester(me, key);
                    act(next, &swarm, &requester, &self.events).await;
                } else if reason != RefuseReason::Blocked && offered.is_none() {
                    self.next_peer(me, key, &from, &file, others_asked).await;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// After a refusal: ask the next peer that announced the same file.
    /// With none left, that is an error, unless `others_asked` may still
    /// offer it.
    async fn next_peer(
        &mut self,
        me: &str,
        key: &SigningKey,
        refused: &str,
        file: &str,
        others_asked: bool,
    ) {
        let holders = self.holders.get(file).cloned().unwrap_or_default();
        let same = holders.iter().find(|h| h.user == refused).map(|h| h.hash);
        let tried = self.tried.get(file).cloned().unwrap_or_default();
        let next = holders
            .iter()
            .find(|h| !tried.contains(&h.user) && same.is_none_or(|x| x == h.hash));
        match next {
            Some(h) => {
                let user = h.user.clone();
                self.emit(ClientEvent::ServerNotice {
                    text: format!("{refused} refused {file}; asking {user}, who also has it"),
                })
                .await;
                let expect = Some((h.size, h.hash));
                self.tried
                    .entry(file.to_string())
                    .or_default()
                    .insert(user.clone());
                (self.pending.entry(file.to_string()).or_default()).insert(user.clone());
                self.requester(me, key).ask(&user, file, expect, None);
            }
            None if holders.is_empty() || others_asked => {} // nothing to fall back on, or no need
            None => {
                self.error(
                    ErrorKind::NoPeerLeft,
                    format!("no other peer has {file}; ask again with @all whohas {file}"),
                )
                .await;
            }
        }
    }

    /// Decides on a request: a refusal at once; on acceptance, the offer
    /// goes out from the task that then serves the file (it first learns
    /// where the server sees the upload's socket), and this returns `None`.
    async fn answer(
        &mut self,
        me: &str,
        key: &SigningKey,
        asker: Asker,
        file: &str,
        offer: Option<u64>,
    ) -> Option<FileAnswer> {
        let refuse = |reason| Some(FileAnswer::Refuse(reason));
        let transcript =
            request_transcript(&asker.name, me, file, offer, &asker.eph, &asker.candidates);
        let genuine = VerifyingKey::from_bytes(&asker.key).ok().is_some_and(|k| {
            Signature::from_slice(&asker.sig)
                .is_ok_and(|sig| k.verify_strict(&transcript, &sig).is_ok())
        });
        if !genuine {
            tracing::warn!(
                asker = asker.name,
                file,
                "a file request with a bad signature was refused"
            );
            return refuse(RefuseReason::NotShared);
        }
        // A file of an offer is served to its receiver only, without an
        // upload slot (the user chose to send it), a few at a time; one
        // of the share folder, to anyone who asks, in a slot.
        let ((path, outline, modified), (slots, limit)) = match offer {
            Some(id) => match offers::lock(&self.offers).serve(id, &asker.name, file) {
                Ok((f, serving)) => (
                    (f.path, f.outline, Some(f.modified)),
                    (serving, MAX_OFFER_UPLOADS),
                ),
                Err(reason) => return refuse(reason),
            },
            None => match self.describe(file) {
                Ok((path, outline)) => (
                    (path, outline, None),
                    (self.uploads.clone(), self.opts.max_uploads),
                ),
                Err(reason) => return refuse(reason),
            },
        };
        // Take a slot, or refuse as busy.
        if slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return refuse(RefuseReason::Busy);
        }
        let release = SlotGuard(slots);
        // Both families: the asker is told the address the server sees,
        // which is IPv6 when this client reached its server over IPv6.
        let socket = match chatdrop_transfer::bind_dual(0) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot open a UDP socket: {e}");
                return refuse(RefuseReason::Busy);
            }
        };
        let (size, blake3) = (outline.size(), outline.root());
        let opened = match modified {
            Some(modified) => Source::open_unchanged(&path, &outline, modified),
            None => Source::open(&path, &outline),
        };
        let source = match opened {
            Ok(s) => s,
            Err(_) => return refuse(RefuseReason::NotFound),
        };
        let mut cfg = Config::new(self.opts.scheme, self.opts.window);
        cfg.idle_timeout = self.opts.timeout;
        // The largest packet offered; the session finds what the path carries.
        cfg.mss = chatdrop_transfer::MAX_MSS;
        let upload = Upload {
            me: me.to_string(),
            key: key.clone(),
            asker,
            file: file.to_string(),
            size,
            blake3,
            socket,
            source,
            cfg,
            selective_repeat: self.opts.scheme == Scheme::SelectiveRepeat,
            release,
            server: self.server,
            outgoing: self.outgoing.clone(),
            observations: self.observations.clone(),
            events: self.events.clone(),
            relays: self.relays.clone(),
        };
        tokio::spawn(upload.run());
        None
    }

    /// An owner's offer of a file asked for: the download starts, or
    /// joins the one running. For a file of an offer (`/send`) that does
    /// not start, the offer goes on with its next file.
    async fn on_offer(&mut self, me: &str, key: &SigningKey, offered: Offered) {
        let asked = (
            offered.owner.clone(),
            offered.file.clone(),
            offered.of_offer,
        );
        let Some(mut asking) = lock(&self.asking).remove(&asked) else {
            return; // not asked for, or already answered
        };
        let mut fetch = asking.fetch.take();
        self.start_download(me, key, offered, asking, &mut fetch)
            .await;
        if let Some(fetch) = fetch {
            self.requester(me, key).failed(fetch);
        }
    }

    /// Starts the download an offer answers (see [`Peer::on_offer`]);
    /// `fetch`, the rest of a `/send` offer, is taken if it does.
    async fn start_download(
        &mut self,
        me: &str,
        key: &SigningKey,
        offered: Offered,
        asking: Asking,
        fetch: &mut Option<Fetch>,
    ) {
        let Offered {
            owner,
            owner_key,
            file,
            addr,
            offer,
            of_offer,
        } = offered;
        let my_pub = PublicKey::from(&asking.eph).to_bytes();
        let transcript = offer_transcript(&owner, me, &file, &my_pub, &offer);
        let genuine = VerifyingKey::from_bytes(&owner_key).ok().is_some_and(|k| {
            Signature::from_slice(&offer.sig)
                .is_ok_and(|sig| k.verify_strict(&transcript, &sig).is_ok())
        });
        let id = hex::encode(offer.session);
        let fail = {
            let (id, file, owner) = (id.clone(), file.clone(), owner.clone());
            move |reason: String| ClientEvent::TransferFailed {
                id: id.clone(),
                file: file.clone(),
                from: owner.clone(),
                reason,
            }
        };
        if !genuine {
            self.emit(fail("the offer is not signed by the owner's key".into()))
                .await;
            return;
        }
        // The owner signs its offer, but must offer what it announced.
        let differs = asking.expect.and_then(|(size, hash)| {
            let hash_differs = (hash != offer.blake3).then_some("hash");
            hash_differs.or((size != offer.size).then_some("size"))
        });
        if let Some(what) = differs {
            let why = format!("the offer's {what} differs from the one announced");
            self.emit(fail(why)).await;
            return;
        }
        if offer.window == 0
            || offer.window > chatdrop_arq::MAX_WINDOW
            || offer.mss == 0
            || offer.mss > chatdrop_transfer::MAX_MSS
        {
            self.emit(fail(
                "the offer's window or packet size is out of range".into(),
            ))
            .await;
            return;
        }
        let keys = session_keys(&asking.eph, &offer.eph, &offer, &transcript, Role::Receiver);
        let swarm = self
            .swarm_for(me, &owner, &file, &id, &offer, of_offer)
            .await;
        let begun = swarm.as_ref().and_then(|s| s.begin(&owner));
        let (Some(swarm), Some((mut region, got))) = (swarm.clone(), begun) else {
            // The offer goes unused (the others sent it all, or the
            // download ended or cannot be): the owner is told, so that
            // its upload slot is free at once rather than when it gives
            // up waiting for a `Start`.
            let at = paths::owner_candidates(addr, &offer);
            let socket = asking.socket;
            tokio::spawn(async move { chatdrop_transfer::decline(&socket, keys, &at).await });
            // Nothing was left to fetch (an empty file, or every part
            // here from an earlier attempt): the download is done.
            if let Some(swarm) = swarm.filter(|s| s.complete_already()) {
                if let Some(f) = fetch.take() {
                    lock_fetches(&self.fetches).insert(swarm.id.clone(), f);
                }
                let requester = self.requester(me, key);
                act(Next::Finish, &swarm, &requester, &self.events).await;
            }
            return;
        };
        let cfg = Config::announced(
            offer.selective_repeat,
            offer.window,
            offer.mss,
            self.opts.timeout,
        );
        let events = self.events.clone();
        let session = offer.session;
        let socket = Arc::new(asking.socket);
        let reached = asking.reached;
        // Where no direct path opens, the relay: it comes as one more
        // address of the owner's, or as a refusal that ends the wait.
        let (more_tx, mut more) = mpsc::channel(4);
        let (refused_tx, refused) = oneshot::channel();
        let relayed = RelayedAt::default();
        let hook = Hook {
            socket: socket.clone(),
            udp: reached,
            more: Some(more_tx),
            refused: Some(refused_tx),
            at: relayed.clone(),
            allow: None,
        };
        self.relays.add(session, hook);
        let opened = Arc::new(AtomicBool::new(false));
        // Said once the owner answers at one of its addresses, with the
        // path that did.
        let started = {
            let (events, id, file, owner) = (
                events.clone(),
                swarm.id.clone(),
                file.clone(),
                owner.clone(),
            );
            let (size, resumed_from) = (offer.size, swarm.resumed());
            let offer = offer.clone();
            let (relayed, opened) = (relayed.clone(), opened.clone());
            move |at: SocketAddr| {
                opened.store(true, Ordering::SeqCst);
                let through = *relayed.lock().unwrap_or_else(|p| p.into_inner());
                let path = match through {
                    Some((relay, leg)) if relay == at => leg.path_name(),
                    _ => paths::path_name(at, addr, &offer),
                };
                let _ = events.try_send(ClientEvent::TransferStarted {
                    id,
                    file,
                    from: owner,
                    size,
                    resumed_from,
                    path: path.to_string(),
                    addr: SocketAddr::new(at.ip().to_canonical(), at.port()).to_string(),
                    arq: arq_name(offer.selective_repeat).into(),
                });
            }
        };
        let at = paths::owner_candidates(addr, &offer);
        let (outgoing, relays) = (self.outgoing.clone(), self.relays.clone());
        let requester = self.requester(me, key);
        // The rest of an offer waits for this download's end.
        if let Some(f) = fetch.take() {
            lock_fetches(&self.fetches).insert(swarm.id.clone(), f);
        }
        tokio::spawn(async move {
            let progress = {
                let (swarm, from) = (swarm.clone(), region.from());
                move |done: u64, _: u64| {
                    got.store(from + done, Ordering::Relaxed);
                    swarm.progress(false);
                }
            };
            let from = Candidates {
                at: &at,
                opened: started,
                more: Some(&mut more),
            };
            let opts = FetchOptions { cfg };
            let fetch = fetch_from(&socket, from, keys, &mut region, &opts, progress);
            // Without UDP to the server, a direct path is unlikely: the
            // relay is asked for at once (a direct path may still win).
            let wait = if reached { RELAY_AFTER } else { Duration::ZERO };
            // A refusal ends nothing: a direct path may still open. It is
            // said with the failure, if the download fails.
            let refusal = std::sync::Mutex::new(None);
            let ask_for_relay = async {
                tokio::time::sleep(wait).await;
                if !opened.load(Ordering::SeqCst) {
                    let _ = outgoing.send(ClientMsg::Relay { session }).await;
                    if let Ok(why) = refused.await {
                        *refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                    }
                }
                std::future::pending::<()>().await
            };
            let result = tokio::select! {
                r = fetch => r,
                () = ask_for_relay => unreachable!("it never ends"),
            };
            relays.end(session, &outgoing);
            let refusal = refusal.into_inner().unwrap_or_else(|p| p.into_inner());
            let result = match (result, refusal) {
                (Err(e @ TransferError::BadData(_)), _) => Err(e),
                (Err(e), Some(why)) => Err(TransferError::Invalid(format!(
                    "{e}; the server does not relay it either: {why}"
                ))),
                (result, _) => result,
            };
            let next = swarm.ended(&owner, &result, &region);
            drop(region);
            act(next, &swarm, &requester, &events).await;
        });
    }

    /// The download `owner`'s offer of `file` (session `id`) joins: the
    /// one running for it, or a new one, opened with the owners asked
    /// along with `owner` and those that could take their place. `None`
    /// (said as a failure) when it cannot be.
    async fn swarm_for(
        &mut self,
        me: &str,
        owner: &str,
        file: &str,
        id: &str,
        offer: &Offer,
        of_offer: Option<u64>,
    ) -> Option<Arc<Swarm>> {
        // A file of an offer has one owner: nothing of the share folder's
        // downloads of the same name (owners asked, owners that announced
        // it) is its business.
        let asked = match of_offer {
            None => self.answered(file, owner),
            Some(_) => Vec::new(),
        };
        let fail = |reason: String| ClientEvent::TransferFailed {
            id: id.to_string(),
            file: file.to_string(),
            from: owner.to_string(),
            reason,
        };
        let key = (file.to_string(), of_offer);
        let running = lock_swarms(&self.swarms).get(&key).cloned();
        if let Some(swarm) = running {
            // A late offer for a download that ended meanwhile: unused
            // (a new `getfile` starts a new download).
            if swarm.is_over() {
                return None;
            }
            if swarm.hash == offer.blake3 && swarm.size == offer.size {
                return Some(swarm);
            }
            let why = format!("a download of {file} with another hash is running");
            self.emit(fail(why)).await;
            return None;
        }
        // A file of the share folder lands in the download folder by its
        // own name; one of an offer keeps its path there.
        let root = &self.opts.download_dir;
        let (dir, name) = match of_offer {
            None => (root.clone(), file.rsplit('/').next().unwrap_or(file).into()),
            Some(_) => match offers::place(root, file) {
                Ok(place) => place,
                Err(why) => {
                    self.emit(fail(why)).await;
                    return None;
                }
            },
        };
        let opened = Download::open(&dir, &name, offer.size, offer.blake3)
            .and_then(|d| d.reserve().map(|()| d));
        let download = match opened {
            Ok(d) => d,
            Err(e) => {
                self.emit(fail(e.to_string())).await;
                return None;
            }
        };
        let tried = self.tried.get(file).cloned().unwrap_or_default();
        let holders = self.holders.get(file).filter(|_| of_offer.is_none());
        let spare: Vec<String> = (holders.into_iter().flatten())
            .filter(|h| h.hash == offer.blake3 && h.size == offer.size)
            .filter(|h| !tried.contains(&h.user) && h.user != me)
            .map(|h| h.user.clone())
            .collect();
        let swarm = Arc::new(
            Swarm::new(
                id.to_string(),
                file.to_string(),
                owner.to_string(),
                download,
                asked,
                spare,
                self.events.clone(),
            )
            .of_offer(of_offer),
        );
        lock_swarms(&self.swarms).insert(key, swarm.clone());
        Some(swarm)
    }

    /// `owner` answered a request for `file`: the owners asked for it
    /// whose answer has still not come.
    fn answered(&mut self, file: &str, owner: &str) -> Vec<String> {
        let Some(pending) = self.pending.get_mut(file) else {
            return Vec::new();
        };
        pending.remove(owner);
        let left: Vec<String> = pending.iter().cloned().collect();
        if left.is_empty() {
            self.pending.remove(file);
        }
        left
    }

    /// What a task needs to ask an owner for a file.
    fn requester(&self, me: &str, key: &SigningKey) -> Requester {
        Requester {
            me: me.to_string(),
            key: key.clone(),
            server: self.server,
            asking: self.asking.clone(),
            outgoing: self.outgoing.clone(),
            observations: self.observations.clone(),
            events: self.events.clone(),
            fetches: self.fetches.clone(),
            swarms: self.swarms.clone(),
        }
    }

    /// `/send USER PATH...`: the files are listed and hashed in a task of
    /// their own (hashing takes a while), then offered.
    pub async fn send_offer(&mut self, me: &str, to: String, paths: Vec<String>) {
        if to == me {
            let why = "an offer goes to another user, not to yourself".to_string();
            self.error(ErrorKind::Offer, why).await;
            return;
        }
        let (offers, outgoing, events) = (
            self.offers.clone(),
            self.outgoing.clone(),
            self.events.clone(),
        );
        tokio::spawn(async move {
            let paths: Vec<PathBuf> = paths.iter().map(|p| offers::expand_home(p)).collect();
            let listed = tokio::task::spawn_blocking(move || {
                let (files, skipped) = offers::collect(&paths)?;
                Ok::<_, String>((offers::hash(files)?, skipped))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let id = rand::random();
            let made = listed.and_then(|(files, skipped)| {
                let msg = offers::message(&to, id, &files)?;
                let bytes = files.iter().map(|f| f.outline.size()).sum();
                let count = files.len();
                let number = offers::lock(&offers).made(id, &to, files);
                let event = ClientEvent::OfferSent {
                    offer: number,
                    to: to.clone(),
                    files: count,
                    bytes,
                    skipped,
                };
                Ok((msg, event))
            });
            let event = match made {
                Ok((msg, event)) => match outgoing.send(msg).await {
                    Ok(()) => event,
                    Err(_) => return, // the client is ending
                },
                Err(message) => ClientEvent::Error {
                    code: ErrorKind::Offer,
                    message,
                },
            };
            let _ = events.send(event).await;
        });
    }

    /// An offer received: shown, and accepted at once from a user in
    /// `auto_accept`. Fails only if writing to the server fails.
    async fn offered(
        &mut self,
        me: &str,
        key: &SigningKey,
        (from, id, files): (String, u64, Vec<OfferedFile>),
        s: &mut Session,
    ) -> std::io::Result<()> {
        let received = offers::lock(&self.offers).received(&from, id, files);
        let received = match received {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!("an offer was dropped: {why}");
                return Ok(());
            }
        };
        let auto = self.opts.auto_accept.contains(&from);
        self.emit(ClientEvent::OfferReceived {
            offer: received.number,
            from,
            files: offers::shown(&received.files),
            bytes: offers::total(&received.files),
            auto_accepted: auto,
        })
        .await;
        if auto {
            if let Some(msg) = self
                .answer_offer(me, key, Some(received.number), true)
                .await
            {
                s.send(&msg).await?;
            }
        }
        Ok(())
    }

    /// `/accept [N]` or `/decline [N]`: the answer for the sender, if
    /// there is an offer to answer. An accepted offer's files are then
    /// fetched one after another.
    pub async fn answer_offer(
        &mut self,
        me: &str,
        key: &SigningKey,
        number: Option<u32>,
        accept: bool,
    ) -> Option<ClientMsg> {
        let taken = offers::lock(&self.offers).answer(number);
        let r = match taken {
            Ok(r) => r,
            Err(why) => {
                self.error(ErrorKind::Offer, why).await;
                return None;
            }
        };
        let answer = ClientMsg::OfferAnswer {
            to: r.from.clone(),
            offer: r.id,
            accept,
        };
        if !accept {
            let (offer, from) = (r.number, r.from);
            self.emit(ClientEvent::OfferDeclined { offer, from }).await;
            return Some(answer);
        }
        let into = self.opts.download_dir.clone();
        self.emit(ClientEvent::OfferAccepted {
            offer: r.number,
            from: r.from.clone(),
            into: into.display().to_string(),
        })
        .await;
        let fetch = Fetch {
            id: r.id,
            number: r.number,
            owner: r.from,
            current: None,
            busy: 0,
            asked: 0,
            last_ask: None,
            rest: r.files.into(),
            received: 0,
            failed: Vec::new(),
            into,
        };
        self.requester(me, key).fetch_next(fetch);
        Some(answer)
    }
}

/// What is left to fetch of an accepted offer.
#[derive(Debug)]
struct Fetch {
    /// The offer's id.
    id: u64,
    /// Its number, as shown.
    number: u32,
    /// Its sender.
    owner: String,
    /// The file asked for now.
    current: Option<OfferedFile>,
    /// Times it was refused as busy.
    busy: u32,
    /// Files asked for so far, and when the last was.
    asked: u32,
    last_ask: Option<std::time::Instant>,
    /// Files not asked for yet.
    rest: VecDeque<OfferedFile>,
    /// Files fetched.
    received: usize,
    /// Files that failed.
    failed: Vec<String>,
    /// The download folder.
    into: PathBuf,
}

/// Offers being fetched, by the id of the download of the current file.
type Fetches = Arc<Mutex<HashMap<String, Fetch>>>;

fn lock_fetches(map: &Fetches) -> std::sync::MutexGuard<'_, HashMap<String, Fetch>> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// Running downloads, by file name and the offer of files it is of.
type SwarmMap = HashMap<(String, Option<u64>), Arc<Swarm>>;
type Swarms = Arc<Mutex<SwarmMap>>;

fn lock_swarms(map: &Swarms) -> std::sync::MutexGuard<'_, SwarmMap> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// Does what a download's [`Next`] says: asks an owner, or ends the
/// download (moved into place, or failed) and says so.
async fn act(
    next: Next,
    swarm: &Arc<Swarm>,
    requester: &Requester,
    events: &mpsc::Sender<ClientEvent>,
) {
    let event = match next {
        Next::Wait => return,
        Next::Ask(owner) => {
            ask_for_swarm(swarm, requester, &owner);
            return;
        }
        Next::AskLater(owner, wait) => {
            let (swarm, requester) = (swarm.clone(), requester.clone());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if !swarm.is_over() {
                    ask_for_swarm(&swarm, &requester, &owner);
                }
            });
            return;
        }
        Next::Finish => {
            swarm.progress(true);
            let finished = swarm.download().clone().finish();
            match finished {
                Ok((path, hash)) => {
                    let sources = swarm.sources();
                    let bytes = sources.iter().map(|s| s.bytes).sum();
                    let mut from: Vec<&str> = sources.iter().map(|s| s.from.as_str()).collect();
                    if from.is_empty() {
                        from.push(&swarm.owner); // it had nothing to send
                    }
                    ClientEvent::TransferDone {
                        id: swarm.id.clone(),
                        file: swarm.file.clone(),
                        from: from.join(", "),
                        bytes,
                        seconds: swarm.seconds(),
                        blake3: hex::encode(hash),
                        path: path.display().to_string(),
                        sources,
                    }
                }
                Err(e) => swarm.failed(e.to_string()),
            }
        }
        Next::Fail(reason) => {
            let _ = swarm.download().save_progress();
            swarm.download().give_back_room();
            swarm.failed(reason)
        }
    };
    // The ended download stays listed (as over) so that late offers are
    // not taken for a new one; the next `getfile` clears it. One of a
    // file of an offer goes at once (and with it its open file): it had
    // one owner, asked once.
    let done = matches!(event, ClientEvent::TransferDone { .. });
    let _ = events.send(event).await;
    if swarm.offer.is_some() {
        let key = (swarm.file.clone(), swarm.offer);
        let mut swarms = lock_swarms(&requester.swarms);
        if swarms.get(&key).is_some_and(|s| Arc::ptr_eq(s, swarm)) {
            swarms.remove(&key);
        }
    }
    // A file of an offer: the offer goes on with the next.
    let fetch = lock_fetches(&requester.fetches).remove(&swarm.id);
    if let Some(mut fetch) = fetch {
        match done {
            true => {
                fetch.received += 1;
                requester.fetch_next(fetch);
            }
            false => requester.failed(fetch),
        }
    }
}

/// Asks `owner` for more of `swarm`'s file (the same hash and size).
fn ask_for_swarm(swarm: &Swarm, requester: &Requester, owner: &str) {
    swarm.asking(owner);
    let expect = Some((swarm.size, swarm.hash));
    requester.ask(owner, &swarm.file, expect, swarm.offer);
}

/// An owner's offer, as the server passed it on.
struct Offered {
    owner: String,
    owner_key: [u8; 32],
    file: String,
    /// The owner's address as its server sees it.
    addr: SocketAddr,
    offer: Offer,
    /// The offer of files the request named, if any.
    of_offer: Option<u64>,
}

/// The asker of a file request, as the server passed it on.
struct Asker {
    req: u64,
    name: String,
    key: [u8; 32],
    eph: [u8; 32],
    sig: Vec<u8>,
    /// Its address as its server sees it.
    ip: std::net::IpAddr,
    /// Its candidate addresses, as signed in its request.
    candidates: Vec<SocketAddr>,
}

/// What asking an owner for a file takes, for the tasks that ask (again,
/// or in another's place) while a download runs.
#[derive(Clone)]
struct Requester {
    me: String,
    key: SigningKey,
    server: Option<SocketAddr>,
    asking: AskingMap,
    outgoing: Outgoing,
    observations: Observations,
    events: mpsc::Sender<ClientEvent>,
    fetches: Fetches,
    swarms: Swarms,
}

impl Requester {
    /// Asks `owner` for `file` (announced as `expect`) of its share
    /// folder, or of its offer `offer`, in a task of its own: the socket
    /// opened and observed, then the request sent.
    fn ask(&self, owner: &str, file: &str, expect: Option<(u64, [u8; 32])>, offer: Option<u64>) {
        let prepare = Prepare {
            by: self.clone(),
            owner: owner.to_string(),
            file: file.to_string(),
            expect,
            offer,
            fetch: None,
        };
        tokio::spawn(prepare.run());
    }

    /// Asks for the next file of an accepted offer, or, with none left,
    /// says the offer is over. Past the first few, files are asked for
    /// at the pace the server's `getfile` limit allows.
    fn fetch_next(&self, mut fetch: Fetch) {
        fetch.busy = 0;
        fetch.current = fetch.rest.pop_front();
        if fetch.current.is_none() {
            self.offer_over(fetch);
            return;
        }
        let now = std::time::Instant::now();
        let wait = match fetch.last_ask {
            Some(last) if fetch.asked >= OFFER_BURST => {
                (last + OFFER_PACE).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        };
        fetch.asked += 1;
        fetch.last_ask = Some(now + wait);
        self.ask_current(fetch, wait);
    }

    /// Asks for the offer's current file after `wait`.
    fn ask_current(&self, fetch: Fetch, wait: Duration) {
        let Some(file) = fetch.current.clone() else {
            return self.offer_over(fetch);
        };
        let prepare = Prepare {
            by: self.clone(),
            owner: fetch.owner.clone(),
            file: file.name,
            expect: Some((file.size, file.blake3)),
            offer: Some(fetch.id),
            fetch: Some(fetch),
        };
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            prepare.run().await
        });
    }

    /// The offer's current file failed: the offer goes on with the next.
    fn failed(&self, mut fetch: Fetch) {
        if let Some(file) = fetch.current.take() {
            fetch.failed.push(file.name);
        }
        self.fetch_next(fetch);
    }

    /// The offer's current file was refused: asked again a few times if
    /// the owner is busy, else failed.
    fn refused(&self, mut fetch: Fetch, busy: bool) {
        if busy && fetch.busy < OFFER_BUSY_RETRIES {
            let wait = Duration::from_secs(1 << fetch.busy);
            fetch.busy += 1;
            self.ask_current(fetch, wait);
        } else {
            self.failed(fetch);
        }
    }

    /// Every file of the offer was fetched or failed: said so.
    fn offer_over(&self, fetch: Fetch) {
        let event = ClientEvent::OfferFinished {
            offer: fetch.number,
            from: fetch.owner,
            received: fetch.received,
            failed: fetch.failed,
            into: fetch.into.display().to_string(),
        };
        let events = self.events.clone();
        tokio::spawn(async move { events.send(event).await });
    }
}

/// A `getfile` being prepared: its socket opened and observed, then the
/// request sent.
struct Prepare {
    by: Requester,
    owner: String,
    file: String,
    expect: Option<(u64, [u8; 32])>,
    /// The owner's offer the file is of, if any.
    offer: Option<u64>,
    /// The rest of that offer, when this asks for its next file.
    fetch: Option<Fetch>,
}

impl Prepare {
    async fn run(self) {
        let Prepare {
            by,
            owner,
            file,
            expect,
            offer,
            fetch,
        } = self;
        let socket = match chatdrop_transfer::bind_dual(0) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("cannot open a UDP socket for {file}: {e}");
                let error = ClientEvent::Error {
                    code: ErrorKind::Local,
                    message,
                };
                let _ = by.events.send(error).await;
                if let Some(fetch) = fetch {
                    by.failed(fetch);
                }
                return;
            }
        };
        let own = Own::learn(&socket, by.server, &by.observations, &by.outgoing).await;
        let candidates = own.candidates();
        let eph = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let eph_pub = PublicKey::from(&eph).to_bytes();
        let transcript = request_transcript(&by.me, &owner, &file, offer, &eph_pub, &candidates);
        let sig = by.key.sign(&transcript);
        let of_offer = fetch.is_some();
        let asking = Asking {
            eph,
            expect,
            socket,
            reached: own.reached,
            fetch,
        };
        let key = (owner.clone(), file.clone(), offer);
        lock(&by.asking).insert(key.clone(), asking);
        let msg = ClientMsg::GetFile {
            owner,
            file,
            offer,
            eph: eph_pub,
            sig: sig.to_bytes().to_vec(),
            candidates,
        };
        let _ = by.outgoing.send(msg).await;
        if of_offer {
            // No answer may ever come (the owner left before answering,
            // the server refused the request for a limit, the connection
            // was replaced): the offer does not wait for it for ever.
            tokio::time::sleep(OFFER_ANSWER_WAIT).await;
            // (Its ephemeral key tells this request from a later one of
            // the same file.)
            let stale = {
                let mut asking = lock(&by.asking);
                match asking.get(&key) {
                    Some(a) if PublicKey::from(&a.eph).to_bytes() == eph_pub => asking.remove(&key),
                    _ => None,
                }
            };
            if let Some(fetch) = stale.and_then(|a| a.fetch) {
                let (owner, file, _) = key;
                let reason = format!(
                    "no answer from {owner} within {} s",
                    OFFER_ANSWER_WAIT.as_secs()
                );
                let failed = ClientEvent::TransferFailed {
                    id: hex::encode(rand::random::<[u8; 8]>()),
                    file,
                    from: owner,
                    reason,
                };
                let _ = by.events.send(failed).await;
                by.failed(fetch);
            }
        }
    }
}

/// An accepted request: the offer is made (with the socket's candidate
/// addresses), sent, and the file served.
struct Upload {
    me: String,
    key: SigningKey,
    asker: Asker,
    file: String,
    size: u64,
    blake3: [u8; 32],
    socket: UdpSocket,
    source: Source,
    cfg: Config,
    selective_repeat: bool,
    release: SlotGuard,
    server: Option<SocketAddr>,
    outgoing: Outgoing,
    observations: Observations,
    events: mpsc::Sender<ClientEvent>,
    relays: Relays,
}

impl Upload {
    async fn run(self) {
        let Upload {
            me,
            key,
            asker,
            file,
            socket,
            cfg,
            ..
        } = self;
        let idle = cfg.idle_timeout;
        let port = socket.local_addr().map_or(0, |a| a.port());
        let own = Own::learn(&socket, self.server, &self.observations, &self.outgoing).await;
        let my_eph = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let mut offer = Offer {
            size: self.size,
            blake3: self.blake3,
            port,
            eph: PublicKey::from(&my_eph).to_bytes(),
            session: rand::random(),
            selective_repeat: self.selective_repeat,
            window: cfg.window,
            mss: cfg.mss,
            asker_ip: asker.ip,
            candidates: own.hosts,
            observed: own.observed,
            sig: Vec::new(),
        };
        let transcript = offer_transcript(&me, &asker.name, &file, &asker.eph, &offer);
        offer.sig = key.sign(&transcript).to_bytes().to_vec();
        let keys = session_keys(&my_eph, &asker.eph, &offer, &transcript, Role::Sender);
        let session = offer.session;
        let answer = ClientMsg::FileAnswer {
            req: asker.req,
            answer: FileAnswer::Accept(offer),
        };
        let socket = Arc::new(socket);
        // A relay at the asker's server is told of later.
        let later_peer_ips = LaterIps::default();
        let hook = Hook {
            socket: socket.clone(),
            udp: own.reached,
            more: None,
            refused: None,
            at: RelayedAt::default(),
            allow: Some(later_peer_ips.clone()),
        };
        self.relays.add(session, hook);
        if self.outgoing.send(answer).await.is_err() {
            self.relays.end(session, &self.outgoing);
            return;
        }
        // The asker may start from the address its server sees or from
        // any of its candidates'; those are what is punched.
        let mut peer_ips = vec![asker.ip.to_canonical()];
        // Or through the relay: the server's UDP port, or the slow
        // path's socket on loopback.
        let relay_ips = self.server.map(|s| s.ip()).into_iter();
        let relay_ips = relay_ips.chain([std::net::Ipv4Addr::LOCALHOST.into()]);
        for ip in asker.candidates.iter().map(|c| c.ip()).chain(relay_ips) {
            let ip = ip.to_canonical();
            if !peer_ips.contains(&ip) {
                peer_ips.push(ip);
            }
        }
        let opts = ServeOptions {
            cfg,
            // An asker that never starts holds the upload slot only as
            // long as a silent transfer would (the offer reaches it
            // through its server within a moment).
            wait_for_start: Some(idle),
            peer_ips,
            punch: asker.candidates.clone(),
            later_peer_ips: Some(later_peer_ips),
        };
        let events = self.events;
        let to = asker.name;
        let _ = events
            .send(ClientEvent::UploadStarted {
                file: file.clone(),
                to: to.clone(),
                arq: arq_name(self.selective_repeat).into(),
            })
            .await;
        let served = serve(&socket, keys, &self.source, &opts, |_, _| {}).await;
        self.relays.end(session, &self.outgoing);
        // The slot is free before the upload is reported over: a
        // request made on seeing `upload_done` finds it free.
        drop(self.release);
        let event = match served {
            Ok(stats) => ClientEvent::UploadDone {
                file,
                to,
                bytes: stats.bytes,
                seconds: stats.seconds,
            },
            Err(e) => ClientEvent::Error {
                code: ErrorKind::UploadFailed,
                message: format!("sending {file} to {to} failed: {e}"),
            },
        };
        let _ = events.send(event).await;
    }
}

/// Session keys from the ephemeral X25519 exchange, bound to the offer.
fn session_keys(
    mine: &StaticSecret,
    theirs: &[u8; 32],
    offer: &Offer,
    transcript: &[u8],
    role: Role,
) -> SessionKeys {
    let shared = mine.diffie_hellman(&PublicKey::from(*theirs));
    let context = Sha256::digest(transcript);
    SessionKeys::derive(shared.as_bytes(), offer.session, &context, role)
}

/// Gives an upload slot back when the upload ends (or never starts).
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
