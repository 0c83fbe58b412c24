//! The server's configuration file (TOML; docs/CONFIG.md): the same options
//! as the command-line flags, plus the tables that have no flags
//! (`[limits]`). Unknown keys are an error, so a typo does not pass
//! unnoticed.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::quota::Limits;
use crate::relay::RelayLimits;

/// The whole file. Every key is optional; what is missing keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Directory of the database, certificate and keys.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most clients at once.
    pub max_clients: Option<usize>,
    /// Worker threads.
    pub workers: Option<usize>,
    /// Lines of history each room keeps.
    pub history: Option<u32>,
    /// Days a line of history is kept (0: no age limit).
    pub history_days: Option<u32>,
    /// Most rooms users may make on this server.
    pub max_rooms: Option<usize>,
    /// Most rooms one user may have made.
    pub max_rooms_per_user: Option<usize>,
    /// Most members in one room.
    pub max_room_members: Option<usize>,
    /// The server's name.
    pub name: Option<String>,
    /// Servers to link to.
    #[serde(default)]
    pub links: Vec<String>,
    /// The secret every server of the network shares.
    pub network_key: Option<String>,
    /// Files the server refuses to broker.
    #[serde(default)]
    pub share_policy: PolicyFile,
    /// Rate limits and per-address limits; missing keys keep their default.
    pub limits: Option<Limits>,
    /// The relay's limits; missing keys keep their default.
    pub relay: Option<RelayLimits>,
}

/// The `[share_policy]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Extensions refused.
    #[serde(default)]
    pub block_ext: Vec<String>,
    /// Name patterns refused.
    #[serde(default)]
    pub block_name: Vec<String>,
    /// BLAKE3 hashes refused (hex).
    #[serde(default)]
    pub block_hash: Vec<String>,
    /// Largest file brokered.
    pub max_share_size: Option<u64>,
}

/// Reads a configuration file's text; the error names the key or line at
/// fault.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    let c: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(limits) = &c.limits {
        limits.check()?;
    }
    if let Some(relay) = &c.relay {
        relay.check()?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_not_given_keep_their_defaults() {
        let c = parse("[limits]\nwhohas = { per_second = 0.5, burst = 3 }\n").unwrap();
        let l = c.limits.unwrap();
        assert_eq!(l.whohas.per_second, 0.5);
        assert_eq!(l.whohas.burst, 3.0);
        assert_eq!(l.say, Limits::default().say);
        assert!(l.enabled);
    }

    #[test]
    fn bad_limits_and_unknown_keys_say_which() {
        let e = parse("[limits]\nsay = { per_second = 0, burst = 3 }\n").unwrap_err();
        assert_eq!(e, "limits.say.per_second must be above 0");
        let e = parse("[limits]\nwhohass = { per_second = 1, burst = 3 }\n").unwrap_err();
        assert!(e.contains("unknown field `whohass`"), "{e}");
        let e = parse("[relay]\nidle_secs = 0\n").unwrap_err();
        assert_eq!(e, "relay.idle_secs must be at least 1");
        let r = parse("[relay]\nmax_per_user = 5\n").unwrap().relay.unwrap();
        assert_eq!(r.max_per_user, 5);
        assert_eq!(r.max_sessions, RelayLimits::default().max_sessions);
        let e = parse("max_rooms = \"many\"\n").unwrap_err();
        assert!(e.contains("max_rooms"), "{e}");
    }
}
