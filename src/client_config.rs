//! The client's configuration file: the options of `chatdrop client` in
//! TOML, read from the platform's config directory (or `--config FILE`);
//! a flag given on the command line wins. `chatdrop config init` writes a
//! commented one, `chatdrop config path` says where it is read from.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// What the file may set (every key optional; an unknown key is an error,
/// so a typo does not pass unnoticed).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Servers of one network, `HOST:PORT` each; the closest is used.
    pub servers: Option<Vec<String>>,
    pub user: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub share_dir: Option<PathBuf>,
    pub download_dir: Option<PathBuf>,
    /// `sr` or `gbn`.
    pub arq: Option<String>,
    pub window: Option<u32>,
    pub max_uploads: Option<usize>,
    pub timeout: Option<u64>,
    /// Users whose offers of files are accepted without asking.
    pub auto_accept: Option<Vec<String>>,
    /// The terminal bell in the full-screen UI.
    pub bell: Option<bool>,
    /// Colours in the full-screen UI (`NO_COLOR` also turns them off).
    pub colors: Option<bool>,
    /// Desktop notifications through the terminal, with the bell.
    pub notify: Option<bool>,
}

/// The commented file `chatdrop config init` writes: every option, with
/// its default, commented out.
pub const TEMPLATE: &str = r#"# chatdrop client configuration. Every option of `chatdrop client` can be
# set here; a flag given on the command line wins. Uncomment what you need.

# Servers of one network: the client measures each and uses the closest.
# servers = ["chat.example.org:50000"]

# Your user name (asked for at start when not given).
# user = "alice"

# Where your identity key and known server certificates live.
# data_dir = "/home/alice/.local/share/chatdrop/client"

# The folder whose files you can share (@me setshare NAME), and where
# downloads go (by default your Downloads folder).
# share_dir = "/home/alice/chatdrop-share"
# download_dir = "/home/alice/Downloads"

# How this client sends files: "sr" (Selective Repeat) or "gbn"
# (Go-Back-N), the window cap in packets, uploads at once (more are
# refused as busy), and seconds of silence before a transfer fails.
# arq = "sr"
# window = 16384
# max_uploads = 4
# timeout = 10

# Users whose offers of files (/send) are accepted without asking: their
# files land in the download folder at once. Nobody by default.
# auto_accept = ["bob"]

# The full-screen UI: the terminal bell when someone names you or writes
# to you and when a download finishes, and colours.
# bell = true
# colors = true

# A desktop notification with the bell, asked of the terminal (OSC 777:
# foot, WezTerm, Ghostty, rxvt-unicode...); off by default.
# notify = false
"#;

/// Where the client reads its configuration by default.
pub fn default_path() -> PathBuf {
    directories::ProjectDirs::from("", "", "chatdrop")
        .map(|d| d.config_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".chatdrop"))
        .join("client.toml")
}

/// Reads the file at `path`; `Ok(None)` if there is none and it was not
/// asked for by name (`required`).
pub fn load(path: &Path, required: bool) -> anyhow::Result<Option<ClientConfig>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    Ok(Some(config))
}

/// Writes [`TEMPLATE`] at `path` (its folder made if missing); an existing
/// file is kept unless `force`.
pub fn init(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} exists already; --force replaces it with the default",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    }
    std::fs::write(path, TEMPLATE).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template parses, with every option set once uncommented; an
    /// unknown key is refused by name.
    #[test]
    fn the_template_is_the_whole_file_format() {
        assert!(toml::from_str::<ClientConfig>(TEMPLATE).is_ok());
        let uncommented: String = TEMPLATE
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c: ClientConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(c.servers.unwrap(), ["chat.example.org:50000"]);
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.arq.as_deref(), Some("sr"));
        assert_eq!(
            (c.window, c.max_uploads, c.timeout),
            (Some(16384), Some(4), Some(10))
        );
        assert_eq!(
            (c.bell, c.colors, c.notify),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(c.auto_accept.unwrap(), ["bob"]);
        assert!(c.data_dir.is_some() && c.share_dir.is_some() && c.download_dir.is_some());
        let err = toml::from_str::<ClientConfig>("sever = [\"x:1\"]").unwrap_err();
        assert!(err.to_string().contains("sever"), "{err}");
    }

    #[test]
    fn init_keeps_an_existing_file_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.toml");
        init(&path, false).unwrap();
        std::fs::write(&path, "user = \"bob\"\n").unwrap();
        let err = init(&path, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "user = \"bob\"\n");
        init(&path, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEMPLATE);
        assert!(load(&dir.path().join("none.toml"), false)
            .unwrap()
            .is_none());
        assert!(load(&dir.path().join("none.toml"), true).is_err());
    }
}
