//! deploy/systemd: the unit verifies and rates OK, its snippets apply, and its
//! filters allow what kmsd really calls.

use kmsd_tests::{binary, ctx, private_dir};
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use super::*;

fn systemd_dir() -> PathBuf {
    deploy_dir().join("systemd")
}

/// The unit with ExecStart pointing at the built binary (verify checks that
/// it exists and is executable), in a fresh directory; with `drop_ins`, the
/// unit's `kmsd.service.d/` too.
fn rendered_unit(drop_ins: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = private_dir();
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/kmsd "),
        "the unit runs /usr/local/bin/kmsd"
    );
    let kmsd = binary("kmsd");
    let rendered = unit.replace("/usr/local/bin/kmsd", &kmsd.display().to_string());
    let path = dir.path().join("kmsd.service");
    fs::write(&path, rendered).unwrap();
    if drop_ins {
        let source = systemd_dir().join("kmsd.service.d");
        let target = dir.path().join("kmsd.service.d");
        fs::create_dir(&target).unwrap();
        let confs = files_under(&source, ".conf");
        assert!(!confs.is_empty(), "kmsd.service.d/ holds drop-ins");
        for conf in confs {
            fs::copy(&conf, target.join(conf.file_name().unwrap())).unwrap();
        }
    }
    (dir, path)
}

#[test]
fn systemd_unit_verifies_without_a_single_warning() {
    for drop_ins in [false, true] {
        let (_dir, unit) = rendered_unit(drop_ins);
        let ran = run(Command::new(tool("systemd-analyze"))
            .arg("verify")
            .arg(&unit));
        // Unknown keys and bad values are only warnings (exit 0): any
        // output at all is a failure.
        assert!(
            ran.success && ran.stdout.is_empty() && ran.stderr.is_empty(),
            "systemd-analyze verify (drop-ins: {drop_ins}): {ran}"
        );
    }
}

/// The overall exposure and its rating, from the last line of
/// `systemd-analyze security`.
fn exposure(ran: &Ran) -> (f64, String) {
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure line: {ran}"));
    let rest = line.split(": ").nth(1).unwrap();
    let mut words = rest.split_whitespace();
    let score = words.next().unwrap().parse().unwrap();
    (score, words.next().unwrap().to_owned())
}

#[test]
fn systemd_unit_is_rated_ok_or_better() {
    for drop_ins in [false, true] {
        let (_dir, unit) = rendered_unit(drop_ins);
        // --threshold is the score times ten: fail above 2.0.
        let ran = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(&unit));
        assert!(ran.success, "systemd-analyze security: {ran}");
        let (score, rating) = exposure(&ran);
        assert!(
            score <= 2.0 && ["PERFECT", "SAFE", "OK"].contains(&rating.as_str()),
            "exposure {score} {rating} (drop-ins: {drop_ins}):\n{}",
            ran.stdout
        );
        eprintln!("systemd-analyze security (drop-ins: {drop_ins}): {score} {rating}");
    }
}

/// The unit's `Key=value` settings (last one wins, as for systemd; lists
/// kept whole per line).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn systemd_unit_keeps_the_settings_operations_rely_on() {
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    let settings = unit_settings(&unit);
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| k == key && v == value);
    for (key, value) in [
        ("Type", "notify"),
        ("User", "kmsd"),
        ("Group", "kmsd"),
        ("StateDirectory", "kmsd"),
        ("RuntimeDirectory", "kmsd"),
        ("UMask", "0077"),
        ("LimitCORE", "0"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert!(has(key, value), "kmsd.service lacks {key}={value}");
    }
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "WatchdogSec" && !v.is_empty()),
        "kmsd pets the watchdog: the unit must ask for it"
    );
    // The sample config names paths the unit provides.
    let config = fs::read_to_string(systemd_dir().join("kmsd.toml")).unwrap();
    let config: toml::Table = toml::from_str(&config).unwrap();
    let path = |table: &str, key: &str| -> String {
        let mut value = &config[table];
        for part in key.split('.') {
            value = &value[part];
        }
        value.as_str().unwrap().to_owned()
    };
    assert!(path("server", "unix_socket").starts_with("/run/kmsd/"));
    assert!(path("server", "state_dir").starts_with("/var/lib/kmsd/"));
    assert!(path("backend", "key_dir").starts_with("/var/lib/kmsd/"));
    let passphrase = path("backend", "sealing.passphrase_file");
    let credential = passphrase
        .strip_prefix("/run/credentials/kmsd.service/")
        .expect("the passphrase is a systemd credential of kmsd.service");
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "LoadCredential" && v.starts_with(&format!("{credential}:"))),
        "kmsd.service loads the credential {credential}"
    );
}

#[test]
fn sysusers_and_tmpfiles_snippets_apply_to_a_scratch_root() {
    let root = private_dir();
    fs::create_dir(root.path().join("etc")).unwrap();
    let ran = run(Command::new(tool("systemd-sysusers"))
        .arg(format!("--root={}", root.path().display()))
        .arg(systemd_dir().join("kmsd.sysusers.conf")));
    assert!(
        ran.success && ran.stderr.lines().all(|l| l.starts_with("Creating ")),
        "systemd-sysusers: {ran}"
    );
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let kmsd_user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("kmsd:"))
        .unwrap_or_else(|| panic!("no kmsd user in {passwd}"))
        .split(':')
        .collect();
    assert_eq!(kmsd_user[5], "/var/lib/kmsd", "home is the state directory");
    assert_eq!(kmsd_user[6], "/usr/sbin/nologin", "no login shell");
    let group = fs::read_to_string(root.path().join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("kmsd:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no kmsd group in {group}"));

    let ran = run(Command::new(tool("systemd-tmpfiles"))
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(systemd_dir().join("kmsd.tmpfiles.conf")));
    assert!(
        ran.success && ran.stderr.is_empty() && ran.stdout.is_empty(),
        "systemd-tmpfiles: {ran}"
    );
    let etc_kmsd = fs::metadata(root.path().join("etc/kmsd")).unwrap();
    assert_eq!(etc_kmsd.mode() & 0o7777, 0o750, "/etc/kmsd is 0750");
    assert_eq!(
        (etc_kmsd.uid(), etc_kmsd.gid()),
        (0, gid),
        "/etc/kmsd is root:kmsd"
    );
}

/// The syscalls a `SystemCallFilter=` group stands for, nested groups
/// expanded, as systemd-analyze lists them.
fn syscall_group(group: &str, cache: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if let Some(known) = cache.get(group) {
        return known.clone();
    }
    let ran = run(Command::new(tool("systemd-analyze")).args(["syscall-filter", group]));
    assert!(ran.success, "systemd-analyze syscall-filter {group}: {ran}");
    let mut calls = BTreeSet::new();
    for line in ran.stdout.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            calls.extend(syscall_group(line, cache));
        } else {
            calls.insert(line.to_owned());
        }
    }
    cache.insert(group.to_owned(), calls.clone());
    calls
}

/// A kmsd process that is killed if the test fails before it ends.
pub(crate) struct Guard(pub(crate) Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_units_seccomp_and_socket_filters_allow_what_kmsd_calls() {
    let unit = fs::read_to_string(systemd_dir().join("kmsd.service")).unwrap();
    let settings = unit_settings(&unit);
    let mut cache = BTreeMap::new();
    let mut allowed = BTreeSet::new();
    for (_, value) in settings.iter().filter(|(k, _)| k == "SystemCallFilter") {
        match value.strip_prefix('~') {
            Some(denied) => {
                for item in denied.split_whitespace() {
                    let calls = if item.starts_with('@') {
                        syscall_group(item, &mut cache)
                    } else {
                        BTreeSet::from([item.to_owned()])
                    };
                    allowed.retain(|c| !calls.contains(c));
                }
            }
            None => {
                for item in value.split_whitespace() {
                    if item.starts_with('@') {
                        allowed.extend(syscall_group(item, &mut cache));
                    } else {
                        allowed.insert(item.to_owned());
                    }
                }
            }
        }
    }
    assert!(allowed.len() > 100, "the filter resolved to {allowed:?}");
    let families: BTreeSet<String> = settings
        .iter()
        .filter(|(k, _)| k == "RestrictAddressFamilies")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
        .collect();

    // The systemd sample, under strace, through what a service does: start
    // (sealed key directory), serve data keys, answer a scrape, reload on
    // SIGHUP, stop on SIGTERM.
    let sample = Sample::from_file(&systemd_dir().join("kmsd.toml"));
    let staged = sample.stage();
    let trace = staged.root.path().join("strace.log");
    let kmsd = binary("kmsd");
    let strace_args = [
        "-f".as_ref(),
        "-qq".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        kmsd.as_os_str(),
    ];
    let mut guard = staged.spawn(&tool("strace"), &strace_args);
    staged.wait_ready(&mut guard).await;
    // root is the sample policy's operator: it may use every call.
    let client = kms_client::KmsClient::connect(kms_client::Endpoint::Unix(staged.socket()))
        .await
        .unwrap();
    let context = ctx(&[("bucket", "b")]);
    let key = client.generate_data_key(None, &context).await.unwrap();
    client.decrypt(&key.blob, &context, None).await.unwrap();
    staged.get("/metrics").await;
    let pid = guard.0.as_ref().unwrap().id();
    // strace's child is kmsd; signal it, not strace.
    let kmsd_pid = wait_for_child_pid(pid);
    signal(kmsd_pid, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(kmsd_pid, "TERM");
    let status = guard.0.take().unwrap().wait().unwrap();
    assert!(
        status.success(),
        "kmsd under strace failed:\n{}",
        staged.log()
    );

    let trace = fs::read_to_string(&trace).unwrap();
    let mut called = BTreeSet::new();
    let mut opened_families = BTreeSet::new();
    for line in trace.lines() {
        // "<pid> name(args…" (resumed and signal lines do not match).
        let Some(call) = line.split_once(' ').map(|(_, rest)| rest.trim_start()) else {
            continue;
        };
        let name: String = call
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !call[name.len()..].starts_with('(') {
            continue;
        }
        if name == "socket"
            && let Some(family) = call["socket(".len()..].split([',', ')']).next()
        {
            opened_families.insert(family.to_owned());
        }
        called.insert(name);
    }
    // execve is strace starting kmsd, before any filter would apply.
    called.remove("execve");
    assert!(called.len() > 20, "strace saw too little: {called:?}");
    let refused: Vec<_> = called.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "kmsd makes syscalls the unit's SystemCallFilter refuses: {refused:?}"
    );
    let refused: Vec<_> = opened_families.difference(&families).collect();
    assert!(
        refused.is_empty(),
        "kmsd opens sockets of families RestrictAddressFamilies refuses: {refused:?}"
    );
}

fn wait_for_child_pid(parent: u32) -> u32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "strace started no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn signal(pid: u32, name: &str) {
    let ran = run(Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string()));
    assert!(ran.success, "kill -{name} {pid}: {ran}");
}

// === container ===
