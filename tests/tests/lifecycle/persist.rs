//! A transition whose persisting fails changes nothing: the control state,
//! what is published and `runtime.json` keep agreeing.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use super::*;

/// Makes the state directory read-only for the duration: mode 0500, and,
/// where that does not stop the writer (root), the immutable attribute.
struct ReadOnly {
    dir: PathBuf,
    immutable: bool,
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".write-probe");
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

impl ReadOnly {
    fn new(dir: &Path) -> Self {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let mut guard = Self {
            dir: dir.to_owned(),
            immutable: false,
        };
        if writable(dir) {
            let status = Command::new("chattr").arg("+i").arg(dir).status();
            guard.immutable = status.is_ok_and(|s| s.success());
        }
        assert!(
            !writable(dir),
            "cannot make {} read-only here (root without chattr +i)",
            dir.display()
        );
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.dir).status();
        }
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// Reconfigure changed the control state before persisting it; when the
/// state directory refused the write the call failed, nothing was
/// published, yet the next Stop and Start brought up the backend of the
/// failed call. Now the transition is persisted first and committed only
/// then.
#[tokio::test]
async fn a_transition_that_cannot_be_persisted_changes_nothing() {
    let (mut kmsd, client) = running_on_keys_a().await;
    let key_dir =
        |s: &proto::StatusResponse| s.backend.as_ref().unwrap().settings["key_dir"].clone();
    let state_dir = kmsd.dir().join("state");
    let read_only = ReadOnly::new(&state_dir);

    let err = reconfigure(&client, &local_json(&kmsd, "keys-b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Internal), "{err}");
    let err = stop(&client).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Internal), "{err}");
    let now = status(&client).await;
    assert_eq!(now.state(), proto::ServiceState::Running);
    assert!(key_dir(&now).ends_with("keys-a"), "{now:?}");
    assert!(now.previous_backends.is_empty(), "{now:?}");
    client.generate_data_key(None, &ctx(&[])).await.unwrap();
    drop(read_only);

    // What Stop and Start bring up is what was published all along.
    stop(&client).await.unwrap();
    let started = start(&client).await.unwrap();
    assert!(key_dir(&started).ends_with("keys-a"), "{started:?}");
    assert!(started.previous_backends.is_empty(), "{started:?}");
    kmsd.restart().await;
    let restored = status(&kmsd.client().await).await;
    assert_eq!(restored.state(), proto::ServiceState::Running);
    assert!(key_dir(&restored).ends_with("keys-a"), "{restored:?}");
}
