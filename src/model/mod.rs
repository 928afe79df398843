//! Plain domain types shared by every layer: parsed ids and secret wrappers.

pub mod ids;
pub mod secret;

pub use ids::{ResourceId, ResourceIdError};
pub use secret::{BearerToken, SasUrl, redact};
