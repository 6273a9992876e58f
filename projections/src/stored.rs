//! How read models keep their structs in sled: postcard values, keys that start with the
//! tenant, and typed reads and writes of one key inside an apply.

use fleet_events::ids::TenantId;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;
use crate::projection::ModelTree;

/// Postcard encoding of a stored struct.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Postcard decoding of a stored struct.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The prefix of a tenant's keys in a model's trees: the tenant, a zero byte (tenant slugs
/// have none).
pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The value at `key` of `tree` (named `name` in errors), if any.
pub(crate) fn load<T: serde::de::DeserializeOwned>(
    tree: &dyn ModelTree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>, ApplyError> {
    match tree.get(key)? {
        Some(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|e| ApplyError::corrupt(name, e)),
        None => Ok(None),
    }
}

/// Writes `value` at `key` of `tree`.
pub(crate) fn store<T: Serialize>(
    tree: &dyn ModelTree,
    name: &'static str,
    key: &[u8],
    value: &T,
) -> Result<(), ApplyError> {
    let bytes = encode(value).map_err(|e| ApplyError::corrupt(name, e))?;
    tree.insert(key, &bytes)
}
