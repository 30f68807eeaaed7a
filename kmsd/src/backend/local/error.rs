//! Why the local backend cannot start.

use std::{io, path::PathBuf};

use crate::crypto::CryptoError;

/// Why the key directory cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file-system call failed.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        #[source]
        source: io::Error,
    },
    /// Group or others may access a key file or the directory.
    #[error(
        "{path} is accessible by group or others; kmsd refuses to use it (fix: chmod go-rwx {path})"
    )]
    LoosePermissions {
        /// The file or directory.
        path: PathBuf,
    },
    /// Another process holds the directory's lock.
    #[error("key directory {0} is in use by another kmsd process")]
    Locked(PathBuf),
    /// The directory is sealed but no secret was configured.
    #[error(
        "key directory {0} is sealed: configure its passphrase or key file ([backend.sealing] in the config)"
    )]
    SealedWithoutSecret(PathBuf),
    /// Sealing was configured for a directory holding unsealed keys.
    #[error(
        "key directory {0} holds unsealed key files; sealing can only be turned on for a new, empty key directory"
    )]
    UnsealedKeysPresent(PathBuf),
    /// The passphrase or key file does not open the directory.
    #[error("wrong passphrase or key file for the sealed key directory {0}")]
    WrongSealingSecret(PathBuf),
    /// A passphrase was given for a key-file-sealed directory or the reverse.
    #[error("{path} says the directory was sealed with {sealed_with}; configure that instead")]
    SealingSecretKindMismatch {
        /// The sealing file.
        path: PathBuf,
        /// What it was sealed with.
        sealed_with: &'static str,
    },
    /// The sealing file is damaged.
    #[error("{path}: {reason}")]
    BadSealingFile {
        /// The sealing file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A new sealing was asked for with a passphrase that is too short.
    #[error(
        "the sealing passphrase is shorter than {min} bytes; use a longer passphrase (or a key file of 32 random bytes)"
    )]
    WeakPassphrase {
        /// The minimum.
        min: usize,
    },
    /// A cryptographic primitive failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// Serialisation failed.
    #[error("cannot encode the sealing file: {0}")]
    Encode(String),
}
