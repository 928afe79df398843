//! The in-guest check (`--guest-check`): the Run Command script sent to the
//! VM and the pure reading of its output.
//!
//! Wire (Compute REST spec, `runCommandExamples/VirtualMachineRunCommand.json`;
//! azure-cli `vm run-command invoke`): `POST .../virtualMachines/{vm}/runCommand`
//! with `{"commandId": "RunPowerShellScript" | "RunShellScript", "script": [lines]}`,
//! a long-running operation whose result is `{"value": [{"code":
//! "ComponentStatus/StdOut/succeeded", "message": STDOUT}, {"code":
//! "ComponentStatus/StdErr/succeeded", "message": STDERR}]}` (Windows); the
//! Linux agent puts both streams in one message (`Enable succeeded: [stdout] ...
//! [stderr] ...`). The script prints one marker line per volume, so the
//! reading does not depend on either layout or on the guest's locale.
//!
//! Why before the copy on Windows (facts §2.4; MicrosoftDocs
//! `disk-encryption-migrate.md`): the API can report "decrypted" while
//! BitLocker is still decrypting in the background; copying then would copy
//! BitLocker-encrypted sectors onto a disk that boots without the key.

use serde_json::{Value, json};

use super::record::OsType;

/// The marker that starts each line of the script's report.
pub const MARKER: &str = "ade2eah-volume";

/// The Run Command body for `os`: Windows reads BitLocker's per-volume
/// status (the data `manage-bde -status` prints, through the BitLocker
/// module so it is locale-independent); Linux lists block devices, where a
/// `crypt` device or a `crypto_LUKS` filesystem means dm-crypt is on.
pub fn run_command_body(os: OsType) -> Value {
    match os {
        OsType::Windows => json!({
            "commandId": "RunPowerShellScript",
            "script": [
                "Get-BitLockerVolume | ForEach-Object { \"ade2eah-volume $($_.MountPoint) $($_.VolumeStatus) $([int]$_.EncryptionPercentage)\" }"
            ]
        }),
        OsType::Linux => json!({
            "commandId": "RunShellScript",
            "script": [
                "lsblk -rno NAME,TYPE,FSTYPE | while read n t f; do echo \"ade2eah-volume /dev/$n ${t:-none} ${f:-none}\"; done"
            ]
        }),
    }
}

/// One volume as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestVolume {
    /// Mount point (Windows `C:`) or device (`/dev/sdc1`).
    pub name: String,
    /// True when the volume is encrypted or still being decrypted.
    pub encrypted: bool,
    /// The guest's words for it (`FullyDecrypted`, `DecryptionInProgress 37`, `crypt`).
    pub status: String,
}

/// What the in-guest check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestReport {
    /// Every volume reported.
    pub volumes: Vec<GuestVolume>,
}

impl GuestReport {
    /// Volumes still encrypted (or decrypting).
    pub fn encrypted(&self) -> Vec<&GuestVolume> {
        self.volumes.iter().filter(|v| v.encrypted).collect()
    }

    /// `C: DecryptionInProgress 37; D: FullyEncrypted 100`.
    pub fn describe_encrypted(&self) -> String {
        self.encrypted()
            .iter()
            .map(|v| format!("{} {}", v.name, v.status))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads a Run Command result (the LRO output) for `os`. `None` when the
/// output has no marker line at all (the script did not run as expected).
pub fn parse(os: OsType, output: &Value) -> Option<GuestReport> {
    let text: Vec<&str> = output
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("message").and_then(Value::as_str))
        .collect();
    let mut volumes = Vec::new();
    for line in text.iter().flat_map(|t| t.lines()) {
        let mut parts = line.split_whitespace();
        if parts.next() != Some(MARKER) {
            continue;
        }
        let fields: Vec<&str> = parts.collect();
        let Some(name) = fields.first() else {
            continue;
        };
        let v = match os {
            OsType::Windows => {
                let status = fields.get(1).copied().unwrap_or("Unknown");
                let pct = fields.get(2).copied().unwrap_or("?");
                GuestVolume {
                    name: (*name).to_string(),
                    // Only "FullyDecrypted" is done; "DecryptionInProgress",
                    // "EncryptionInProgress", "FullyEncrypted" and the
                    // paused states all leave encrypted sectors.
                    encrypted: !status.eq_ignore_ascii_case("FullyDecrypted"),
                    status: format!("{status} {pct}%"),
                }
            }
            OsType::Linux => {
                let kind = fields.get(1).copied().unwrap_or("none");
                let fs = fields.get(2).copied().unwrap_or("none");
                GuestVolume {
                    name: (*name).to_string(),
                    encrypted: kind.eq_ignore_ascii_case("crypt")
                        || fs.eq_ignore_ascii_case("crypto_LUKS"),
                    status: format!("{kind} {fs}"),
                }
            }
        };
        volumes.push(v);
    }
    (!volumes.is_empty()).then_some(GuestReport { volumes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_bitlocker_still_decrypting_counts_as_encrypted() {
        let out = json!({"value": [
            {"code": "ComponentStatus/StdOut/succeeded", "message": "ade2eah-volume C: FullyDecrypted 0\nade2eah-volume F: DecryptionInProgress 37\n"},
            {"code": "ComponentStatus/StdErr/succeeded", "message": ""}]});
        let r = parse(OsType::Windows, &out).unwrap();
        assert_eq!(r.volumes.len(), 2);
        assert_eq!(r.describe_encrypted(), "F: DecryptionInProgress 37%");
        let done = json!({"value": [{"message": "ade2eah-volume C: FullyDecrypted 0"}]});
        assert!(
            parse(OsType::Windows, &done)
                .unwrap()
                .encrypted()
                .is_empty()
        );
    }

    #[test]
    fn linux_crypt_devices_and_luks_are_encrypted() {
        let out = json!({"value": [{"code": "ProvisioningState/succeeded",
            "message": "Enable succeeded: \n[stdout]\nade2eah-volume /dev/sda disk none\nade2eah-volume /dev/sdc1 part crypto_LUKS\nade2eah-volume /dev/mapper/x crypt ext4\n[stderr]\n"}]});
        let r = parse(OsType::Linux, &out).unwrap();
        assert_eq!(r.volumes.len(), 3);
        assert_eq!(r.encrypted().len(), 2);
        assert!(parse(OsType::Linux, &json!({"value": [{"message": "oops"}]})).is_none());
    }
}
