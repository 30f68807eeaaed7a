//! deploy/container: the Containerfile is hadolint clean.

use std::{fs, process::Command};

use super::*;

#[test]
fn containerfile_is_hadolint_clean() {
    let file = deploy_dir().join("container/Containerfile");
    let ran = run(Command::new(tool("hadolint"))
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&file));
    assert!(
        ran.success && ran.stdout.trim().is_empty(),
        "hadolint: {ran}"
    );
    // What hadolint does not judge: the final stage runs as non-root and
    // needs no shell to start.
    let text = fs::read_to_string(&file).unwrap();
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    assert!(
        !["0", "root"].contains(&user.split(':').next().unwrap()),
        "USER {user} is root"
    );
    for directive in ["ENTRYPOINT [", "CMD ["] {
        assert!(
            final_stage.lines().any(|l| l.starts_with(directive)),
            "{directive}…] (exec form, no shell) in the final stage"
        );
    }
}

// === Kubernetes ===
