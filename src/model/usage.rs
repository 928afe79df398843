//! Compute usage names (the quota counters `az vm list-usage` shows) for
//! managed disks and snapshots by SKU, and what a disk SKU implies for its
//! placement: domain vocabulary shared by the planner's quota check, the
//! target-disk body and the emulator.

/// True for a zone-redundant disk SKU (`Premium_ZRS`, `StandardSSD_ZRS`):
/// such a disk has no `zones`, Azure refuses one created with them, and it
/// attaches to a VM in any zone (facts §11).
pub fn is_zone_redundant(sku: &str) -> bool {
    sku.to_ascii_lowercase().ends_with("_zrs")
}

/// The Compute usage that counts managed disks of `sku`, when Azure has one.
/// Names from public usage listings (`az vm list-usage`): `StandardDiskCount`,
/// `StandardSSDDiskCount`, `PremiumDiskCount`, `UltraSSDDiskCount`. No
/// disk-count usage is known for Premium SSD v2: `None`.
pub fn disk_usage_name(sku: &str) -> Option<&'static str> {
    let s = sku.to_ascii_lowercase();
    if s.starts_with("premiumv2") {
        None
    } else if s.starts_with("premium") {
        Some("PremiumDiskCount")
    } else if s.starts_with("standardssd") {
        Some("StandardSSDDiskCount")
    } else if s.starts_with("ultrassd") {
        Some("UltraSSDDiskCount")
    } else {
        Some("StandardDiskCount")
    }
}

/// The Compute usage that counts snapshots of `sku` (`StandardSnapshotCount`,
/// `PremiumSnapshotCount`, `ZRSSnapshotCount`; names as for disks).
/// Incremental snapshots without a `sku` are `Standard_LRS` [INFERRED].
pub fn snapshot_usage_name(sku: &str) -> &'static str {
    let s = sku.to_ascii_lowercase();
    if s.starts_with("premium") {
        "PremiumSnapshotCount"
    } else if s.ends_with("_zrs") {
        "ZRSSnapshotCount"
    } else {
        "StandardSnapshotCount"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_names() {
        assert_eq!(disk_usage_name("Premium_LRS"), Some("PremiumDiskCount"));
        assert_eq!(
            disk_usage_name("StandardSSD_ZRS"),
            Some("StandardSSDDiskCount")
        );
        assert_eq!(disk_usage_name("Standard_LRS"), Some("StandardDiskCount"));
        assert_eq!(disk_usage_name("PremiumV2_LRS"), None);
        assert_eq!(snapshot_usage_name("Standard_ZRS"), "ZRSSnapshotCount");
        assert_eq!(snapshot_usage_name("Standard_LRS"), "StandardSnapshotCount");
    }
}
