//! Process hardening at startup: no core dumps (a core of kmsd holds every
//! master key in memory), no ptrace by other processes of the same user,
//! and optionally no swapping (`mlockall`).

use rustix::{
    mm::{MlockAllFlags, mlockall},
    process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit},
};

/// Why hardening that was asked for failed.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// `security.mlock` is on but the kernel refused.
    #[error(
        "mlockall failed ({0}); give kmsd CAP_IPC_LOCK and LimitMEMLOCK=infinity, or turn security.mlock off"
    )]
    Mlock(rustix::io::Errno),
}

/// Applies the hardening; failures of the always-on parts are logged, a
/// failure of a requested `mlockall` is an error.
pub fn harden_process(mlock: bool) -> Result<(), HardeningError> {
    if let Err(e) = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        tracing::warn!(error = %e, "cannot set RLIMIT_CORE to 0");
    }
    // Also keeps other processes of the same user from attaching with
    // ptrace and reading /proc/<pid>/mem.
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot turn off core dumps (PR_SET_DUMPABLE)");
    }
    if mlock {
        mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE).map_err(HardeningError::Mlock)?;
        tracing::info!("memory locked (mlockall): keys are never swapped out");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_dumps_are_off_after_hardening() {
        harden_process(false).unwrap();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            DumpableBehavior::NotDumpable
        );
        let limit = rustix::process::getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
    }
}
