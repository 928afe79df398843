//! Plain domain types shared by every layer: parsed ids, secret wrappers and
//! Compute usage names.

pub mod ids;
pub mod secret;
pub mod usage;

pub use ids::{ResourceId, ResourceIdError};
pub use secret::{BearerToken, SasUrl, redact};
