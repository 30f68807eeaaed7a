//! Where kmsd listens: a unix domain socket (the sidecar default) or TCP.

use std::{fmt, path::PathBuf, str::FromStr};

use crate::Error;

/// The address of a kmsd instance.
///
/// Written as `unix:/path/to/kmsd.sock` (also `unix:///path`) or
/// `http://host:port`.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix domain socket.
    Unix(PathBuf),
    /// Plain-text HTTP/2 over TCP, e.g. `http://127.0.0.1:7373` (kmsd
    /// serves it only with `danger_plaintext_tcp`).
    Http(String),
    /// HTTP/2 over (mutual) TLS, e.g. `https://kmsd.internal:7373`; needs
    /// [`crate::TlsSettings`].
    Https(String),
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| Error::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("the unix socket path is empty"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        for (scheme, make) in [
            ("http://", Endpoint::Http as fn(String) -> Endpoint),
            ("https://", Endpoint::Https),
        ] {
            if let Some(authority) = s.strip_prefix(scheme) {
                let authority = authority.trim_end_matches('/');
                if authority.is_empty() || authority.contains('/') {
                    return Err(invalid("expected http(s)://host:port"));
                }
                return Ok(make(s.trim_end_matches('/').to_owned()));
            }
        }
        Err(invalid(
            "expected unix:/path, http://host:port or https://host:port",
        ))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Http(url) | Endpoint::Https(url) => f.write_str(url),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let unix: Endpoint = "unix:/run/kmsd/kmsd.sock".parse().unwrap();
        assert_eq!(unix, Endpoint::Unix("/run/kmsd/kmsd.sock".into()));
        let unix3: Endpoint = "unix:///run/kmsd/kmsd.sock".parse().unwrap();
        assert_eq!(unix3, unix);
        let tcp: Endpoint = "http://127.0.0.1:7373".parse().unwrap();
        assert_eq!(tcp.to_string(), "http://127.0.0.1:7373");
        let tls: Endpoint = "https://kmsd.internal:7373/".parse().unwrap();
        assert_eq!(tls, Endpoint::Https("https://kmsd.internal:7373".into()));
        for bad in [
            "",
            "unix:",
            "tcp://x",
            "127.0.0.1:7373",
            "http://h/path",
            "https://",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
