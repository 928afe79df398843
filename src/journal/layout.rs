//! How a [`VmRecord`] is stored (schema v3).
//!
//! sled keeps every page it has read in memory (its LRU only starts evicting
//! after ~16,000 page reads), so what `status`, `report` and the engine's
//! index read of every VM must be small. A record is therefore stored in two
//! trees, both written in the same transaction:
//!
//! - `vms`: the *core*: the record's JSON without `original_model`, without
//!   the disks' `source_model` and with `history` replaced by
//!   `{"len": N, "last_at": T}`. Everything `status` and `report` show.
//! - `vm_bulk`: `{"original_model", "history", "source_models"}`, read only
//!   when the engine loads the VM to work on it.
//!
//! Values are stored deflated behind a one-byte tag ([`DEFLATE`]); a value
//! starting with `{` is plain JSON (schema v2 records, and the records a v2
//! journal holds until it is migrated).

use std::borrow::Cow;
use std::io::{Read, Write};

use serde_json::{Map, Value, json};

use crate::step::VmRecord;

/// Tag of a deflated value.
pub(super) const DEFLATE: u8 = 1;

/// Deflates `json` behind the tag.
pub(super) fn encode(json: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(json.len() / 4 + 16),
        flate2::Compression::fast(),
    );
    let mut out = vec![DEFLATE];
    // Writing into a Vec cannot fail.
    let _ = e.write_all(json);
    out.extend_from_slice(&e.finish().unwrap_or_default());
    out
}

/// The JSON of a stored value (plain or deflated).
pub(super) fn decode(raw: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match raw.first() {
        Some(&DEFLATE) => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::DeflateDecoder::new(&raw[1..])
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot inflate: {e}"))?;
            Ok(Cow::Owned(out))
        }
        _ => Ok(Cow::Borrowed(raw)),
    }
}

/// True when the core JSON value still holds the whole record (v2 layout).
pub(super) fn is_whole(core: &Value) -> bool {
    core.get("history").is_some_and(Value::is_array)
}

/// Splits a record (as a JSON object) into its core and its bulk.
pub(super) fn split(mut v: Value) -> (Value, Value) {
    let Some(obj) = v.as_object_mut() else {
        return (v, Value::Null);
    };
    let original_model = obj.remove("original_model").unwrap_or(Value::Null);
    let history = obj.remove("history").unwrap_or_else(|| json!([]));
    let last_at = history
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| h.get("at"))
        .cloned()
        .unwrap_or(Value::Null);
    let len = history.as_array().map(Vec::len).unwrap_or(0);
    obj.insert("history".into(), json!({"len": len, "last_at": last_at}));
    let mut source_models = Vec::new();
    if let Some(disks) = obj.get_mut("disks").and_then(Value::as_array_mut) {
        for d in disks {
            source_models.push(
                d.as_object_mut()
                    .and_then(|d| d.remove("source_model"))
                    .unwrap_or(Value::Null),
            );
        }
    }
    let bulk = json!({"original_model": original_model, "history": history, "source_models": source_models});
    (v, bulk)
}

/// Puts a record's core and bulk back together.
pub(super) fn join(mut core: Value, bulk: Value) -> Value {
    let Value::Object(mut bulk) = bulk else {
        return core;
    };
    if let Some(obj) = core.as_object_mut() {
        obj.insert(
            "original_model".into(),
            bulk.remove("original_model").unwrap_or(Value::Null),
        );
        obj.insert(
            "history".into(),
            bulk.remove("history").unwrap_or_else(|| json!([])),
        );
        let models = match bulk.remove("source_models") {
            Some(Value::Array(m)) => m,
            _ => Vec::new(),
        };
        if let Some(disks) = obj.get_mut("disks").and_then(Value::as_array_mut) {
            for (d, m) in disks.iter_mut().zip(models) {
                if let Some(d) = d.as_object_mut() {
                    d.insert("source_model".into(), m);
                }
            }
        }
    }
    core
}

/// The stored (encoded) core and bulk of `rec`.
pub(super) fn store(rec: &VmRecord) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> {
    let (core, bulk) = split(serde_json::to_value(rec)?);
    Ok((
        encode(&serde_json::to_vec(&core)?),
        encode(&serde_json::to_vec(&bulk)?),
    ))
}

/// An empty JSON object (the bulk of a record that has none stored).
pub(super) fn no_bulk() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceId;
    use crate::step::{DiskPlan, DiskRole};

    #[test]
    fn split_then_join_is_the_record_and_the_core_is_small() {
        let id = |n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", "disks", n);
        let mut r = VmRecord::new(ResourceId::new(
            "s",
            "rg",
            "Microsoft.Compute",
            "virtualMachines",
            "v",
        ));
        r.original_model = Some(json!({"big": "m".repeat(5000)}));
        for lun in 0..2 {
            r.disks.push(DiskPlan {
                role: DiskRole::Data { lun },
                source: id("s"),
                source_size_bytes: 1,
                source_model: json!({"x": "d".repeat(2000)}),
                snapshot: id("sn"),
                target: id("t"),
                copied: false,
                bytes_copied: 0,
                rounds: vec![],
                verified: false,
                rounds_opened: 0,
            });
        }
        for i in 0..50 {
            r.note(
                format!("2026-01-01T00:00:{i:02}Z"),
                "intent",
                "x".repeat(100),
            );
        }
        let (core_raw, bulk_raw) = store(&r).unwrap();
        let core: Value = serde_json::from_slice(&decode(&core_raw).unwrap()).unwrap();
        assert!(!is_whole(&core));
        assert_eq!(core["history"]["len"], 50);
        assert_eq!(core["history"]["last_at"], "2026-01-01T00:00:49Z");
        let bulk: Value = serde_json::from_slice(&decode(&bulk_raw).unwrap()).unwrap();
        let back: VmRecord = serde_json::from_value(join(core, bulk)).unwrap();
        assert_eq!(back, r);
        assert!(core_raw.len() < 600, "core {} bytes", core_raw.len());
        let plain = serde_json::to_vec(&r).unwrap();
        assert_eq!(&*decode(&plain).unwrap(), plain.as_slice());
    }
}
