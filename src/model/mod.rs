//! Plain domain types shared by every layer: parsed ids, secret wrappers and
//! typed views of the ARM models the core reads, Compute usage names.

pub mod ids;
pub mod secret;
pub mod usage;
pub mod views;

pub use ids::{ResourceId, ResourceIdError};
pub use secret::{BearerToken, SasUrl, redact};
