//! The admin protocol: one JSON object per line each way over the Unix socket.
//!
//! A request is `{"version": 1, "op": "...", ...}`; the answer is
//! `{"version": 1, "ok": true, "result": ...}` or `{"version": 1, "ok": false,
//! "errors": [...]}`. A request of another version is refused with the version the
//! server speaks, so a newer CLI can tell an older daemon apart.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// A new LU's definition, as the config file would give it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LuSpec {
    /// A name makes it a `[[lu]]` others can map; without one it is inline in its
    /// target (`<target>/lun<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backstore: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Bytes, or a string like "10GiB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin: Option<bool>,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    List,
    LuAdd {
        target: String,
        lun: u16,
        spec: LuSpec,
    },
    LuRemove {
        lu: String,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    LuResize {
        lu: String,
        size: String,
    },
    LunMap {
        target: String,
        lun: u16,
        lu: String,
    },
    LunUnmap {
        target: String,
        lun: u16,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    AclAdd {
        target: String,
        initiator: String,
        /// (initiator-visible LUN, target LUN) pairs.
        map: Vec<(u16, u16)>,
    },
    AclRemove {
        target: String,
        initiator: String,
    },
    SessionLogout {
        /// The session's TSIH, or every session of an initiator name.
        #[serde(default)]
        tsih: Option<u16>,
        #[serde(default)]
        initiator: Option<String>,
    },
    /// Load cartridge `cartridge` (created when missing) into tape LU `lu`, or
    /// the one it had (`None`).
    TapeLoad {
        lu: String,
        #[serde(default)]
        cartridge: Option<String>,
    },
    TapeUnload {
        lu: String,
    },
    Reload,
    Save {
        #[serde(default)]
        path: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Answer {
    pub fn ok(result: serde_json::Value) -> Self {
        Self {
            version: VERSION,
            ok: true,
            result: Some(result),
            errors: Vec::new(),
        }
    }
    pub fn err(errors: Vec<String>) -> Self {
        Self {
            version: VERSION,
            ok: false,
            result: None,
            errors,
        }
    }
}
