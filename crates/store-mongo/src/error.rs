//! This crate's error type and how driver failures become idenfy-core's `StoreError`.

use std::time::Duration;

use idenfy_core::StoreError;
use mongodb::error::{ErrorKind, WriteFailure};

/// MongoDB's duplicate-key error code (E11000).
const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "not now" rather than "never": time limits, shutdowns,
/// elections and network trouble reported by the server itself.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// What can go wrong talking to MongoDB. Port methods return [`StoreError`]; this type is
/// what [`crate::MongoStores::connect`] returns and what every driver error passes through
/// on its way to a `StoreError` (the driver error stays the `source`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver failed (invalid URI, network, server error, ...).
    #[error("MongoDB driver error")]
    Driver(#[from] mongodb::error::Error),
    /// The operation did not finish within the configured per-operation timeout.
    #[error("MongoDB operation timed out after {0:?}")]
    Timeout(Duration),
    /// Serialised mode: another writer held the document's write mutex for that long.
    #[error("waited {0:?} for another writer of the same document (FerretDB write mutex)")]
    MutexTimeout(Duration),
    /// Our own value could not be turned into BSON (an id that is not an ObjectId).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it could not be.
        reason: String,
    },
}

impl Error {
    /// Whether the server rejected the request itself (as opposed to not answering).
    pub(crate) fn is_server_rejection(&self) -> bool {
        match self {
            Error::Driver(error) => {
                matches!(
                    error.kind.as_ref(),
                    ErrorKind::Command(_) | ErrorKind::Write(_) | ErrorKind::InvalidArgument { .. }
                ) && !self.is_transient()
            }
            Error::Timeout(_) | Error::MutexTimeout(_) | Error::Encode { .. } => false,
        }
    }

    pub(crate) fn is_duplicate_key(&self) -> bool {
        let Error::Driver(error) = self else {
            return false;
        };
        match error.kind.as_ref() {
            ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
            ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
            ErrorKind::InsertMany(insert) => insert
                .write_errors
                .iter()
                .flatten()
                .any(|write| write.code == DUPLICATE_KEY),
            _ => false,
        }
    }

    fn is_transient(&self) -> bool {
        let error = match self {
            Error::Timeout(_) | Error::MutexTimeout(_) => return true,
            Error::Encode { .. } => return false,
            Error::Driver(error) => error,
        };
        if error.contains_label("RetryableWriteError") {
            return true;
        }
        match error.kind.as_ref() {
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown => true,
            ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
            ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
                TRANSIENT_CODES.contains(&concern.code)
            }
            _ => false,
        }
    }
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        if error.is_duplicate_key() {
            StoreError::Conflict
        } else if error.is_transient() {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Backend(Box::new(error))
        }
    }
}
