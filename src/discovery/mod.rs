//! Discovery: the read-only inventory adapter. Everything the dry run and
//! the start of a run read about the fleet, returned as plain data to the
//! pure planner ([`crate::plan`]) and to the run set-up:
//! - [`select`]: which VMs a selector names (ARM listings, Resource Graph);
//! - [`records`]: each VM, its disks, the EAH feature and its size's
//!   support, classified into initial journal records;
//! - [`preflight`]: management locks, Azure Backup status, Compute usages;
//! - [`sizes`]: resource SKUs for size suggestions.
//!
//! Sends only GETs (and the read-only Resource Graph and `backupStatus`
//! POSTs). Not to be confused with the engine's per-VM *observe* (the GETs
//! before each step's decision), which lives in [`crate::engine`].

pub mod preflight;
pub mod records;
pub mod select;
pub mod sizes;

pub use records::{DiscoverError, DiscoverOptions, classify_all, discover};
pub use select::select;
pub use sizes::suggest_sizes;
