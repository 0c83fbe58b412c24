//! Default locations of chatdrop's data.

use std::path::PathBuf;

/// `<platform data dir>/chatdrop/<role>`, or `./.chatdrop/<role>` where the
/// platform has no such directory.
pub fn default_data_dir(role: &str) -> PathBuf {
    directories::ProjectDirs::from("", "", "chatdrop")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".chatdrop"))
        .join(role)
}
