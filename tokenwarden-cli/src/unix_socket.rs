//! Unix-socket listeners (the proxy's, the agent's): a socket file only its
//! user can connect to (0600), which no web page can reach.

use crate::exit::CliError;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;

/// Binds `path`, made 0600. A socket left there by a process that died (nothing
/// accepts on it) is replaced; any other file there is an error, never removed.
pub(crate) fn bind(path: &Path) -> Result<tokio::net::UnixListener, CliError> {
    let unusable = |why: String| {
        CliError::usage(format!("cannot listen on {}: {why}", path.display())).hint(
            "give a socket path in a directory of yours, e.g. $XDG_RUNTIME_DIR/tokenwarden.sock",
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let stale =
            meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err();
        if !stale {
            return Err(unusable("something is there already".into()));
        }
        std::fs::remove_file(path).map_err(|e| unusable(e.to_string()))?;
    }
    // Made in a directory of its own (0700) and given its mode there, then moved
    // into place: no moment when another user could connect.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".tokenwarden-sock")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| unusable(e.to_string()))?;
    let made = private.path().join("proxy.sock");
    let listener = tokio::net::UnixListener::bind(&made).map_err(|e| unusable(e.to_string()))?;
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| unusable(e.to_string()))?;
    std::fs::rename(&made, path).map_err(|e| unusable(e.to_string()))?;
    Ok(listener)
}
