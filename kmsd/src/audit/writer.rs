//! The audit writer: a group commit, on a thread of its own for stdout,
//! on the requests' own threads for a file.
//!
//! To stdout, requests append their line to one shared buffer and wait on a oneshot
//! channel. The writer thread takes the whole buffer, writes it with one
//! `write_all` (a single `write(2)` unless the kernel cuts it short; the
//! thread is the only writer, so finishing a short write cannot interleave
//! another line), then wakes every request whose line the batch held. At
//! one request in flight this is one lock, one condvar wake-up of an idle
//! writer and one task wake-up; under load the lines of every request that
//! arrived during a write go out together in the next one, so the number
//! of system calls grows with write latency, not with the request rate.
//!
//! A slow sink (a stdout pipe nobody reads fast enough) holds up only the
//! requests waiting for their lines, never the runtime's worker threads;
//! the buffer is bounded by the requests in flight, since each waits for
//! its own line.
//!
//! A regular file is written by the requests themselves
//! ([`AuditWriter::append_only`]): one `write(2)` per line, on the
//! request's own worker thread, with no lock in kmsd. The file is opened
//! with `O_APPEND`, so the kernel appends each call whole (it takes the
//! end of the file and advances it under the inode's lock), and lines from
//! two workers never interleave. A `write(2)` to a file costs about a
//! microsecond (the page cache takes it). Both alternatives measured worse
//! (`benches/audit.rs`, docs/performance.md): a user-space mutex around the
//! file put a worker to sleep whenever the other held it (futex waits and
//! context switches, 3-4% of a GenerateDataKey profile); handing lines to
//! a writer thread cost two thread hand-offs, 14 µs at one request in
//! flight and a third of the service's throughput; a group commit led by
//! the first request (the others waiting for its next write) doubled p99
//! at 16 in flight and reached milliseconds at 64 on two workers. A crash
//! still loses at most the lines of requests not yet answered.

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// A line could not be written (the I/O error, as text: every request of
/// the batch gets a copy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WriteFailed(Arc<str>);

impl WriteFailed {
    pub(super) fn new(reason: String) -> Self {
        Self(reason.into())
    }
}

type Waiter = oneshot::Sender<Result<(), WriteFailed>>;

#[derive(Default)]
struct State {
    /// Lines not yet taken by the writer.
    buf: Vec<u8>,
    /// One per line in `buf`.
    waiters: Vec<Waiter>,
    /// The writer is waiting for lines: the next append must wake it.
    /// Appends while it writes need not, it looks again when done.
    idle: bool,
    /// The log is gone: the writer exits once the buffer is empty.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where lines go: a writer thread and the buffer it drains, or the sink
/// itself.
pub struct AuditWriter {
    mode: Mode,
}

enum Mode {
    Thread(Arc<Shared>),
    Inline(Arc<Inline>),
    Append(Arc<AppendFile>),
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

/// The inline writer: the sink under a mutex.
struct Inline {
    sink: Mutex<Box<dyn Write + Send>>,
    metrics: Metrics,
}

impl AuditWriter {
    /// Writes each line on the calling thread, under a mutex: what kmsd did
    /// for a file before [`Self::append_only`], kept as `benches/audit.rs`'s
    /// baseline.
    pub fn inline(sink: Box<dyn Write + Send>, metrics: Metrics) -> Self {
        Self {
            mode: Mode::Inline(Arc::new(Inline {
                sink: Mutex::new(sink),
                metrics,
            })),
        }
    }

    /// Writes each line with one `write(2)` to `file`, opened with
    /// `O_APPEND`, on the calling thread and without a lock: the kernel
    /// appends each call whole (the file's offset is taken and advanced
    /// under its inode lock), so concurrent lines never interleave, and no
    /// worker sleeps on a user-space mutex.
    pub fn append_only(file: std::fs::File, metrics: Metrics) -> Self {
        Self {
            mode: Mode::Append(Arc::new(AppendFile { file, metrics })),
        }
    }

    /// Starts the writer thread on `sink` (a group commit).
    pub fn start(sink: Box<dyn Write + Send>, metrics: Metrics) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, sink, &metrics)
            })?;
        Ok(Self {
            mode: Mode::Thread(shared),
        })
    }

    /// Appends `line` (one JSON line, newline included) and waits until the
    /// batch holding it is written.
    pub async fn append(&self, line: Vec<u8>) -> Result<(), WriteFailed> {
        let shared = match &self.mode {
            Mode::Thread(shared) => shared,
            Mode::Inline(inline) => return inline.write(&line),
            Mode::Append(file) => return file.write(&line),
        };
        let (done, written) = oneshot::channel();
        let wake = {
            let mut state = shared.lock();
            if state.closed {
                return Err(WriteFailed::new("the audit log is closed".into()));
            }
            state.buf.extend_from_slice(&line);
            state.waiters.push(done);
            std::mem::take(&mut state.idle)
        };
        if wake {
            shared.wake.notify_one();
        }
        written
            .await
            .unwrap_or_else(|_| Err(WriteFailed::new("the audit writer stopped".into())))
    }
}

impl Inline {
    fn write(&self, line: &[u8]) -> Result<(), WriteFailed> {
        let written = {
            let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
            sink.write_all(line).and_then(|()| sink.flush())
        };
        counted(&self.metrics, 1, written.map_err(|e| e.to_string()))
    }
}

/// Counts `lines` lines as written or failed, as `written` says.
fn counted(metrics: &Metrics, lines: u64, written: Result<(), String>) -> Result<(), WriteFailed> {
    match written {
        Ok(()) => {
            metrics.audit_events.inc_by(lines);
            Ok(())
        }
        Err(e) => {
            metrics.audit_errors.inc_by(lines);
            Err(WriteFailed::new(e))
        }
    }
}

/// A file opened with `O_APPEND`, written without a lock.
struct AppendFile {
    file: std::fs::File,
    metrics: Metrics,
}

impl AppendFile {
    fn write(&self, line: &[u8]) -> Result<(), WriteFailed> {
        // One call, never continued: a second call for the rest of a short
        // write could land after another thread's line. A regular file
        // takes a write whole unless it fails (a full disk), so a short
        // write is reported as the failure it is.
        let written = match (&self.file).write(line) {
            Ok(n) if n == line.len() => Ok(()),
            Ok(n) => Err(format!(
                "short write to the audit log: {n} of {} bytes",
                line.len()
            )),
            Err(e) => Err(e.to_string()),
        };
        counted(&self.metrics, 1, written)
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if let Mode::Thread(shared) = &self.mode {
            shared.lock().closed = true;
            shared.wake.notify_one();
        }
    }
}

fn run(shared: &Shared, mut sink: Box<dyn Write + Send>, metrics: &Metrics) {
    let (mut batch, mut waiters) = (Vec::new(), Vec::new());
    loop {
        {
            let mut state = shared.lock();
            while state.buf.is_empty() {
                if state.closed {
                    return;
                }
                state.idle = true;
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.idle = false;
            std::mem::swap(&mut batch, &mut state.buf);
            std::mem::swap(&mut waiters, &mut state.waiters);
        }
        let written = sink.write_all(&batch).and_then(|()| sink.flush());
        let lines = u64::try_from(waiters.len()).unwrap_or(u64::MAX);
        let outcome = counted(metrics, lines, written.map_err(|e| e.to_string()));
        for waiter in waiters.drain(..) {
            // A request that gave up waiting (its caller went away) needs
            // no answer.
            let _ = waiter.send(outcome.clone());
        }
        batch.clear();
    }
}
