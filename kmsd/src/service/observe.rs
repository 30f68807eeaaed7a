//! What every operation shares: admission, authorisation, the backend call
//! (under the caller's deadline), and the audit line and metrics at the
//! end.

use std::{future::Future, time::Instant};

use prometheus::IntGauge;
use tokio::sync::SemaphorePermit;
use tonic::Code;

use super::Kms;
use crate::{
    audit::{self, AuditEvent, OnFailure, WriteFailed},
    clock::Secs,
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
    lifecycle::Active,
    metrics::code_name,
    request::{Operation, RequestContext},
};

/// What the audit line of a request names, filled in as it is learned.
/// (The encryption context is passed to [`Kms::finish_in_context`] apart:
/// without a borrowed field this type can be handed to the async closures
/// of `data.rs`, which the `Send` check of the handlers needs.)
#[derive(Debug, Default)]
pub(super) struct Audit {
    pub(super) key_id: Option<KeyId>,
    pub(super) key_version: Option<u32>,
    pub(super) destination_key_id: Option<KeyId>,
    pub(super) intermediate_key: Option<String>,
    pub(super) destination_intermediate_key: Option<String>,
    pub(super) alias: Option<crate::alias::AliasName>,
    pub(super) offline: bool,
}

/// A concurrency permit; while held the request counts as in flight.
pub(super) struct Admission<'a> {
    _permit: SemaphorePermit<'a>,
    in_flight: &'a IntGauge,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Kms {
    /// Takes a concurrency permit or refuses at once: queueing would only
    /// turn overload into timeouts.
    pub(super) fn admit(&self) -> Result<Admission<'_>, KmsError> {
        let permit = self.inner.permits.try_acquire().map_err(|_| {
            KmsError::Overloaded(format!(
                "more than {} requests in flight; retry with backoff",
                self.inner.max_concurrent
            ))
        })?;
        let in_flight = &self.inner.metrics.in_flight;
        in_flight.inc();
        Ok(Admission {
            _permit: permit,
            in_flight,
        })
    }

    /// Checks the caller's policy for `op` on `key_id`. kmsd's reserved
    /// keys (`kmsd-internal-*`) are refused to every caller but kmsd itself,
    /// whatever the policy says.
    pub(super) fn authorize(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: Option<&KeyId>,
    ) -> Result<(), KmsError> {
        if let Some(key_id) = key_id.filter(|k| k.is_reserved())
            && cx.caller != crate::request::Identity::Internal
        {
            return Err(KmsError::ReservedKeyId(key_id.clone()));
        }
        if self.inner.policy.load().allows(&cx.caller, op, key_id) {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied)
        }
    }

    /// Whether `caller` may see `key_id` in a ListKeys page: the policy
    /// allows ListKeys on it (its key patterns match), and it is not one of
    /// kmsd's reserved keys.
    pub(super) fn may_list(&self, cx: &RequestContext, key_id: &KeyId) -> bool {
        !key_id.is_reserved()
            && self
                .inner
                .policy
                .load()
                .allows(&cx.caller, Operation::ListKeys, Some(key_id))
    }

    /// Whether `cx` may perform at least one operation (who may use gRPC
    /// reflection).
    pub fn allows_anything(&self, cx: &RequestContext) -> bool {
        self.inner.policy.load().allows_anything(&cx.caller)
    }

    /// Records the request's audit line and metrics, and returns its
    /// result: the request is answered only once its line is written. When
    /// the line cannot be written and `[audit] on_failure = "refuse"`, a
    /// success becomes `AUDIT_UNAVAILABLE` (nothing is handed out without
    /// a record; an error is answered as it was).
    pub(super) async fn finish<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        started: Instant,
        audit: &Audit,
        result: Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.finish_in_context(cx, op, started, audit, None, result)
            .await
    }

    /// [`Self::finish`] of a request bound to an encryption context, which
    /// the audit line records (its digest, and the entries with
    /// `include_context`).
    pub(super) async fn finish_in_context<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        started: Instant,
        audit: &Audit,
        context: Option<&EncryptionContext>,
        mut result: Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let log = &self.inner.audit;
        if log.is_enabled() {
            let caller = match self.inner.policy.load().name_of(&cx.caller) {
                Some(name) => format!("{} ({name})", cx.caller),
                None => cx.caller.to_string(),
            };
            let written = self
                .write_line(
                    caller,
                    op.as_str(),
                    started,
                    audit,
                    context,
                    result.as_ref().err(),
                )
                .await;
            if let Err(e) = written
                && result.is_ok()
                && log.on_failure() == OnFailure::Refuse
            {
                result = Err(KmsError::AuditUnavailable(e.to_string()));
            }
        }
        let (code, _) = code_and_reason(&result);
        self.inner
            .metrics
            .request(op, code, started.elapsed().as_secs_f64());
        result
    }

    /// Records what kmsd did on its own (the deletion sweep) as caller
    /// `kmsd`; it answers nobody, so a line that cannot be written is only
    /// counted and logged.
    pub(super) async fn audit_internal(
        &self,
        operation: &'static str,
        started: Instant,
        audit: &Audit,
        error: Option<&KmsError>,
    ) {
        if self.inner.audit.is_enabled() {
            let caller = crate::request::Identity::Internal.to_string();
            let _ = self
                .write_line(caller, operation, started, audit, None, error)
                .await;
        }
    }

    async fn write_line(
        &self,
        caller: String,
        operation: &'static str,
        started: Instant,
        audit: &Audit,
        context: Option<&EncryptionContext>,
        error: Option<&KmsError>,
    ) -> Result<(), WriteFailed> {
        let log = &self.inner.audit;
        let (code, reason) = match error {
            None => (Code::Ok, None),
            Some(e) => {
                let (code, reason) = e.code_and_reason();
                (code, Some(reason))
            }
        };
        log.record(&AuditEvent {
            time: audit::now(),
            caller,
            operation,
            key_id: audit.key_id.as_ref().map(KeyId::as_str),
            key_version: audit.key_version,
            destination_key_id: audit.destination_key_id.as_ref().map(KeyId::as_str),
            intermediate_key: audit.intermediate_key.as_deref(),
            destination_intermediate_key: audit.destination_intermediate_key.as_deref(),
            alias: audit.alias.as_ref().map(ToString::to_string),
            context_sha256: context.map(EncryptionContext::digest_hex),
            context: context
                .filter(|_| log.include_context())
                .map(EncryptionContext::entries),
            outcome: if error.is_none() { "ok" } else { "error" },
            code: code_name(code),
            reason,
            offline: audit.offline,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
        .await
    }

    /// Calls the backend under the caller's deadline for backend calls
    /// (`[limits] backend_timeout_secs`) and records the call. Failing fast
    /// while the backend is down is the backend's own circuit breaker's
    /// job: only it knows which calls need a round trip.
    pub(super) async fn backend_call<T>(
        &self,
        active: &Active,
        operation: &'static str,
        call: impl Future<Output = Result<T, KmsError>>,
    ) -> Result<T, KmsError> {
        let backend = active.kind().as_str();
        let started = Instant::now();
        let timeout = self.inner.backend_timeout;
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(KmsError::BackendUnavailable {
                backend,
                detail: format!("no answer within {}", Secs(timeout)),
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code_and_reason().1,
        };
        self.inner.metrics.backend_call(
            backend,
            operation,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }
}

fn code_and_reason<T>(result: &Result<T, KmsError>) -> (Code, Option<&'static str>) {
    match result {
        Ok(_) => (Code::Ok, None),
        Err(e) => {
            let (code, reason) = e.code_and_reason();
            (code, Some(reason))
        }
    }
}
