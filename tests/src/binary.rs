use std::env;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The environment variable that names a custom `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "REDIS_SERVER";

/// Finds the `redis-server` binary the harness would run.
///
/// `REDIS_SERVER` wins when it is set and non-empty: it may be a path (`/opt/redis/bin/redis-server`)
/// or a program name looked up on `PATH` (`valkey-server`). Otherwise `redis-server` is looked up
/// on `PATH`.
///
/// # Errors
///
/// [`HarnessError::NotInstalled`] when `REDIS_SERVER` is unset and `redis-server` is not on
/// `PATH`; [`HarnessError::InvalidBinary`] when `REDIS_SERVER` names nothing executable.
pub fn redis_server_binary() -> Result<PathBuf, HarnessError> {
    resolve(
        env::var_os(REDIS_SERVER_ENV).as_deref(),
        env::var_os("PATH").as_deref(),
    )
}

/// Returns `true` when [`redis_server_binary`] finds a binary, so that a test can skip itself
/// instead of failing.
///
/// ```
/// if !lock_tests::redis_server_available() {
///     eprintln!("skipping: redis-server is not installed");
///     return;
/// }
/// ```
pub fn redis_server_available() -> bool {
    redis_server_binary().is_ok()
}

fn resolve(custom: Option<&OsStr>, path_var: Option<&OsStr>) -> Result<PathBuf, HarnessError> {
    match custom.filter(|c| !c.is_empty()) {
        Some(custom) => {
            let custom = Path::new(custom);
            let found = if custom.components().count() > 1 {
                is_executable(custom).then(|| custom.to_path_buf())
            } else {
                search_path(custom, path_var)
            };
            found.ok_or_else(|| HarnessError::InvalidBinary {
                path: custom.to_path_buf(),
            })
        }
        None => search_path(Path::new("redis-server"), path_var).ok_or(HarnessError::NotInstalled),
    }
}

fn search_path(name: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    env::split_paths(path_var?)
        // An empty PATH entry means the current directory; resolve it now, since the server
        // runs in another one.
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                env::current_dir().unwrap_or(dir)
            } else {
                dir
            }
        })
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_binary(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn missing_from_path_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(None, Some(dir.path().as_os_str())).unwrap_err();
        assert!(matches!(err, HarnessError::NotInstalled), "{err}");
        assert!(matches!(
            resolve(None, None).unwrap_err(),
            HarnessError::NotInstalled
        ));
    }

    #[test]
    fn found_on_path_only_when_executable() {
        let empty = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path_var = env::join_paths([empty.path(), dir.path()]).unwrap();
        fake_binary(dir.path(), "redis-server", 0o644);
        assert!(resolve(None, Some(&path_var)).is_err());
        let bin = fake_binary(dir.path(), "redis-server", 0o755);
        assert_eq!(resolve(None, Some(&path_var)).unwrap(), bin);
    }

    #[test]
    fn env_var_path_wins_over_path() {
        let dir = tempfile::tempdir().unwrap();
        fake_binary(dir.path(), "redis-server", 0o755);
        let custom = fake_binary(dir.path(), "my-redis", 0o755);
        let got = resolve(Some(custom.as_os_str()), Some(dir.path().as_os_str())).unwrap();
        assert_eq!(got, custom);
    }

    #[test]
    fn env_var_program_name_is_looked_up_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_binary(dir.path(), "valkey-server", 0o755);
        let got = resolve(
            Some(OsStr::new("valkey-server")),
            Some(dir.path().as_os_str()),
        )
        .unwrap();
        assert_eq!(got, bin);
    }

    #[test]
    fn env_var_pointing_nowhere_is_invalid_not_silently_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fake_binary(dir.path(), "redis-server", 0o755);
        let err = resolve(
            Some(OsStr::new("/nonexistent/redis-server")),
            Some(dir.path().as_os_str()),
        )
        .unwrap_err();
        assert!(matches!(err, HarnessError::InvalidBinary { .. }), "{err}");
    }

    #[test]
    fn empty_env_var_is_treated_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_binary(dir.path(), "redis-server", 0o755);
        let got = resolve(Some(OsStr::new("")), Some(dir.path().as_os_str())).unwrap();
        assert_eq!(got, bin);
    }
}
