//! The config file as written: serde structs with spans, before validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::chap::RawChap;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    /// Logical units defined once, by name, and mapped into targets with
    /// `[[target.lun]] lu = "name"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) lu: Vec<RawLu>,
    #[serde(default)]
    pub(super) target: Vec<RawTarget>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLu {
    pub(super) name: Spanned<String>,
    pub(super) backstore: Option<Spanned<String>>,
    /// "disk" (the default) or "tape".
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    /// A tape LU: the cartridge loaded at start.
    pub(super) cartridge: Option<Spanned<String>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) size: Option<Spanned<toml::Value>>,
    pub(super) block_size: Option<Spanned<u32>>,
    pub(super) physical_block_size: Option<Spanned<u32>>,
    pub(super) memory_limit: Option<Spanned<toml::Value>>,
    /// backstore = "rbd": the image, where it is and who opens it.
    pub(super) pool: Option<Spanned<String>>,
    pub(super) image: Option<Spanned<String>>,
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) ceph_conf: Option<Spanned<String>>,
    pub(super) keyring: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) read_only: bool,
    pub(super) thin: Option<bool>,
    #[serde(default)]
    pub(super) removable: bool,
    pub(super) serial: Option<Spanned<String>>,
    pub(super) wwn: Option<Spanned<String>>,
    pub(super) vendor: Option<Spanned<String>>,
    pub(super) product: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<Vec<String>>>,
    pub(super) queue_depth: Option<Spanned<u32>>,
    pub(super) nop_interval_secs: Option<u64>,
    pub(super) nop_timeout_secs: Option<u64>,
    pub(super) login_timeout_secs: Option<Spanned<u64>>,
    pub(super) rod_tokens: Option<Spanned<u32>>,
    pub(super) max_logins: Option<Spanned<u32>>,
    pub(super) max_logins_per_address: Option<Spanned<u32>>,
    pub(super) auth_failure_delay_ms: Option<Spanned<u32>>,
    pub(super) auth_failure_delay_max_ms: Option<Spanned<u32>>,
    pub(super) max_sessions_per_initiator: Option<Spanned<u32>>,
    /// CHAP that discovery sessions must pass.
    pub(super) discovery_chap: Option<RawChap>,
    pub(super) rod_token_image_bytes: Option<Spanned<toml::Value>>,
    pub(super) max_recv_data_segment_length: Option<Spanned<u32>>,
    pub(super) max_burst_length: Option<Spanned<u32>>,
    pub(super) first_burst_length: Option<Spanned<u32>>,
    pub(super) max_outstanding_r2t: Option<Spanned<u32>>,
    pub(super) initial_r2t: Option<bool>,
    pub(super) immediate_data: Option<bool>,
    pub(super) log_format: Option<Spanned<String>>,
    pub(super) state_dir: Option<String>,
    pub(super) admin_socket: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Spanned<String>,
    pub(super) alias: Option<String>,
    #[serde(default)]
    pub(super) open_access: bool,
    /// CHAP every initiator of this target must pass (an ACL entry's own wins).
    pub(super) chap: Option<RawChap>,
    #[serde(default)]
    pub(super) lun: Vec<RawLun>,
    #[serde(default)]
    pub(super) acl: Vec<RawAcl>,
}

/// A LUN of a target: either `lu = "name"` (an LU defined in `[[lu]]`, which two
/// targets may share) or an LU defined inline, as configs have always done.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLun {
    pub(super) id: Spanned<u16>,
    pub(super) lu: Option<Spanned<String>>,
    pub(super) backstore: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    pub(super) cartridge: Option<Spanned<String>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) size: Option<Spanned<toml::Value>>,
    pub(super) block_size: Option<Spanned<u32>>,
    pub(super) physical_block_size: Option<Spanned<u32>>,
    pub(super) memory_limit: Option<Spanned<toml::Value>>,
    /// backstore = "rbd": the image, where it is and who opens it.
    pub(super) pool: Option<Spanned<String>>,
    pub(super) image: Option<Spanned<String>>,
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) ceph_conf: Option<Spanned<String>>,
    pub(super) keyring: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) read_only: bool,
    pub(super) thin: Option<bool>,
    #[serde(default)]
    pub(super) removable: bool,
    pub(super) serial: Option<Spanned<String>>,
    pub(super) wwn: Option<Spanned<String>>,
    pub(super) vendor: Option<Spanned<String>>,
    pub(super) product: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcl {
    pub(super) initiator: Spanned<String>,
    /// Initiator-visible LUN → target LUN id. Keys are strings in TOML.
    pub(super) map: Option<Spanned<BTreeMap<String, u16>>>,
    /// Shorthand: these target LUNs, visible under the same numbers.
    pub(super) luns: Option<Spanned<Vec<u16>>>,
    pub(super) chap: Option<RawChap>,
}
