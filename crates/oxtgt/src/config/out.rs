//! The model as TOML ([`Config::to_toml`]).

use super::*;

/// The running model written back as TOML that [`Config::parse`] reads to the same
/// model (`save` and live reconfiguration build on this). LUs shared by targets are
/// written once as `[[lu]]` and mapped by name; the others stay inline, as written.
#[derive(Serialize)]
struct OutConfig {
    server: OutServer,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lu: Vec<OutLu>,
    target: Vec<OutTarget>,
}

#[derive(Serialize)]
struct OutServer {
    listen: Vec<String>,
    queue_depth: u32,
    nop_interval_secs: u64,
    nop_timeout_secs: u64,
    login_timeout_secs: u64,
    rod_tokens: usize,
    rod_token_image_bytes: u64,
    max_logins: usize,
    max_logins_per_address: usize,
    auth_failure_delay_ms: u64,
    auth_failure_delay_max_ms: u64,
    max_sessions_per_initiator: u32,
    max_recv_data_segment_length: u32,
    max_burst_length: u32,
    first_burst_length: u32,
    max_outstanding_r2t: u32,
    initial_r2t: bool,
    immediate_data: bool,
    log_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery_chap: Option<chap::OutChap>,
}

#[derive(Serialize)]
struct OutLu {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u16>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backstore: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cartridge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    physical_block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceph_conf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring: Option<String>,
    read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    thin: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wwn: Option<String>,
    vendor: String,
    product: String,
}

#[derive(Serialize)]
struct OutMapped {
    id: u16,
    lu: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutLun {
    Mapped(OutMapped),
    Inline(Box<OutLu>),
}

#[derive(Serialize)]
struct OutTarget {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<String>,
    open_access: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    chap: Option<chap::OutChap>,
    lun: Vec<OutLun>,
    acl: Vec<OutAcl>,
}

#[derive(Serialize)]
struct OutAcl {
    initiator: String,
    map: BTreeMap<String, u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chap: Option<chap::OutChap>,
}

impl OutLu {
    fn of(l: &LunConfig, name: Option<String>, id: Option<u16>) -> Self {
        let disk = l.backstore != BackstoreKind::Tape;
        Self {
            name,
            id,
            kind: (l.backstore == BackstoreKind::Tape).then_some("tape"),
            backstore: match l.backstore {
                BackstoreKind::File => Some("file"),
                BackstoreKind::Block => Some("block"),
                BackstoreKind::Ram => Some("ram"),
                BackstoreKind::Rbd => Some("rbd"),
                BackstoreKind::Tape => None,
            },
            cartridge: l.cartridge.clone(),
            path: l.path.as_ref().map(|p| p.display().to_string()),
            size: l
                .size
                .filter(|_| !matches!(l.backstore, BackstoreKind::Block | BackstoreKind::Rbd)),
            block_size: disk.then_some(l.block_size),
            physical_block_size: disk.then_some(l.physical_block_size),
            memory_limit: l.memory_limit,
            pool: l.rbd.as_ref().map(|r| r.pool.clone()),
            image: l.rbd.as_ref().map(|r| r.image.clone()),
            namespace: l.rbd.as_ref().and_then(|r| r.namespace.clone()),
            client_id: l.rbd.as_ref().map(|r| r.client_id.clone()),
            ceph_conf: l
                .rbd
                .as_ref()
                .and_then(|r| r.ceph_conf.as_ref())
                .map(|p| p.display().to_string()),
            keyring: l
                .rbd
                .as_ref()
                .and_then(|r| r.keyring.as_ref())
                .map(|p| p.display().to_string()),
            read_only: l.read_only,
            thin: disk.then_some(l.thin),
            removable: l.removable,
            serial: l.identity_configured.then(|| l.serial.clone()),
            wwn: l
                .identity_configured
                .then(|| format!("naa.{}", codec::hex(&l.naa).to_ascii_lowercase())),
            vendor: l.vendor.clone(),
            product: l.product.clone(),
        }
    }
}

impl Config {
    /// This model as TOML.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let s = &self.server;
        let inline_name =
            |t: &TargetConfig, l: &LunConfig| l.lu == format!("{}/lun{}", t.name, l.id);
        let mut lu: Vec<OutLu> = Vec::new();
        let mut written = HashSet::new();
        for t in &self.targets {
            for l in t.luns.iter().filter(|l| !inline_name(t, l)) {
                if written.insert(l.lu.clone()) {
                    lu.push(OutLu::of(l, Some(l.lu.clone()), None));
                }
            }
        }
        let out = OutConfig {
            server: OutServer {
                listen: s.listen.iter().map(|a| a.to_string()).collect(),
                queue_depth: s.queue_depth,
                nop_interval_secs: s.nop_interval_secs,
                nop_timeout_secs: s.nop_timeout_secs,
                login_timeout_secs: s.login_timeout_secs,
                rod_tokens: s.rod_tokens.max_tokens,
                rod_token_image_bytes: s.rod_tokens.max_image_bytes,
                max_logins: s.guard.max_logins,
                max_logins_per_address: s.guard.max_logins_per_address,
                auth_failure_delay_ms: s.guard.failure_delay.as_millis() as u64,
                auth_failure_delay_max_ms: s.guard.failure_delay_max.as_millis() as u64,
                max_sessions_per_initiator: s.max_sessions_per_initiator,
                max_recv_data_segment_length: s.limits.max_recv_data_segment_length,
                max_burst_length: s.limits.max_burst_length,
                first_burst_length: s.limits.first_burst_length,
                max_outstanding_r2t: s.limits.max_outstanding_r2t,
                initial_r2t: s.limits.initial_r2t,
                immediate_data: s.limits.immediate_data,
                log_format: match s.log_format {
                    LogFormat::Human => "human",
                    LogFormat::Json => "json",
                },
                state_dir: s.state_dir.as_ref().map(|d| d.display().to_string()),
                admin_socket: s.admin_socket.as_ref().map(|d| d.display().to_string()),
                metrics_listen: s.metrics_listen.map(|a| a.to_string()),
                discovery_chap: s.discovery_chap.as_ref().map(chap::OutChap::of),
            },
            lu,
            target: self
                .targets
                .iter()
                .map(|t| OutTarget {
                    name: t.name.clone(),
                    alias: t.alias.clone(),
                    open_access: t.open_access,
                    chap: t.chap.as_ref().map(chap::OutChap::of),
                    lun: t
                        .luns
                        .iter()
                        .map(|l| {
                            if inline_name(t, l) {
                                OutLun::Inline(Box::new(OutLu::of(l, None, Some(l.id))))
                            } else {
                                OutLun::Mapped(OutMapped {
                                    id: l.id,
                                    lu: l.lu.clone(),
                                })
                            }
                        })
                        .collect(),
                    acl: t
                        .acls
                        .iter()
                        .map(|a| OutAcl {
                            initiator: a.initiator.clone(),
                            map: a.map.iter().map(|(v, l)| (v.to_string(), *l)).collect(),
                            chap: a.chap.as_ref().map(chap::OutChap::of),
                        })
                        .collect(),
                })
                .collect(),
        };
        toml::to_string(&out)
    }
}
