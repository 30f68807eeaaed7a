//! Time, injectable so tests can move it (deletion windows are days long).

use std::fmt;
#[cfg(test)]
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to.
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

#[cfg(test)]
impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Formats a time as RFC 3339, the form used in key files and messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A duration as messages and docs write it: whole milliseconds, shown as
/// `250ms`, `2s` or `1.5s`. A deadline that is what remained of another
/// (9.999999799 s) prints as the round figure it stands for (`10s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub std::time::Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = (self.0.as_micros() + 500) / 1000;
        if millis < 1000 {
            return write!(f, "{millis}ms");
        }
        let (secs, rest) = (millis / 1000, millis % 1000);
        if rest == 0 {
            write!(f, "{secs}s")
        } else {
            let fraction = format!("{rest:03}");
            write!(f, "{secs}.{}s", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Secs;

    #[test]
    fn durations_print_as_the_docs_write_them() {
        for (duration, shown) in [
            (Duration::from_nanos(9_999_999_799), "10s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(2250), "2.25s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(999_600), "1s"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(Secs(duration).to_string(), shown, "{duration:?}");
        }
    }
}
