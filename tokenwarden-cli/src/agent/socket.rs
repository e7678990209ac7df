//! Where the agent's socket is, and the checks that keep it the user's own: a
//! 0700 directory the user owns (made so where it is missing), and peers of the
//! same user at both ends.

use crate::exit::CliError;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The variable that names the socket (`agent --print-env` prints it).
pub const SOCKET_VAR: &str = "TOKENWARDEN_AGENT_SOCK";

/// The socket: `$TOKENWARDEN_AGENT_SOCK`, else
/// `$XDG_RUNTIME_DIR/tokenwarden/agent.sock`, else `tokenwarden-<uid>/agent.sock`
/// in the temporary directory.
pub fn path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_VAR).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("tokenwarden"),
        None => std::env::temp_dir().join(format!("tokenwarden-{}", uid())),
    };
    dir.join("agent.sock")
}

/// This process's user.
pub(super) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether `dir` is the user's own and closed to others (0700 or stricter).
pub(super) fn private(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid() && m.mode() & 0o077 == 0)
}

/// Takes `<socket>.lock` beside the socket for as long as the returned file is
/// held: of two agents started on one socket at once, the second refuses
/// (else each could bind, and the first serve a socket nobody can reach).
pub(super) fn lock(path: &Path) -> Result<std::fs::File, CliError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| CliError::usage(format!("cannot make {}: {e}", Path::new(&name).display())))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            CliError::usage(format!("an agent runs on {} already", path.display()))
                .hint("stop it first (kill -TERM), or give this one another --socket")
        },
    )?;
    Ok(file)
}

/// Makes the socket's directory (0700) where it is missing; refuses one that is
/// not the user's own or that others may enter (another user could have made
/// it, to listen in the user's place).
pub(super) fn prepare(path: &Path) -> Result<(), CliError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| {
                CliError::usage(format!(
                    "cannot make the agent's directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    if !private(dir) {
        return Err(CliError::usage(format!(
            "the agent's directory {} is not yours alone (it must be yours, mode 0700)",
            dir.display()
        ))
        .hint("remove it, or name another socket with --socket or TOKENWARDEN_AGENT_SOCK"));
    }
    Ok(())
}
