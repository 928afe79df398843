//! Target encryption: which at-rest encryption each new disk gets, chosen
//! once per VM ([`TargetEncryption`], journaled in
//! [`super::VmFacts::target_encryption`]) and resolved per disk against the
//! journaled source disk model ([`expected`]). One place decides it; the
//! target-disk body, validate-before-delete, the final verification and the
//! plan all read it from here.
//!
//! Azure facts (facts.md §1.3, §3.3, §5.3): a managed disk's
//! `encryption.type` is `EncryptionAtRestWithPlatformKey` (PMK, the default),
//! `EncryptionAtRestWithCustomerKey` (CMK, with `diskEncryptionSetId`) or
//! `EncryptionAtRestWithPlatformAndCustomerKeys` (double encryption, also with
//! a DES); it is set on the new `Upload` disk at create time. Encryption at
//! host does not change a disk's at-rest type (facts §8). A source on a DES
//! whose target silently became PMK would be a downgrade, so the source's
//! choice is carried unless the operator asks otherwise.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::ResourceId;
use crate::model::views::DiskModel;

/// `encryption.type` of a platform-key disk.
pub const PLATFORM_KEY: &str = "EncryptionAtRestWithPlatformKey";
/// `encryption.type` of a customer-key disk (needs a DES).
pub const CUSTOMER_KEY: &str = "EncryptionAtRestWithCustomerKey";
/// `encryption.type` of a double-encrypted disk (needs a DES).
pub const PLATFORM_AND_CUSTOMER_KEYS: &str = "EncryptionAtRestWithPlatformAndCustomerKeys";

/// The operator's choice for the new disks of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum TargetEncryption {
    /// Each new disk gets its source disk's encryption (type and DES).
    #[default]
    Carry,
    /// `--platform-keys`: every new disk on platform-managed keys.
    PlatformKeys,
    /// `--disk-encryption-set ID`: every new disk on this DES.
    DiskEncryptionSet {
        /// The DES (boxed: the facts stay small).
        id: Box<ResourceId>,
    },
}

impl TargetEncryption {
    /// Short label for plans and status (`carry`, `platform-keys`, `des:NAME`).
    pub fn label(&self) -> String {
        match self {
            TargetEncryption::Carry => "carry".into(),
            TargetEncryption::PlatformKeys => "platform-keys".into(),
            TargetEncryption::DiskEncryptionSet { id } => format!("des:{}", id.name()),
        }
    }
}

/// The at-rest encryption a disk has (observed) or must have (expected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEncryption {
    /// `encryption.type`.
    pub kind: String,
    /// `encryption.diskEncryptionSetId`, parsed (CMK types only).
    pub des: Option<ResourceId>,
}

impl DiskEncryption {
    /// Platform-managed keys.
    pub fn platform() -> Self {
        DiskEncryption {
            kind: PLATFORM_KEY.into(),
            des: None,
        }
    }

    /// The encryption a disk model states (a model without `encryption`
    /// is a platform-key disk: the service default).
    pub fn of_disk(model: &Value) -> Self {
        let p = DiskModel::new(model).properties();
        let kind = p.encryption_type().unwrap_or(PLATFORM_KEY).to_string();
        let des = p
            .disk_encryption_set_id()
            .filter(|s| !s.is_empty())
            .and_then(|s| ResourceId::parse(s).ok());
        DiskEncryption { kind, des }
    }

    /// True for a type that needs a DES.
    pub fn uses_customer_key(&self) -> bool {
        !self.kind.eq_ignore_ascii_case(PLATFORM_KEY)
    }

    /// True when `other` is the same type and the same DES (ids compared
    /// case-insensitively, as ARM does).
    pub fn matches(&self, other: &DiskEncryption) -> bool {
        self.kind.eq_ignore_ascii_case(&other.kind)
            && self.des.as_ref().map(ResourceId::key) == other.des.as_ref().map(ResourceId::key)
    }

    /// The `encryption` object of a disk PUT.
    pub fn body(&self) -> Value {
        match &self.des {
            Some(d) => json!({ "type": self.kind, "diskEncryptionSetId": d.as_str() }),
            None => json!({ "type": self.kind }),
        }
    }

    /// `PMK` or `CMK via <des>` (`PMK+CMK via <des>`), for messages.
    pub fn describe(&self) -> String {
        let short = if self.kind.eq_ignore_ascii_case(CUSTOMER_KEY) {
            "CMK"
        } else if self.kind.eq_ignore_ascii_case(PLATFORM_AND_CUSTOMER_KEYS) {
            "PMK+CMK"
        } else if self.kind.eq_ignore_ascii_case(PLATFORM_KEY) {
            "PMK"
        } else {
            &self.kind
        };
        match &self.des {
            Some(d) => format!("{short} via {}", d.name()),
            None => short.to_string(),
        }
    }
}

/// The encryption the new disk for the source `source_model` gets under
/// `choice`. Carry: the source's type and DES (a CMK type without a
/// readable DES id falls back to PMK, which validation then reports). A
/// requested DES: `EncryptionAtRestWithCustomerKey`, or double encryption
/// when the source already had it.
pub fn expected(choice: &TargetEncryption, source_model: &Value) -> DiskEncryption {
    let source = DiskEncryption::of_disk(source_model);
    match choice {
        TargetEncryption::PlatformKeys => DiskEncryption::platform(),
        TargetEncryption::Carry if source.uses_customer_key() && source.des.is_some() => source,
        TargetEncryption::Carry => DiskEncryption::platform(),
        TargetEncryption::DiskEncryptionSet { id } => DiskEncryption {
            kind: if source.kind.eq_ignore_ascii_case(PLATFORM_AND_CUSTOMER_KEYS) {
                PLATFORM_AND_CUSTOMER_KEYS.into()
            } else {
                CUSTOMER_KEY.into()
            },
            des: Some((**id).clone()),
        },
    }
}

/// The choice journaled for `rec`'s VM (carry when it has no facts).
pub fn choice_of(rec: &super::VmRecord) -> TargetEncryption {
    rec.facts
        .as_ref()
        .map(|f| f.target_encryption.clone())
        .unwrap_or_default()
}

/// Every DES the new disks of a VM use (distinct, first-seen order).
pub fn des_ids<'a>(
    choice: &TargetEncryption,
    source_models: impl IntoIterator<Item = &'a Value>,
) -> Vec<ResourceId> {
    let mut out: Vec<ResourceId> = Vec::new();
    for m in source_models {
        if let Some(d) = expected(choice, m).des
            && !out.iter().any(|o| o.key() == d.key())
        {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DES: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des1";

    fn cmk() -> Value {
        json!({"properties": {"encryption": {"type": CUSTOMER_KEY, "diskEncryptionSetId": DES}}})
    }

    #[test]
    fn carry_keeps_the_source_des_and_pmk_stays_pmk() {
        let e = expected(&TargetEncryption::Carry, &cmk());
        assert_eq!(e.kind, CUSTOMER_KEY);
        assert_eq!(e.des.as_ref().unwrap().name(), "des1");
        assert_eq!(e.body()["diskEncryptionSetId"], DES);
        let pmk = expected(&TargetEncryption::Carry, &json!({"properties": {}}));
        assert_eq!(pmk, DiskEncryption::platform());
        assert_eq!(pmk.body(), json!({"type": PLATFORM_KEY}));
    }

    #[test]
    fn requested_des_and_platform_keys_override_the_source() {
        let other = ResourceId::parse(&DES.replace("des1", "des2")).unwrap();
        let choice = TargetEncryption::DiskEncryptionSet {
            id: Box::new(other.clone()),
        };
        let e = expected(&choice, &json!({}));
        assert_eq!(e.kind, CUSTOMER_KEY);
        assert_eq!(e.des, Some(other));
        let double = json!({"properties": {"encryption": {"type": PLATFORM_AND_CUSTOMER_KEYS, "diskEncryptionSetId": DES}}});
        assert_eq!(expected(&choice, &double).kind, PLATFORM_AND_CUSTOMER_KEYS);
        assert_eq!(
            expected(&TargetEncryption::PlatformKeys, &cmk()),
            DiskEncryption::platform()
        );
        assert_eq!(
            des_ids(&TargetEncryption::Carry, [&cmk(), &cmk(), &json!({})]).len(),
            1
        );
    }

    #[test]
    fn matching_is_case_insensitive_on_ids_and_types() {
        let a = DiskEncryption::of_disk(&cmk());
        let upper = json!({"properties": {"encryption": {"type": CUSTOMER_KEY.to_uppercase(), "diskEncryptionSetId": DES.to_uppercase()}}});
        assert!(a.matches(&DiskEncryption::of_disk(&upper)));
        assert!(!a.matches(&DiskEncryption::platform()));
        assert_eq!(a.describe(), "CMK via des1");
    }
}
