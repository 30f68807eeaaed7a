use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;

fn event<'a>(caller: String, key: &'a str) -> AuditEvent<'a> {
    AuditEvent {
        time: now(),
        caller,
        operation: "Decrypt",
        key_id: Some(key),
        key_version: Some(1),
        destination_key_id: None,
        intermediate_key: None,
        destination_intermediate_key: None,
        alias: None,
        context_sha256: Some("ab".repeat(32)),
        context: None,
        outcome: "ok",
        code: "OK",
        reason: None,
        offline: false,
        duration_us: 12,
    }
}

fn to_file(path: &Path) -> AuditSettings {
    AuditSettings {
        output: AuditOutput::File(path.to_owned()),
        ..AuditSettings::default()
    }
}

#[tokio::test]
async fn events_are_one_json_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&to_file(&path), Metrics::new()).unwrap();
    for key in ["a", "b"] {
        log.record(&event("unix:uid=0,gid=0".into(), key))
            .await
            .unwrap();
    }
    // Written before record returned: no flush, no wait.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["key_id"], "b");
    assert_eq!(lines[0]["operation"], "Decrypt");
    assert!(lines[0].get("context").is_none());
    assert!(lines[0].get("offline").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_interleave_lines() {
    const TASKS: usize = 8;
    const LINES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let metrics = Metrics::new();
    let log = Arc::new(AuditLog::open(&to_file(&path), metrics.clone()).unwrap());
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                // Long lines, so that a torn write would show.
                let key = format!("{t}-{}", "k".repeat(200));
                for _ in 0..LINES {
                    log.record(&event(format!("task {t}"), &key)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut per_task = [0usize; TASKS];
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let t: usize = event["caller"].as_str().unwrap()[5..].parse().unwrap();
        assert!(
            event["key_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{t}-"))
        );
        per_task[t] += 1;
    }
    assert_eq!(per_task, [LINES; TASKS]);
    assert_eq!(metrics.audit_events.get(), (TASKS * LINES) as u64);
}

/// A sink that records each write call and can be held shut.
#[derive(Clone, Default)]
struct Recorder {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    gate: Arc<Mutex<()>>,
    entered: Arc<std::sync::atomic::AtomicUsize>,
    fail: bool,
}

impl io::Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _open = self.gate.lock().unwrap();
        if self.fail {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"));
        }
        self.writes.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// While the sink is stuck, requests wait for their lines without taking
/// a runtime worker (this runtime has one thread, and it keeps running
/// other tasks); the lines that arrived meanwhile go out in one write.
#[tokio::test(flavor = "current_thread")]
// The held lock is the stuck sink: holding it across awaits is the test.
#[allow(clippy::await_holding_lock)]
async fn a_stuck_sink_holds_up_only_the_requests_waiting_for_it() {
    let sink = Recorder::default();
    let log = Arc::new(
        AuditLog::with_sink(
            Box::new(sink.clone()),
            &AuditSettings::default(),
            Metrics::new(),
        )
        .unwrap(),
    );
    log.record(&event("first".into(), "k")).await.unwrap();
    let held = sink.gate.lock().unwrap();
    // The next line is taken by the writer, which blocks in write.
    let blocked = tokio::spawn({
        let log = Arc::clone(&log);
        async move { log.record(&event("blocked".into(), "k")).await }
    });
    while sink.entered.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waiting: Vec<_> = (0..5)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.record(&event(format!("w{i}"), "k")).await })
        })
        .collect();
    // The runtime's only thread still runs tasks.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!blocked.is_finished());
    drop(held);
    blocked.await.unwrap().unwrap();
    for task in waiting {
        task.await.unwrap().unwrap();
    }
    let writes = sink.writes.lock().unwrap();
    let lines: Vec<usize> = writes
        .iter()
        .map(|w| w.iter().filter(|b| **b == b'\n').count())
        .collect();
    assert_eq!(lines, [1, 1, 5], "one write for the five lines that waited");
}

#[tokio::test]
async fn a_failed_write_is_reported_to_the_request_and_counted() {
    let metrics = Metrics::new();
    let sink = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let log =
        AuditLog::with_sink(Box::new(sink), &AuditSettings::default(), metrics.clone()).unwrap();
    let err = log.record(&event("c".into(), "k")).await.unwrap_err();
    assert!(err.to_string().contains("reader gone"), "{err}");
    assert_eq!(metrics.audit_errors.get(), 1);
    assert_eq!(log.on_failure(), OnFailure::Refuse);
}

/// The file writer reports a failed `write(2)` to the request and counts
/// it (here a file opened read-only, so every write fails).
#[tokio::test]
async fn a_failed_file_write_is_reported_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, b"").unwrap();
    let metrics = Metrics::new();
    let writer = AuditWriter::append_only(std::fs::File::open(&path).unwrap(), metrics.clone());
    assert!(writer.append(b"x\n".to_vec()).await.is_err());
    assert_eq!(metrics.audit_errors.get(), 1);
    assert_eq!(metrics.audit_events.get(), 0);
}
