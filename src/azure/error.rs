//! Azure errors and their classification: the one place where status codes
//! and error codes become retry decisions.
//!
//! Contract of [`classify`]: an exhaustive `match` over [`AzureError`] and
//! over [`KnownCode`] (no wildcard arm), so adding a variant or a known code
//! forces a decision. Unknown codes fall back by HTTP status class: 5xx,
//! 408 and 429 transient; other 4xx terminal.

use std::fmt;
use std::time::Duration;

use crate::model::redact;

/// A failed Azure call. Every text field is already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureError {
    /// ARM answered with an error status and (usually) an error envelope.
    Http {
        /// HTTP status.
        status: u16,
        /// `error.code` (or a synthetic one when the body had none).
        code: String,
        /// `error.message`, with the innermost detail appended when useful.
        message: String,
        /// `Retry-After` / `retry-after-ms` / `x-ms-retry-after-ms`, if sent.
        retry_after: Option<Duration>,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    Operation {
        /// `error.code` of the operation.
        code: String,
        /// `error.message` of the operation.
        message: String,
    },
    /// The storage data plane answered with an error.
    Storage {
        /// HTTP status.
        status: u16,
        /// `x-ms-error-code` / `<Code>`.
        code: String,
        /// `<Message>`.
        message: String,
        /// Server-requested delay, if any.
        retry_after: Option<Duration>,
        /// For `CannotVerifyCopySource`: the source's status and code.
        copy_source: Option<(u16, String)>,
    },
    /// No answer: connection refused or dropped, or a timeout.
    Transport {
        /// What happened (no URL, no secret).
        message: String,
        /// True for timeouts.
        timeout: bool,
    },
    /// An answer that could not be understood (broken JSON, missing fields).
    Malformed {
        /// What was wrong.
        message: String,
    },
    /// Credentials could not be obtained or were refused locally.
    Auth {
        /// What happened.
        message: String,
    },
    /// The copy engine refused to go on (size mismatch, bad footer...).
    Copy {
        /// What was wrong and what to do.
        message: String,
    },
}

impl AzureError {
    /// The Azure error code, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AzureError::Http { code, .. }
            | AzureError::Operation { code, .. }
            | AzureError::Storage { code, .. } => Some(code),
            AzureError::Transport { .. }
            | AzureError::Malformed { .. }
            | AzureError::Auth { .. }
            | AzureError::Copy { .. } => None,
        }
    }

    /// The server-requested delay, when one was sent.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Http { retry_after, .. } | AzureError::Storage { retry_after, .. } => {
                *retry_after
            }
            AzureError::Operation { .. }
            | AzureError::Transport { .. }
            | AzureError::Malformed { .. }
            | AzureError::Auth { .. }
            | AzureError::Copy { .. } => None,
        }
    }

    /// Builds a transport error from reqwest's, without URL (it may hold a SAS).
    pub fn transport(e: reqwest::Error) -> Self {
        let timeout = e.is_timeout();
        let e = e.without_url();
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        AzureError::Transport {
            message: redact(&message),
            timeout,
        }
    }

    /// A malformed-response error.
    pub fn malformed(what: impl fmt::Display) -> Self {
        AzureError::Malformed {
            message: redact(&what.to_string()),
        }
    }
}

impl fmt::Display for AzureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureError::Http {
                status,
                code,
                message,
                ..
            } => write!(f, "{code} (HTTP {status}): {message}"),
            AzureError::Operation { code, message } => {
                write!(f, "operation failed: {code}: {message}")
            }
            AzureError::Storage {
                status,
                code,
                message,
                copy_source,
                ..
            } => {
                write!(f, "storage {code} (HTTP {status}): {message}")?;
                if let Some((s, c)) = copy_source {
                    write!(f, " (copy source answered {s} {c})")?;
                }
                Ok(())
            }
            AzureError::Transport {
                message,
                timeout: true,
            } => write!(f, "timed out: {message}"),
            AzureError::Transport {
                message,
                timeout: false,
            } => write!(f, "connection failed: {message}"),
            AzureError::Malformed { message } => {
                write!(f, "unexpected response from Azure: {message}")
            }
            AzureError::Auth { message } => write!(f, "authentication failed: {message}"),
            AzureError::Copy { message } => write!(f, "copy refused: {message}"),
        }
    }
}

impl std::error::Error for AzureError {}

/// The verdict on a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying may help (conflict, 5xx, timeout, capacity, NIC reservation).
    Transient {
        /// Server-requested delay, honoured exactly.
        retry_after: Option<Duration>,
    },
    /// Throttled (429 or `TooManyRequests`): wait exactly `retry_after`.
    Throttled {
        /// Server-requested delay.
        retry_after: Option<Duration>,
    },
    /// The platform holds the resource for a stated time
    /// (`NicReservedForAnotherVm`: 180 s after a VM delete). Retry at a
    /// steady pace without spending step attempts until the hold has
    /// clearly passed: exponential backoff would overshoot the end of the
    /// hold by up to the hold itself, which is pure downtime.
    Held {
        /// How long Azure says it holds the resource.
        hold: Duration,
    },
    /// Retrying will not help; `remedy` tells the operator what to do.
    Terminal {
        /// What to do about it.
        remedy: String,
    },
}

impl ErrorClass {
    /// True unless terminal.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ErrorClass::Terminal { .. })
    }
}

/// The NIC hold after a VM delete when the message does not state it (facts §5.1).
pub const NIC_HOLD: Duration = Duration::from_secs(180);

/// The hold a message states: "... reserved ... for 180 seconds ...".
fn stated_hold(lower: &str) -> Option<Duration> {
    lower.match_indices(" for ").find_map(|(at, _)| {
        let rest = &lower[at + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let secs: u64 = digits.parse().ok()?;
        rest[digits.len()..]
            .trim_start()
            .starts_with("second")
            .then(|| Duration::from_secs(secs.min(3600)))
    })
}

/// Error codes whose meaning is documented (facts §7.3, peers §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownCode {
    /// `OperationNotAllowed` (409 conflicts, or 429 Compute throttling).
    OperationNotAllowed,
    /// `AnotherOperationInProgress`.
    AnotherOperationInProgress,
    /// `Conflict`, `ConflictingUserInput`, `OperationPreempted`, `NicInUse`.
    Conflict,
    /// `TooManyRequests`, `SubscriptionRequestsThrottled`, `ResourceRequestsThrottled`.
    Throttled,
    /// `RetryableErrorDueToAnotherOperation` (Network).
    RetryableDueToAnotherOperation,
    /// `NicReservedForAnotherVm`: the 180 s NIC hold after a VM delete.
    NicReserved,
    /// `AllocationFailed`, `ZonalAllocationFailed`, `OverConstrainedAllocationRequest`.
    Allocation,
    /// `SkuNotAvailable`: capacity restriction of a size in a region or zone.
    SkuNotAvailable,
    /// `InternalServerError`, `InternalOperationError`, `InternalExecutionError`, `ServiceUnavailable`, `ServerBusy`, `OperationTimedOut`, `GatewayTimeout`.
    ServerSide,
    /// `VMExtensionProvisioningTimeout`.
    ExtensionTimeout,
    /// `VMExtensionProvisioningError`: the guest extension reported a failure.
    ExtensionFailed,
    /// `InvalidVhd` at revoke of an upload disk.
    InvalidVhd,
    /// `ResourceNotFound`, `NotFound`, `BlobNotFound`.
    NotFound,
    /// `AuthorizationFailed`, `AuthenticationFailed`, `InvalidAuthenticationToken*`, `AuthorizationPermissionMismatch`.
    Auth,
    /// `CannotVerifyCopySource`: the copy source (its SAS) failed.
    CopySource,
    /// `InvalidParameter`, `BadRequest`, `InvalidRequestContent`, ... (platform refusals).
    BadRequest,
    /// `ScopeLocked`: a management lock forbids the change.
    Locked,
    /// `PrincipalNotFound`: a role assignment for a principal the directory
    /// does not know yet (a system-assigned principal created moments ago
    /// replicates within minutes; Microsoft docs "Assign Azure roles using
    /// the REST API", principalType).
    PrincipalNotFound,
    /// `RequestDisallowedByPolicy`: an Azure Policy `deny` assignment.
    Policy,
    /// Anything else.
    Other,
}

impl KnownCode {
    /// Parses an Azure error code (case-insensitive).
    pub fn parse(code: &str) -> KnownCode {
        match code.to_ascii_lowercase().as_str() {
            "operationnotallowed" => KnownCode::OperationNotAllowed,
            "anotheroperationinprogress" => KnownCode::AnotherOperationInProgress,
            // `NicInUse` (400, a NIC DELETE while a VM still holds the NIC):
            // a state that ends when the detach does, as a conflict.
            "conflict" | "conflictinguserinput" | "operationpreempted" | "nicinuse" => {
                KnownCode::Conflict
            }
            "toomanyrequests" | "subscriptionrequeststhrottled" | "resourcerequeststhrottled" => {
                KnownCode::Throttled
            }
            "retryableerrorduetoanotheroperation" => KnownCode::RetryableDueToAnotherOperation,
            "nicreservedforanothervm" => KnownCode::NicReserved,
            "allocationfailed"
            | "zonalallocationfailed"
            | "overconstrainedallocationrequest"
            | "overconstrainedzonalallocationrequest" => KnownCode::Allocation,
            "skunotavailable" => KnownCode::SkuNotAvailable,
            "internalservererror"
            | "internaloperationerror"
            | "internalexecutionerror"
            | "serviceunavailable"
            | "serverbusy"
            | "operationtimedout"
            | "gatewaytimeout"
            | "internalerror" => KnownCode::ServerSide,
            "vmextensionprovisioningtimeout" => KnownCode::ExtensionTimeout,
            "vmextensionprovisioningerror" | "vmextensionhandlernonexistent" => {
                KnownCode::ExtensionFailed
            }
            "invalidvhd" => KnownCode::InvalidVhd,
            "resourcenotfound"
            | "notfound"
            | "blobnotfound"
            | "resourcegroupnotfound"
            | "subscriptionnotfound" => KnownCode::NotFound,
            "authorizationfailed"
            | "authenticationfailed"
            | "invalidauthenticationtoken"
            | "invalidauthenticationtokentenant"
            | "expiredauthenticationtoken"
            | "authorizationpermissionmismatch"
            | "linkedauthorizationfailed" => KnownCode::Auth,
            "cannotverifycopysource" => KnownCode::CopySource,
            "invalidparameter"
            | "badrequest"
            | "invalidrequestcontent"
            | "invalidrequestformat"
            | "propertychangenotallowed"
            | "vmmarketplaceinvalidinput"
            | "invalidheadervalue"
            | "invalidpagerange"
            | "invalidrange"
            | "requestbodytoolarge"
            | "md5mismatch"
            | "crc64mismatch"
            | "invalidoperation" => KnownCode::BadRequest,
            "scopelocked" => KnownCode::Locked,
            "principalnotfound" => KnownCode::PrincipalNotFound,
            "requestdisallowedbypolicy" => KnownCode::Policy,
            _ => KnownCode::Other,
        }
    }
}

/// The EAH refusal for a VM or disk that ever had ADE (facts §3.2).
const EVER_ADE_TEXT: &str =
    "encryption at host is not allowed for a vm having disks that were encrypted";
/// The feature-flag refusal (facts §6).
const FEATURE_TEXT: &str = "feature is not enabled for this subscription";

fn terminal(remedy: impl Into<String>) -> ErrorClass {
    ErrorClass::Terminal {
        remedy: remedy.into(),
    }
}

/// Decides whether `e` is worth retrying, and if not, what the operator
/// should do. The only function in the crate that makes that decision.
pub fn classify(e: &AzureError) -> ErrorClass {
    match e {
        AzureError::Transport { .. } => ErrorClass::Transient { retry_after: None },
        AzureError::Malformed { .. } => ErrorClass::Transient { retry_after: None },
        AzureError::Auth { .. } => terminal(
            "check the credentials (`az login`, or the AZURE_* variables of --auth sp/msi/workload) and that the identity may read the subscription",
        ),
        AzureError::Copy { .. } => terminal(
            "the target disk will be re-created by `ade2eah resume`; if this repeats, report it with `ade2eah status --output json`",
        ),
        AzureError::Http {
            status,
            code,
            message,
            retry_after,
        } => by_code(*status, KnownCode::parse(code), message, *retry_after),
        AzureError::Storage {
            status,
            code,
            message,
            retry_after,
            copy_source,
        } => {
            if let (KnownCode::CopySource, Some((s, _))) = (KnownCode::parse(code), copy_source) {
                // The source SAS expired or was revoked: a new grant fixes it.
                if *s == 401 || *s == 403 || *s >= 500 {
                    return ErrorClass::Transient {
                        retry_after: *retry_after,
                    };
                }
            }
            // On the data plane the only credential is the SAS itself: a 403
            // means it expired or was revoked, and a new grant fixes it.
            if *status == 401 || *status == 403 {
                return ErrorClass::Transient {
                    retry_after: *retry_after,
                };
            }
            by_code(*status, KnownCode::parse(code), message, *retry_after)
        }
        AzureError::Operation { code, message } => {
            by_code(0, KnownCode::parse(code), message, None)
        }
    }
}

fn by_code(
    status: u16,
    code: KnownCode,
    message: &str,
    retry_after: Option<Duration>,
) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    let transient = ErrorClass::Transient { retry_after };
    match code {
        KnownCode::Throttled => ErrorClass::Throttled { retry_after },
        // Compute throttling is `OperationNotAllowed` with HTTP 429 (facts §7.4).
        KnownCode::OperationNotAllowed if status == 429 => ErrorClass::Throttled { retry_after },
        KnownCode::OperationNotAllowed | KnownCode::Conflict if lower.contains(EVER_ADE_TEXT) => {
            ever_ade()
        }
        KnownCode::OperationNotAllowed => operation_not_allowed(&lower, retry_after),
        KnownCode::AnotherOperationInProgress
        | KnownCode::Conflict
        | KnownCode::RetryableDueToAnotherOperation => transient,
        KnownCode::NicReserved => ErrorClass::Held {
            hold: stated_hold(&lower).unwrap_or(NIC_HOLD),
        },
        KnownCode::Allocation
        | KnownCode::SkuNotAvailable
        | KnownCode::ServerSide
        | KnownCode::ExtensionTimeout => transient,
        // A reinstalled extension (not ADE) names its publisher in Azure's
        // message ("... (publisher 'P' and type 'T') ...").
        KnownCode::ExtensionFailed
            if lower.contains("publisher '") && !lower.contains("azurediskencryption") =>
        {
            terminal(
                "an extension reinstalled on the re-created VM reported a failure inside the guest; read its message above, fix the cause (the extension's own logs in the guest), delete the failed extension (`az vm extension delete`), then run `ade2eah resume` to install it again; the VM itself is migrated and running",
            )
        }
        KnownCode::ExtensionFailed => terminal(
            "the ADE extension reported a failure inside the guest; read its message above, inspect the guest (`manage-bde -status` on Windows, `cryptsetup status`/`lsblk` on Linux), fix the cause, then run `ade2eah resume`",
        ),
        KnownCode::PrincipalNotFound => transient,
        KnownCode::InvalidVhd => terminal(
            "the copied disk has no valid fixed-VHD footer; `ade2eah resume` deletes that target disk (created by this run) and copies again",
        ),
        KnownCode::NotFound => terminal(
            "the resource is gone or the id is wrong; check the activity log, then run `ade2eah resume`",
        ),
        KnownCode::Auth => terminal(
            "the identity lacks a permission (`ade2eah permissions --check` names what is missing; `ade2eah permissions` prints the role); grant it, then run `ade2eah resume`",
        ),
        KnownCode::Locked => terminal(locked_remedy(message)),
        KnownCode::Policy => terminal(
            "an Azure Policy assignment denies this request (identifiers in the message); ask its owner for an exemption or change the request, then run `ade2eah resume`",
        ),
        KnownCode::BadRequest | KnownCode::CopySource if lower.contains(EVER_ADE_TEXT) => {
            ever_ade()
        }
        KnownCode::BadRequest | KnownCode::CopySource if lower.contains(FEATURE_TEXT) => terminal(
            "register the subscription feature: `az feature register --namespace Microsoft.Compute --name EncryptionAtHost`, wait until Registered, run `az provider register -n Microsoft.Compute`, then `ade2eah resume`",
        ),
        KnownCode::BadRequest | KnownCode::CopySource => terminal(
            "Azure refused the request as invalid; read the message, fix the cause (or report it), then run `ade2eah resume`",
        ),
        KnownCode::Other => match status {
            0 => transient,
            408 | 429 => ErrorClass::Throttled { retry_after },
            s if s >= 500 => transient,
            _ => terminal(
                "Azure refused the request; read the message, fix the cause, then run `ade2eah resume`",
            ),
        },
    }
}

/// `OperationNotAllowed` is Compute's catch-all for refusals (facts §11,
/// §7.3). Its 429 form is throttling (handled before this). Otherwise it is
/// terminal by default; only the documented forms that describe a state
/// already moving on by itself (another operation running, a delete or power
/// change under way, a resource still being provisioned or deleted) are
/// retried. The terminal forms name what the operator does:
///
/// | message contains | verdict |
/// |---|---|
/// | "another operation is in progress", "marked for deletion", "ongoing operation", "is being deleted", "provisioning state" (or "provisioningState") | transient |
/// | "quota" / "exceed" (core, disk or snapshot quota) | terminal: raise the quota |
/// | "availability zone" / "zonal" (e.g. a `*_ZRS` disk with zones) | terminal: zone vs disk SKU |
/// | "failed state" (an extension in a failed state) | terminal: fix or remove the extension |
/// | "activeupload" / "readytoupload" / "activesas" (a disk with open upload/SAS access) | terminal: `resume` revokes access first |
/// | anything else | terminal: read the message |
fn operation_not_allowed(lower: &str, retry_after: Option<Duration>) -> ErrorClass {
    const IN_FLUX: [&str; 6] = [
        "another operation is in progress",
        "marked for deletion",
        "ongoing operation",
        "is being deleted",
        "provisioning state",
        "provisioningstate",
    ];
    if IN_FLUX.iter().any(|m| lower.contains(m)) {
        return ErrorClass::Transient { retry_after };
    }
    if lower.contains("quota") || lower.contains("exceed") {
        return terminal(
            "a quota is exhausted (cores, disks or snapshots in the region); raise it (`az vm list-usage -l <region>`, then a quota request) or free capacity, then run `ade2eah resume`",
        );
    }
    if lower.contains("availability zone") || lower.contains("zonal") {
        return terminal(
            "Azure refuses this zone placement (a zone-redundant `*_ZRS` disk takes no zone; a zonal disk cannot join an availability set); check the disk SKU and the VM's zone, fix the cause, then run `ade2eah resume`",
        );
    }
    if lower.contains("failed state") {
        return terminal(
            "an extension on the VM is in a failed state and blocks VM operations; fix or remove that extension (`az vm extension list`, `az vm extension delete`), then run `ade2eah resume`",
        );
    }
    if ["activeupload", "readytoupload", "activesas"]
        .iter()
        .any(|s| lower.contains(s))
    {
        return terminal(
            "a disk still has upload or SAS access open; run `ade2eah resume` (it revokes access it opened first); if the access is not this run's, end it with `az disk revoke-access`",
        );
    }
    terminal(
        "Azure does not allow this operation in the resource's current state; read the message, fix the cause, then run `ade2eah resume`",
    )
}

/// The remedy of a `ScopeLocked` refusal, naming the locked scope(s) from
/// Azure's message ("... because following scope(s) are locked: '<scope>'.").
fn locked_remedy(message: &str) -> String {
    let scopes = message
        .split_once("are locked:")
        .map(|(_, rest)| {
            rest.split(". Please")
                .next()
                .unwrap_or(rest)
                .split(',')
                .map(|s| {
                    s.trim()
                        .trim_matches('\'')
                        .trim_end_matches('.')
                        .to_string()
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        return "a management lock (ReadOnly or CanNotDelete) blocks the change; remove the lock on the VM, its disks, NICs, resource group or subscription for the migration window (`az lock list`), re-add it after, then run `ade2eah resume`".into();
    }
    let list = scopes.join(", ");
    let first = &scopes[0];
    format!(
        "a management lock on {list} blocks the change (the refused request changed nothing). Remove that lock for the migration window (`az lock list --scope {first}`, then `az lock delete --ids <lock id>`), re-add it once the VM is verified, then run `ade2eah resume`"
    )
}

fn ever_ade() -> ErrorClass {
    terminal(
        "Azure refuses encryption at host for a VM resource or disk that ever had ADE; ade2eah only enables it on re-created VMs with Upload disks, so this VM or one of its disks is not the clean copy: run `ade2eah status` and check which disks are attached",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str, message: &str) -> AzureError {
        AzureError::Http {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    }

    #[test]
    fn the_nic_reservation_is_a_hold_of_the_stated_time() {
        let msg = "Nic(s) in request is reserved for another Virtual Machine for 180 seconds. Please provide another nic(s) or retry after 180 seconds. Reserved VM: /subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v";
        assert_eq!(
            classify(&http(400, "NicReservedForAnotherVm", msg)),
            ErrorClass::Held {
                hold: Duration::from_secs(180)
            }
        );
        let short = msg.replace("for 180 seconds", "for 90 seconds");
        assert_eq!(
            classify(&http(400, "NicReservedForAnotherVm", &short)),
            ErrorClass::Held {
                hold: Duration::from_secs(90)
            }
        );
        assert_eq!(
            classify(&http(400, "NicReservedForAnotherVm", "reserved")),
            ErrorClass::Held { hold: NIC_HOLD }
        );
    }

    #[test]
    fn scope_locked_is_terminal_and_names_the_lock_scope() {
        let rg = "/subscriptions/s/resourceGroups/rg-a";
        let m = format!(
            "The scope '{rg}/providers/Microsoft.Compute/virtualMachines/v' cannot perform delete operation because following scope(s) are locked: '{rg}'. Please remove the lock and try again."
        );
        match classify(&http(409, "ScopeLocked", &m)) {
            ErrorClass::Terminal { remedy } => {
                assert!(remedy.contains(&format!("lock on {rg} blocks")), "{remedy}");
                assert!(remedy.contains("ade2eah resume"), "{remedy}");
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn documented_transients_are_retried() {
        for (s, c) in [
            (409, "AnotherOperationInProgress"),
            (409, "SkuNotAvailable"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
            (429, "RetryableErrorDueToAnotherOperation"),
            (400, "NicInUse"),
        ] {
            assert!(
                matches!(classify(&http(s, c, "x")), ErrorClass::Transient { .. }),
                "{s} {c}"
            );
        }
        assert!(matches!(
            classify(&AzureError::Operation {
                code: "ZonalAllocationFailed".into(),
                message: "no capacity".into()
            }),
            ErrorClass::Transient { .. }
        ));
        assert!(matches!(
            classify(&AzureError::Transport {
                message: "reset".into(),
                timeout: true
            }),
            ErrorClass::Transient { .. }
        ));
    }

    /// The `OperationNotAllowed` table: only its throttling form and the
    /// documented "state is moving on" forms are retried (facts §7.3, §11).
    #[test]
    fn operation_not_allowed_is_terminal_unless_in_flux_or_throttling() {
        let transient = [
            "Operation 'start' is not allowed on VM 'v' since another operation is in progress.",
            "Operation 'start' is not allowed on VM 'v' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete).",
            "An ongoing operation is changing power state of Virtual Machine v to Running. Please perform operation start after some time.",
            "Disk 'd' is being deleted.",
            "Disk 'd' cannot be attached while its provisioning state is 'Updating'.",
        ];
        for m in transient {
            assert!(
                matches!(
                    classify(&http(409, "OperationNotAllowed", m)),
                    ErrorClass::Transient { .. }
                ),
                "{m}"
            );
        }
        let terminal = [
            (
                "Operation could not be completed as it results in exceeding approved Total Regional Cores quota.",
                "quota",
            ),
            (
                "Disk d with SKU Premium_ZRS cannot be created in an availability zone.",
                "ZRS",
            ),
            (
                "Operation 'start' is not allowed on VM 'v' since VM has extension 'mon' in failed state.",
                "extension",
            ),
            (
                "Disk 'd' cannot be attached while it is in state 'ActiveUpload'.",
                "revokes",
            ),
            ("Something new.", "read the message"),
        ];
        for (m, hint) in terminal {
            match classify(&http(409, "OperationNotAllowed", m)) {
                ErrorClass::Terminal { remedy } => {
                    assert!(remedy.contains(hint), "{m}: {remedy}");
                    assert!(remedy.contains("resume"), "{m}: {remedy}");
                }
                c => panic!("{m}: {c:?}"),
            }
        }
        // The same refusal as the result of a long-running operation.
        assert!(matches!(
            classify(&AzureError::Operation {
                code: "OperationNotAllowed".into(),
                message: terminal[0].0.into()
            }),
            ErrorClass::Terminal { .. }
        ));
        assert!(matches!(
            classify(&http(429, "OperationNotAllowed", terminal[0].0)),
            ErrorClass::Throttled { .. }
        ));
    }

    #[test]
    fn throttling_keeps_retry_after_exactly() {
        assert_eq!(
            classify(&http(429, "OperationNotAllowed", "too many")),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(&http(429, "SubscriptionRequestsThrottled", "x")),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn platform_refusals_are_terminal_with_a_remedy() {
        let ever = http(
            400,
            "BadRequest",
            "Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption",
        );
        let ErrorClass::Terminal { remedy } = classify(&ever) else {
            panic!()
        };
        assert!(remedy.contains("ever had ADE"));
        let feat = http(
            400,
            "InvalidParameter",
            "The property 'securityProfile.encryptionAtHost' is not valid because the 'Microsoft.Compute/EncryptionAtHost' feature is not enabled for this subscription.",
        );
        let ErrorClass::Terminal { remedy } = classify(&feat) else {
            panic!()
        };
        assert!(remedy.contains("az feature register"));
        assert!(matches!(
            classify(&AzureError::Operation {
                code: "VMExtensionProvisioningError".into(),
                message: "x".into()
            }),
            ErrorClass::Terminal { .. }
        ));
        assert!(matches!(
            classify(&http(403, "AuthorizationFailed", "x")),
            ErrorClass::Terminal { .. }
        ));
        assert!(matches!(
            classify(&http(418, "Teapot", "x")),
            ErrorClass::Terminal { .. }
        ));
        assert!(matches!(
            classify(&http(502, "Teapot", "x")),
            ErrorClass::Transient { .. }
        ));
    }

    #[test]
    fn expired_destination_sas_is_transient() {
        let e = AzureError::Storage {
            status: 403,
            code: "AuthenticationFailed".into(),
            message: "x".into(),
            retry_after: None,
            copy_source: None,
        };
        assert!(matches!(classify(&e), ErrorClass::Transient { .. }));
    }

    #[test]
    fn expired_copy_source_is_transient() {
        let e = AzureError::Storage {
            status: 403,
            code: "CannotVerifyCopySource".into(),
            message: "x".into(),
            retry_after: None,
            copy_source: Some((403, "AuthenticationFailed".into())),
        };
        assert!(matches!(classify(&e), ErrorClass::Transient { .. }));
    }
}
