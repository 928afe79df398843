//! Parsed, validated Azure Resource Manager identifiers.
//!
//! Contract: a [`ResourceId`] always has the shape
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}`
//! optionally followed by `/{childType}/{childName}` pairs. It keeps the casing the
//! user (or Azure) wrote, but compares, hashes and keys case-insensitively, as ARM
//! does. Anything else (query strings, fragments, control characters, empty or
//! `..` segments, over-long ids) is rejected at parse time, so the rest of the
//! program never sees a malformed id.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id we accept. ARM ids are far shorter in practice; the bound keeps
/// hostile input from growing journals and logs.
const MAX_ID_LEN: usize = 1024;
/// Longest single segment (resource names are at most 80–90 characters on Azure).
const MAX_SEGMENT_LEN: usize = 260;

/// Why a string is not a usable ARM resource id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceIdError {
    /// The id is empty or only whitespace.
    #[error("the resource id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("the resource id is {0} characters long; at most {MAX_ID_LEN} are accepted")]
    TooLong(usize),
    /// The id contains a character ARM never uses in ids.
    #[error("the resource id contains the character {0:?}, which is not allowed in an ARM id")]
    BadChar(char),
    /// The id does not follow `/subscriptions/../resourceGroups/../providers/..`.
    #[error(
        "expected `/subscriptions/{{sub}}/resourceGroups/{{rg}}/providers/{{Namespace}}/{{type}}/{{name}}`, {0}"
    )]
    Shape(&'static str),
    /// A segment is empty, `.`/`..`, or too long.
    #[error(
        "segment {0} of the resource id is empty, `.`/`..`, or longer than {MAX_SEGMENT_LEN} characters"
    )]
    Segment(usize),
}

/// An ARM resource id such as a VM, disk, snapshot, NIC or extension id.
#[derive(Clone)]
pub struct ResourceId {
    /// The id as written (leading slash, no trailing slash).
    raw: String,
    /// Segment boundaries are recomputed on demand; ids are short.
    segments: Vec<(usize, usize)>,
}

impl ResourceId {
    /// Parses and validates `s`. Leading/trailing spaces and one trailing
    /// slash are tolerated and removed; everything else must be exact (a
    /// newline or other control character anywhere is refused).
    pub fn parse(s: &str) -> Result<Self, ResourceIdError> {
        let s = s.trim_matches(' ');
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Err(ResourceIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(ResourceIdError::TooLong(s.len()));
        }
        if let Some(c) = s.chars().find(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(
                    c,
                    '?' | '#' | '\\' | '%' | '"' | '<' | '>' | '*' | '&' | ':' | '|'
                )
        }) {
            return Err(ResourceIdError::BadChar(c));
        }
        if !s.starts_with('/') {
            return Err(ResourceIdError::Shape("but it does not start with '/'"));
        }
        let mut segments = Vec::new();
        let mut start = 1;
        for (i, part) in s[1..].split('/').enumerate() {
            if part.is_empty() || part == "." || part == ".." || part.len() > MAX_SEGMENT_LEN {
                return Err(ResourceIdError::Segment(i + 1));
            }
            segments.push((start, start + part.len()));
            start += part.len() + 1;
        }
        let id = ResourceId {
            raw: s.to_string(),
            segments,
        };
        let seg = |i: usize| id.segment(i).to_ascii_lowercase();
        if id.segments.len() < 8 {
            return Err(ResourceIdError::Shape("but it has too few segments"));
        }
        if seg(0) != "subscriptions" {
            return Err(ResourceIdError::Shape(
                "but it does not start with /subscriptions/",
            ));
        }
        if seg(2) != "resourcegroups" {
            return Err(ResourceIdError::Shape(
                "but the third segment is not resourceGroups",
            ));
        }
        if seg(4) != "providers" {
            return Err(ResourceIdError::Shape(
                "but the fifth segment is not providers",
            ));
        }
        if !id.segment(5).contains('.') {
            return Err(ResourceIdError::Shape(
                "but the provider namespace has no '.' (e.g. Microsoft.Compute)",
            ));
        }
        if !id.segments.len().is_multiple_of(2) {
            return Err(ResourceIdError::Shape(
                "but a resource type has no name after it",
            ));
        }
        Ok(id)
    }

    /// Builds the id of a top-level resource from its parts.
    ///
    /// Panics only if a part is empty or contains `/` (a programming error);
    /// user input must go through [`ResourceId::parse`].
    pub fn new(
        subscription: &str,
        resource_group: &str,
        namespace: &str,
        rtype: &str,
        name: &str,
    ) -> Self {
        let raw = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{namespace}/{rtype}/{name}"
        );
        Self::parse(&raw)
            .unwrap_or_else(|e| panic!("ResourceId::new built an invalid id {raw:?}: {e}"))
    }

    /// The id of a child resource (for example `extensions/{name}` of a VM).
    pub fn child(&self, rtype: &str, name: &str) -> Self {
        let raw = format!("{}/{rtype}/{name}", self.raw);
        Self::parse(&raw)
            .unwrap_or_else(|e| panic!("ResourceId::child built an invalid id {raw:?}: {e}"))
    }

    /// The id of a resource of another type in the same resource group
    /// (for example the disk `name` next to a VM).
    pub fn sibling(&self, namespace: &str, rtype: &str, name: &str) -> Self {
        Self::new(
            self.subscription(),
            self.resource_group(),
            namespace,
            rtype,
            name,
        )
    }

    fn segment(&self, i: usize) -> &str {
        let (a, b) = self.segments[i];
        &self.raw[a..b]
    }

    /// The subscription id (a GUID on Azure; any safe segment is accepted).
    pub fn subscription(&self) -> &str {
        self.segment(1)
    }

    /// The resource group name.
    pub fn resource_group(&self) -> &str {
        self.segment(3)
    }

    /// The provider namespace, e.g. `Microsoft.Compute`.
    pub fn namespace(&self) -> &str {
        self.segment(5)
    }

    /// The full type, e.g. `virtualMachines` or `virtualMachines/extensions`.
    pub fn resource_type(&self) -> String {
        (6..self.segments.len())
            .step_by(2)
            .map(|i| self.segment(i))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The last name segment, e.g. the VM or disk name.
    pub fn name(&self) -> &str {
        self.segment(self.segments.len() - 1)
    }

    /// The parent resource of a child id (`None` for a top-level resource).
    pub fn parent(&self) -> Option<ResourceId> {
        if self.segments.len() <= 8 {
            return None;
        }
        let (_, end) = self.segments[self.segments.len() - 3];
        Self::parse(&self.raw[..end]).ok()
    }

    /// True when the namespace and type match, case-insensitively
    /// (`is_type("Microsoft.Compute", "virtualMachines")`).
    pub fn is_type(&self, namespace: &str, rtype: &str) -> bool {
        self.namespace().eq_ignore_ascii_case(namespace)
            && self.resource_type().eq_ignore_ascii_case(rtype)
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// A case-folded form, suitable as a map or journal key.
    pub fn key(&self) -> String {
        self.raw.to_ascii_lowercase()
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.raw.eq_ignore_ascii_case(&other.raw)
    }
}
impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.raw)
    }
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VM: &str =
        "/subscriptions/0000-1/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn parses_and_exposes_parts() {
        let id = ResourceId::parse(VM).unwrap();
        assert_eq!(id.subscription(), "0000-1");
        assert_eq!(id.resource_group(), "rg-a");
        assert_eq!(id.namespace(), "Microsoft.Compute");
        assert_eq!(id.resource_type(), "virtualMachines");
        assert_eq!(id.name(), "vm1");
        assert!(id.is_type("microsoft.compute", "VIRTUALMACHINES"));
        assert_eq!(id.parent(), None);
    }

    #[test]
    fn child_and_parent_round_trip() {
        let id = ResourceId::parse(VM).unwrap();
        let ext = id.child("extensions", "AzureDiskEncryption");
        assert_eq!(ext.resource_type(), "virtualMachines/extensions");
        assert_eq!(ext.parent().unwrap(), id);
        let disk = id.sibling("Microsoft.Compute", "disks", "d1");
        assert_eq!(disk.resource_group(), "rg-a");
        assert!(disk.is_type("Microsoft.Compute", "disks"));
    }

    #[test]
    fn compares_case_insensitively_but_keeps_case() {
        let a = ResourceId::parse(VM).unwrap();
        let b = ResourceId::parse(&VM.to_uppercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), VM);
    }

    #[test]
    fn rejects_hostile_and_malformed_ids() {
        for bad in [
            "",
            "   ",
            "vm1",
            "/subscriptions/x",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm?x=1",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v m",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/../x",
            "/subscriptions/s/resourceGroups//providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s/resourceGroups/rg/providers/Compute/virtualMachines/vm",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm\n",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm%2F..",
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "/tenants/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("{VM}{}", "a".repeat(2000));
        assert!(matches!(
            ResourceId::parse(&long),
            Err(ResourceIdError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = ResourceId::parse(&s);
        }

        #[test]
        fn valid_ids_round_trip(sub in "[a-f0-9-]{1,36}", rg in "[A-Za-z0-9_.()-]{1,40}", name in "[A-Za-z0-9_-]{1,40}") {
            prop_assume!(rg != "." && rg != "..");
            let id = ResourceId::new(&sub, &rg, "Microsoft.Compute", "disks", &name);
            let again = ResourceId::parse(id.as_str()).unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(again.name(), name.as_str());
            let json = serde_json::to_string(&id).unwrap();
            let back: ResourceId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, id);
        }
    }
}
