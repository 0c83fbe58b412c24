//! chatdrop's embedded store: one SQLite database (WAL mode) holding rooms,
//! user-name bindings, bans and each room's recent history.
//!
//! The store only loads a [`Snapshot`] at start-up and applies batches of
//! [`Persist`] records afterwards; the chat core decides everything. Each
//! batch is one transaction, which is what lets the server sustain many
//! thousands of history writes a second.

use std::collections::HashMap;
use std::path::Path;

use chatdrop_chat::{Ban, Binding, HistoryEntry, Persist, RoomRecord, Snapshot, Vouch};
use rusqlite::{params, Connection, OptionalExtension};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database holds something this version cannot read.
    #[error("the database is damaged or from another version: {0}")]
    Corrupt(String),
}

/// Schema version written to SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    creator TEXT NOT NULL,
    password_hash TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    user TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    bound_ms INTEGER NOT NULL DEFAULT 0,
    home BLOB,
    home_key BLOB,
    sig BLOB,
    used_again INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bans (
    user TEXT PRIMARY KEY,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
";

/// An open store.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        // WAL: readers never block the writer, and a commit is one append.
        // synchronous=NORMAL keeps every commit across a process crash
        // (kill -9); only an OS crash or power loss may lose the last ones.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "schema version {version} is newer than this chatdrop ({SCHEMA_VERSION})"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        if (1..2).contains(&version) {
            // Version 2 records when each name was bound, which settles
            // name clashes between merging server networks.
            conn.execute_batch(
                "ALTER TABLE bindings ADD COLUMN bound_ms INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        if (1..3).contains(&version) {
            // Version 3 keeps the home server's vouch for each binding.
            conn.execute_batch(
                "ALTER TABLE bindings ADD COLUMN home BLOB;
                 ALTER TABLE bindings ADD COLUMN home_key BLOB;
                 ALTER TABLE bindings ADD COLUMN sig BLOB;",
            )?;
        }
        if (1..4).contains(&version) {
            // Version 4 notes whether each name was used again after the
            // session that bound it (names never used again expire). Names
            // bound before are taken as used: nothing says otherwise.
            conn.execute_batch(
                "ALTER TABLE bindings ADD COLUMN used_again INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Store { conn })
    }

    /// Reads everything the chat core needs at start-up, keeping the last
    /// `history_len` lines of each room.
    pub fn load(&self, history_len: u32) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let mut stmt = self.conn.prepare(
            "SELECT name, id, creator, password_hash, created_ms FROM rooms ORDER BY name",
        )?;
        let rooms = stmt.query_map([], |r| {
            Ok(RoomRecord {
                name: r.get(0)?,
                id: r.get(1)?,
                creator: r.get(2)?,
                password_hash: r.get(3)?,
                created_ms: r.get::<_, i64>(4)? as u64,
            })
        })?;
        let mut hist = self.conn.prepare(
            "SELECT seq, sender, text, ts FROM
               (SELECT seq, sender, text, ts FROM history WHERE room = ?1 ORDER BY seq DESC LIMIT ?2)
             ORDER BY seq",
        )?;
        for room in rooms {
            let room = room?;
            let lines = hist
                .query_map(params![room.name, history_len], |r| {
                    Ok(HistoryEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        from: r.get(1)?,
                        text: r.get(2)?,
                        ts: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            snap.rooms.push((room, lines));
        }
        let mut stmt = self.conn.prepare(
            "SELECT user, public_key, bound_ms, home, home_key, sig, used_again FROM bindings",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
                r.get::<_, i64>(6)? != 0,
            ))
        })?;
        for row in rows {
            let (user, key, bound_ms, home, home_key, sig, used_again) = row?;
            // A row written before vouches were kept has none; one whose
            // vouch is damaged is kept without it (the server then vouches
            // for the binding itself, as for an old row).
            let vouch = match (home, home_key, sig) {
                (Some(home), Some(home_key), Some(sig)) => {
                    match (home.try_into(), home_key.try_into(), sig.try_into()) {
                        (Ok(home), Ok(home_key), Ok(sig)) => Some(Vouch {
                            home,
                            home_key,
                            sig,
                        }),
                        _ => None,
                    }
                }
                _ => None,
            };
            let public_key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "identity key of {user} has {} bytes, not 32",
                    key.len()
                ))
            })?;
            snap.bindings.push(Binding {
                user,
                public_key,
                bound_ms: bound_ms as u64,
                vouch,
                used_again,
            });
        }
        let mut stmt = self.conn.prepare("SELECT user, reason FROM bans")?;
        for row in stmt.query_map([], |r| {
            Ok(Ban {
                user: r.get(0)?,
                reason: r.get(1)?,
            })
        })? {
            snap.bans.push(row?);
        }
        Ok(snap)
    }

    /// Writes a batch of records in one transaction.
    pub fn apply(&mut self, batch: &[Persist]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        // Highest line written per room, and how many lines it keeps.
        let mut trim: HashMap<&str, (u64, u32)> = HashMap::new();
        {
            let mut add_room = tx.prepare_cached(
                "INSERT INTO rooms (name, id, creator, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut add_line = tx.prepare_cached(
                "INSERT OR REPLACE INTO history (room, seq, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for op in batch {
                match op {
                    Persist::Room(r) => {
                        add_room.execute(params![
                            r.name,
                            r.id,
                            r.creator,
                            r.password_hash,
                            r.created_ms as i64
                        ])?;
                    }
                    Persist::Bind {
                        user,
                        public_key,
                        bound_ms,
                        vouch,
                    } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO bindings (user, public_key, bound_ms, home, home_key, sig, used_again) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                            params![
                                user,
                                &public_key[..],
                                *bound_ms as i64,
                                &vouch.home[..],
                                &vouch.home_key[..],
                                &vouch.sig[..]
                            ],
                        )?;
                    }
                    Persist::RenameRoom { old, new } => {
                        tx.execute(
                            "UPDATE rooms SET name = ?2 WHERE name = ?1",
                            params![old, new],
                        )?;
                        tx.execute(
                            "UPDATE history SET room = ?2 WHERE room = ?1",
                            params![old, new],
                        )?;
                    }
                    Persist::NameUsed { user } => {
                        tx.execute(
                            "UPDATE bindings SET used_again = 1 WHERE user = ?1",
                            params![user],
                        )?;
                    }
                    Persist::Unbind { user } => {
                        tx.execute("DELETE FROM bindings WHERE user = ?1", params![user])?;
                    }
                    Persist::DropRoom { name } => {
                        tx.execute("DELETE FROM rooms WHERE name = ?1", params![name])?;
                        tx.execute("DELETE FROM history WHERE room = ?1", params![name])?;
                    }
                    Persist::Ban { user, reason } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO bans (user, reason) VALUES (?1, ?2)",
                            params![user, reason],
                        )?;
                    }
                    Persist::Unban { user } => {
                        tx.execute("DELETE FROM bans WHERE user = ?1", params![user])?;
                    }
                    Persist::ExpireHistory { room, seq } => {
                        tx.execute(
                            "DELETE FROM history WHERE room = ?1 AND seq <= ?2",
                            params![room, *seq as i64],
                        )?;
                    }
                    Persist::History { room, entry, keep } => {
                        add_line.execute(params![
                            room,
                            entry.seq as i64,
                            entry.from,
                            entry.text,
                            entry.ts as i64
                        ])?;
                        let t = trim.entry(room.as_str()).or_insert((0, *keep));
                        *t = (t.0.max(entry.seq), *keep);
                    }
                }
            }
            let mut cut = tx.prepare_cached("DELETE FROM history WHERE room = ?1 AND seq <= ?2")?;
            for (room, (top, keep)) in trim {
                if top > keep as u64 {
                    cut.execute(params![room, (top - keep as u64) as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of history lines stored for `room` (for tests and tooling).
    pub fn history_count(&self, room: &str) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM history WHERE room = ?1",
                params![room],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, pw: Option<&str>) -> Persist {
        Persist::Room(RoomRecord {
            name: name.into(),
            id: format!("id-{name}"),
            creator: "bob".into(),
            password_hash: pw.map(String::from),
            created_ms: 5,
        })
    }

    fn line(room: &str, seq: u64) -> Persist {
        Persist::History {
            room: room.into(),
            entry: HistoryEntry {
                seq,
                from: "bob".into(),
                text: format!("line {seq}"),
                ts: seq * 10,
            },
            keep: 3,
        }
    }

    #[test]
    fn a_renamed_room_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdrop.db");
        let mut store = Store::open(&path).unwrap();
        store
            .apply(&[room("lobby", None), line("lobby", 1), line("lobby", 2)])
            .unwrap();
        store
            .apply(&[Persist::RenameRoom {
                old: "lobby".into(),
                new: "lobby-abc123".into(),
            }])
            .unwrap();
        let snap = store.load(100).unwrap();
        assert_eq!(snap.rooms.len(), 1);
        assert_eq!(snap.rooms[0].0.name, "lobby-abc123");
        assert_eq!(snap.rooms[0].1.len(), 2);
    }

    #[test]
    fn a_version_1_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdrop.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE bindings (user TEXT PRIMARY KEY, public_key BLOB NOT NULL);
                 INSERT INTO bindings VALUES ('bob', zeroblob(32));
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let snap = store.load(10).unwrap();
        assert_eq!(snap.bindings[0].user, "bob");
        assert_eq!(snap.bindings[0].bound_ms, 0);
        assert_eq!(snap.bindings[0].vouch, None);
    }

    /// A home server's vouch, as the chat core makes one.
    fn vouch() -> Vouch {
        Vouch {
            home: [4; 16],
            home_key: [5; 32],
            sig: [6; 64],
        }
    }

    #[test]
    fn a_version_2_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdrop.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE bindings (user TEXT PRIMARY KEY, public_key BLOB NOT NULL,
                     bound_ms INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO bindings VALUES ('bob', zeroblob(32), 77);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let snap = store.load(10).unwrap();
        assert_eq!(
            (snap.bindings[0].bound_ms, &snap.bindings[0].vouch),
            (77, &None)
        );
        // Vouches are kept from then on.
        let bind = Persist::Bind {
            user: "bob".into(),
            public_key: [0; 32],
            bound_ms: 77,
            vouch: vouch(),
        };
        store.apply(&[bind]).unwrap();
        assert_eq!(store.load(10).unwrap().bindings[0].vouch, Some(vouch()));
    }

    /// Names bound before names were marked used count as used (nothing
    /// says they were not, and an unused name expires).
    #[test]
    fn a_version_3_database_is_upgraded_with_its_names_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdrop.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE bindings (user TEXT PRIMARY KEY, public_key BLOB NOT NULL,
                     bound_ms INTEGER NOT NULL DEFAULT 0, home BLOB, home_key BLOB, sig BLOB);
                 INSERT INTO bindings VALUES ('bob', zeroblob(32), 77, NULL, NULL, NULL);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert!(store.load(10).unwrap().bindings[0].used_again);
        // A name bound from then on starts unused.
        let bind = Persist::Bind {
            user: "ann".into(),
            public_key: [1; 32],
            bound_ms: 78,
            vouch: vouch(),
        };
        store.apply(&[bind]).unwrap();
        let snap = store.load(10).unwrap();
        let ann = snap.bindings.iter().find(|b| b.user == "ann").unwrap();
        assert!(!ann.used_again);
    }

    /// A name used again stays so across a restart; a forgotten name or
    /// room is not loaded again, nor is the room's history.
    #[test]
    fn names_and_rooms_are_marked_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("chatdrop.db")).unwrap();
        let bind = |user: &str| Persist::Bind {
            user: user.into(),
            public_key: [1; 32],
            bound_ms: 78,
            vouch: vouch(),
        };
        store
            .apply(&[
                bind("ann"),
                bind("bob"),
                room("lobby", None),
                room("attic", None),
                line("attic", 1),
            ])
            .unwrap();
        store
            .apply(&[
                Persist::NameUsed { user: "ann".into() },
                Persist::Unbind { user: "bob".into() },
                Persist::DropRoom {
                    name: "attic".into(),
                },
            ])
            .unwrap();
        let snap = store.load(10).unwrap();
        let names: Vec<(&str, bool)> = snap
            .bindings
            .iter()
            .map(|b| (b.user.as_str(), b.used_again))
            .collect();
        assert_eq!(names, [("ann", true)]);
        let rooms: Vec<&str> = snap.rooms.iter().map(|(r, _)| r.name.as_str()).collect();
        assert_eq!(rooms, ["lobby"]);
        assert_eq!(store.history_count("attic").unwrap(), 0);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatdrop.db");
        {
            let mut store = Store::open(&path).unwrap();
            store
                .apply(&[
                    room("whatsapp", Some("$argon2id$fake")),
                    room("lobby", None),
                    Persist::Bind {
                        user: "bob".into(),
                        public_key: [3; 32],
                        bound_ms: 77,
                        vouch: vouch(),
                    },
                    Persist::Ban {
                        user: "eve".into(),
                        reason: "spam".into(),
                    },
                    Persist::Ban {
                        user: "mallory".into(),
                        reason: "x".into(),
                    },
                    Persist::Unban {
                        user: "mallory".into(),
                    },
                ])
                .unwrap();
            let lines: Vec<_> = (1..=5).map(|i| line("whatsapp", i)).collect();
            store.apply(&lines).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let snap = store.load(100).unwrap();
        assert_eq!(snap.rooms.len(), 2);
        let (wa, hist) = snap
            .rooms
            .iter()
            .find(|(r, _)| r.name == "whatsapp")
            .unwrap();
        assert_eq!(wa.password_hash.as_deref(), Some("$argon2id$fake"));
        assert_eq!(wa.id, "id-whatsapp");
        let seqs: Vec<u64> = hist.iter().map(|h| h.seq).collect();
        assert_eq!(seqs, [3, 4, 5], "trimmed to the last 3 lines");
        assert_eq!(
            snap.bindings,
            [Binding {
                user: "bob".into(),
                public_key: [3; 32],
                bound_ms: 77,
                vouch: Some(vouch()),
                used_again: false,
            }]
        );
        assert_eq!(
            snap.bans,
            [Ban {
                user: "eve".into(),
                reason: "spam".into()
            }]
        );
        assert_eq!(store.load(2).unwrap().rooms[1].1.len(), 2);
    }

    #[test]
    fn a_failed_batch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        store.apply(&[room("a", None)]).unwrap();
        // The duplicate room makes the whole batch fail, line included.
        assert!(store.apply(&[line("a", 1), room("a", None)]).is_err());
        assert_eq!(store.history_count("a").unwrap(), 0);
    }

    #[test]
    fn a_damaged_binding_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO bindings (user, public_key) VALUES ('bob', x'0102')",
                [],
            )
            .unwrap();
        let err = store.load(10).unwrap_err().to_string();
        assert!(err.contains("identity key of bob has 2 bytes"), "{err}");
    }
}
