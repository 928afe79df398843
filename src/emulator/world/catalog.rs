//! The catalog: VM sizes (Compute SKUs with their capabilities and
//! restrictions) and the `EncryptionAtHost` feature registration.

use super::*;

/// A VM size and the capabilities the platform rules read.
pub(super) struct Sku {
    pub(super) name: &'static str,
    pub(super) family: &'static str,
    pub(super) eah: bool,
    pub(super) hyperv: &'static str,
    pub(super) vcpus: u32,
    pub(super) mem_gb: u32,
    pub(super) restricted: bool,
}

pub(super) const SKUS: &[Sku] = &[
    Sku {
        name: "Standard_D2s_v3",
        family: "standardDSv3Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 2,
        mem_gb: 8,
        restricted: false,
    },
    Sku {
        name: "Standard_D4s_v5",
        family: "standardDSv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 4,
        mem_gb: 16,
        restricted: false,
    },
    Sku {
        name: "Standard_D8s_v5",
        family: "standardDSv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 8,
        mem_gb: 32,
        restricted: false,
    },
    Sku {
        name: "Standard_E8s_v5",
        family: "standardESv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 8,
        mem_gb: 64,
        restricted: false,
    },
    Sku {
        name: "Standard_DS1_v2",
        family: "standardDSv2Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 1,
        mem_gb: 3,
        restricted: false,
    },
    Sku {
        name: "Standard_A2_v2",
        family: "standardAv2Family",
        eah: false,
        hyperv: "V1",
        vcpus: 2,
        mem_gb: 4,
        restricted: false,
    },
    Sku {
        name: "Standard_M416ms_v2",
        family: "standardMSv2Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 416,
        mem_gb: 11400,
        restricted: true,
    },
];

pub(super) fn sku(name: &str) -> Option<&'static Sku> {
    SKUS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Feature registration state.
#[derive(Debug, Clone, Copy)]
pub(super) enum Feature {
    NotRegistered,
    Registering(f64),
    Registered,
}

impl World {
    pub(super) fn feature_body(&self, sub: &str) -> Value {
        let state = match self
            .features
            .get(&sub.to_ascii_lowercase())
            .copied()
            .unwrap_or(Feature::NotRegistered)
        {
            Feature::NotRegistered => "NotRegistered",
            Feature::Registering(_) => "Registering",
            Feature::Registered => "Registered",
        };
        json!({
            "name": "Microsoft.Compute/EncryptionAtHost",
            "id": format!("/subscriptions/{}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost", sub),
            "type": "Microsoft.Features/providers/features",
            "properties": {"state": state},
        })
    }

    /// `GET` a feature (only `EncryptionAtHost` exists).
    pub(crate) fn feature_get(&self, sub: &str, name: &str) -> Result<Value, ArmError> {
        if !name.eq_ignore_ascii_case("EncryptionAtHost") {
            return Err(ArmError::new(
                404,
                "FeatureNotFound",
                format!("The feature '{name}' could not be found."),
            ));
        }
        Ok(self.feature_body(sub))
    }

    /// `POST .../register` of a feature.
    pub(crate) fn feature_register(
        &mut self,
        sub: &str,
        name: &str,
        now: f64,
    ) -> Result<Value, ArmError> {
        self.feature_get(sub, name)?;
        let f = self
            .features
            .entry(sub.to_ascii_lowercase())
            .or_insert(Feature::NotRegistered);
        if matches!(f, Feature::NotRegistered) {
            *f = Feature::Registering(now + self.feature_secs);
        }
        Ok(self.feature_body(sub))
    }

    /// `GET .../providers/Microsoft.Compute/skus`.
    /// Restricts VM size `size` in `zone` for the subscription.
    pub(crate) fn restrict_size_in_zone(&mut self, size: &str, zone: &str) {
        self.zone_restrictions
            .entry(size.to_ascii_lowercase())
            .or_default()
            .insert(zone.to_string());
    }

    /// `SkuNotAvailable` (409, facts §7.3) when `size` is restricted in `zone`.
    pub(super) fn check_size_zone(&self, size: &str, zone: Option<&str>) -> Result<(), ArmError> {
        let Some(z) = zone else {
            return Ok(());
        };
        if self
            .zone_restrictions
            .get(&size.to_ascii_lowercase())
            .is_some_and(|zs| zs.contains(z))
        {
            return Err(ArmError::new(
                409,
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{}' zones '{z}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.",
                    self.location
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn skus(&self) -> Value {
        let loc = &self.location;
        let value: Vec<Value> = SKUS
            .iter()
            .map(|s| {
                let mut restrictions = if s.restricted {
                    json!([{"type": "Location", "values": [loc], "restrictionInfo": {"locations": [loc]}, "reasonCode": "NotAvailableForSubscription"}])
                } else {
                    json!([])
                };
                // Zone restrictions (facts §6.2: `restrictions` of type
                // `Zone`, `restrictionInfo.zones`; REST spec example
                // `ListAvailableResourceSkusForARegion.json`).
                if let Some(zones) = self.zone_restrictions.get(&s.name.to_ascii_lowercase())
                    && let Some(a) = restrictions.as_array_mut()
                {
                    a.push(json!({"type": "Zone", "values": [loc],
                        "restrictionInfo": {"locations": [loc], "zones": zones},
                        "reasonCode": "NotAvailableForSubscription"}));
                }
                json!({
                    "resourceType": "virtualMachines", "name": s.name, "tier": "Standard",
                    "size": s.name.trim_start_matches("Standard_"), "family": s.family,
                    "locations": [loc], "locationInfo": [{"location": loc, "zones": ["1", "2", "3"], "zoneDetails": []}],
                    "capabilities": [
                        {"name": "vCPUs", "value": s.vcpus.to_string()},
                        {"name": "MemoryGB", "value": s.mem_gb.to_string()},
                        {"name": "HyperVGenerations", "value": s.hyperv},
                        {"name": "PremiumIO", "value": if s.name.contains('s') { "True" } else { "False" }},
                        {"name": "EncryptionAtHostSupported", "value": if s.eah { "True" } else { "False" }},
                        {"name": "TrustedLaunchDisabled", "value": "False"},
                    ],
                    "restrictions": restrictions,
                })
            })
            .collect();
        json!({"value": value})
    }
}
