//! One logical unit's definition, from `[[lu]]` or an inline `[[target.lun]]`,
//! validated with file:line errors.

use super::*;

/// The fields that define an LU, from `[[lu]]` or an inline `[[target.lun]]`.
pub(super) struct LuFields<'a> {
    pub(super) backstore: &'a Spanned<String>,
    pub(super) cartridge: &'a Option<Spanned<String>>,
    pub(super) path: &'a Option<Spanned<String>>,
    pub(super) size: &'a Option<Spanned<toml::Value>>,
    pub(super) block_size: &'a Option<Spanned<u32>>,
    pub(super) physical_block_size: &'a Option<Spanned<u32>>,
    pub(super) memory_limit: &'a Option<Spanned<toml::Value>>,
    pub(super) rbd: RbdKeys<'a>,
    pub(super) read_only: bool,
    pub(super) thin: Option<bool>,
    pub(super) removable: bool,
    pub(super) serial: &'a Option<Spanned<String>>,
    pub(super) wwn: &'a Option<Spanned<String>>,
    pub(super) vendor: &'a Option<Spanned<String>>,
    pub(super) product: &'a Option<Spanned<String>>,
    /// Where to point errors that have no field of their own.
    pub(super) anchor: std::ops::Range<usize>,
}

/// The keys of `backstore = "rbd"`.
pub(super) struct RbdKeys<'a> {
    pub(super) pool: &'a Option<Spanned<String>>,
    pub(super) image: &'a Option<Spanned<String>>,
    pub(super) namespace: &'a Option<Spanned<String>>,
    pub(super) client_id: &'a Option<Spanned<String>>,
    pub(super) ceph_conf: &'a Option<Spanned<String>>,
    pub(super) keyring: &'a Option<Spanned<String>>,
}

impl RbdKeys<'_> {
    fn all(&self) -> [(&'static str, &Option<Spanned<String>>); 6] {
        [
            ("pool", self.pool),
            ("image", self.image),
            ("namespace", self.namespace),
            ("client_id", self.client_id),
            ("ceph_conf", self.ceph_conf),
            ("keyring", self.keyring),
        ]
    }
}

/// Validates the RBD keys: required for an RBD LU, refused on any other.
fn validate_rbd(
    cx: &mut Ctx<'_>,
    key: &str,
    l: &LuFields<'_>,
    backstore: BackstoreKind,
    images: &mut HashSet<String>,
) -> Option<RbdImage> {
    let k = &l.rbd;
    if backstore != BackstoreKind::Rbd {
        for (name, v) in k.all() {
            if let Some(v) = v {
                cx.err(
                    Some(v.span()),
                    &format!("{key}.{name}"),
                    "only an rbd LU has this key",
                );
            }
        }
        return None;
    }
    // Names as Ceph allows them: no '/' or '@' (they separate pool, namespace,
    // image and snapshot), no control characters, not empty.
    let name_ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 255
            && !v.chars().any(|c| c == '/' || c == '@' || c.is_control())
    };
    let get = |name: &str, v: &Option<Spanned<String>>, required: bool, cx: &mut Ctx<'_>| match v {
        Some(s) if !name_ok(s.get_ref()) => {
            cx.err(
                Some(s.span()),
                &format!("{key}.{name}"),
                "must be 1-255 characters without '/', '@' or control characters",
            );
            None
        }
        Some(s) => Some(s.get_ref().clone()),
        None => {
            if required {
                cx.err(
                    Some(l.backstore.span()),
                    &format!("{key}.{name}"),
                    format!("an rbd LU needs {name}"),
                );
            }
            None
        }
    };
    let pool = get("pool", k.pool, true, cx);
    let image = get("image", k.image, true, cx);
    let namespace = get("namespace", k.namespace, false, cx);
    let client_id = get("client_id", k.client_id, false, cx).unwrap_or_else(|| "admin".into());
    let path = |v: &Option<Spanned<String>>| v.as_ref().map(|s| PathBuf::from(s.get_ref()));
    if let Some(v) = l.path {
        cx.err(
            Some(v.span()),
            &format!("{key}.path"),
            "an rbd LU is an image: it has no path (use pool and image)",
        );
    }
    if let Some(sz) = l.size {
        cx.err(
            Some(sz.span()),
            &format!("{key}.size"),
            "an rbd LU takes its size from the image (grow it with `oxtgtctl resize`)",
        );
    }
    let img = RbdImage {
        pool: pool?,
        image: image?,
        namespace,
        client_id,
        ceph_conf: path(k.ceph_conf),
        keyring: path(k.keyring),
    };
    if !images.insert(format!("rbd:{}", img.spec())) {
        cx.err(
            k.image.as_ref().map(|s| s.span()),
            &format!("{key}.image"),
            format!("{} is used by two LUNs", img.spec()),
        );
    }
    Some(img)
}

/// What must be unique across the server's LUs.
#[derive(Default)]
pub(super) struct Unique {
    naas: HashSet<[u8; 16]>,
    serials: HashSet<String>,
    paths: HashSet<String>,
}

/// Validates one LU's definition (`key` names it in errors); its identity is
/// `default_naa` unless `wwn`/`serial` override it.
pub(super) fn validate_lu(
    cx: &mut Ctx<'_>,
    key: &str,
    lu_name: &str,
    l: &LuFields<'_>,
    default_naa: [u8; 16],
    uniq: &mut Unique,
) -> LunConfig {
    let (naas, serials, paths) = (&mut uniq.naas, &mut uniq.serials, &mut uniq.paths);
    let backstore = match l.backstore.get_ref().as_str() {
        "file" => BackstoreKind::File,
        "block" => BackstoreKind::Block,
        "ram" => BackstoreKind::Ram,
        "tape" => BackstoreKind::Tape,
        "rbd" => BackstoreKind::Rbd,
        other => {
            cx.err(
                Some(l.backstore.span()),
                &format!("{key}.backstore"),
                format!("{other:?} is not \"file\", \"block\", \"ram\" or \"rbd\""),
            );
            BackstoreKind::Ram
        }
    };
    let size = match &l.size {
        Some(v) => match parse_size(v.get_ref()) {
            Ok(n) => Some(n),
            Err(m) => {
                cx.err(Some(v.span()), &format!("{key}.size"), m);
                None
            }
        },
        None => None,
    };
    let block_size = l.block_size.as_ref().map(|b| *b.get_ref()).unwrap_or(512);
    if block_size != 512 && block_size != 4096 {
        let span = l.block_size.as_ref().map(|b| b.span());
        cx.err(span, &format!("{key}.block_size"), "must be 512 or 4096");
    }
    let physical_block_size = match &l.physical_block_size {
        None => block_size,
        Some(p) => {
            let v = *p.get_ref();
            let ok = v >= block_size
                && v % block_size == 0
                && (v / block_size).is_power_of_two()
                && v / block_size <= 1 << 15;
            if !ok {
                cx.err(
                    Some(p.span()),
                    &format!("{key}.physical_block_size"),
                    "must be the block size times a power of two",
                );
            }
            v
        }
    };
    let memory_limit = match l.memory_limit {
        None => None,
        Some(v) if backstore != BackstoreKind::Ram => {
            cx.err(
                Some(v.span()),
                &format!("{key}.memory_limit"),
                "only a ram LUN has a memory limit",
            );
            None
        }
        Some(v) => match parse_size(v.get_ref()) {
            Ok(n) if n >= 64 * 1024 => Some(n),
            Ok(_) => {
                cx.err(
                    Some(v.span()),
                    &format!("{key}.memory_limit"),
                    "must be at least 64KiB (one page)",
                );
                None
            }
            Err(m) => {
                cx.err(Some(v.span()), &format!("{key}.memory_limit"), m);
                None
            }
        },
    };
    let path = l.path.as_ref().map(|p| PathBuf::from(p.get_ref()));
    let rbd = validate_rbd(cx, key, l, backstore, paths);
    match backstore {
        // Checked by validate_rbd.
        BackstoreKind::Rbd => {}
        BackstoreKind::Ram => {
            if size.is_none() {
                cx.err(
                    Some(l.backstore.span()),
                    &format!("{key}.size"),
                    "a ram LUN needs a size",
                );
            }
            if let Some(p) = &l.path {
                cx.err(
                    Some(p.span()),
                    &format!("{key}.path"),
                    "a ram LUN has no path",
                );
            }
        }
        BackstoreKind::Tape => {
            if l.path.is_none() {
                cx.err(
                    Some(l.backstore.span()),
                    &format!("{key}.path"),
                    "a tape LU needs a path: the directory of its cartridge files",
                );
            }
            if size.is_none() {
                cx.err(
                    Some(l.backstore.span()),
                    &format!("{key}.size"),
                    "a tape LU needs a size: the capacity of the cartridges it creates",
                );
            }
            for (set, k) in [
                (l.block_size.is_some(), "block_size"),
                (l.physical_block_size.is_some(), "physical_block_size"),
                (l.thin.is_some(), "thin"),
            ] {
                if set {
                    cx.err(
                        Some(l.backstore.span()),
                        &format!("{key}.{k}"),
                        "a tape LU has no block geometry or provisioning: leave it out",
                    );
                }
            }
            if let Some(p) = &l.path {
                if !paths.insert(p.get_ref().clone()) {
                    cx.err(
                        Some(p.span()),
                        &format!("{key}.path"),
                        format!("{} is used by two LUNs", p.get_ref()),
                    );
                }
            }
        }
        BackstoreKind::File | BackstoreKind::Block => match &l.path {
            None => cx.err(
                Some(l.backstore.span()),
                &format!("{key}.path"),
                "a file or block LUN needs a path",
            ),
            Some(p) => {
                if !paths.insert(p.get_ref().clone()) {
                    cx.err(
                        Some(p.span()),
                        &format!("{key}.path"),
                        format!("{} is used by two LUNs", p.get_ref()),
                    );
                }
                if backstore == BackstoreKind::Block && l.size.is_some() {
                    cx.err(
                        l.size.as_ref().map(|s| s.span()),
                        &format!("{key}.size"),
                        "a block LUN takes its size from the device",
                    );
                }
            }
        },
    }
    let cartridge = match (l.cartridge, backstore) {
        (None, _) => None,
        (Some(c), BackstoreKind::Tape) => {
            if !scsi::ssc::valid_cartridge_name(c.get_ref()) {
                cx.err(
                    Some(c.span()),
                    &format!("{key}.cartridge"),
                    "must be 1-32 characters of letters, digits, '-' or '_'",
                );
            }
            Some(c.get_ref().clone())
        }
        (Some(c), _) => {
            cx.err(
                Some(c.span()),
                &format!("{key}.cartridge"),
                "only a tape LU loads cartridges",
            );
            None
        }
    };
    if let Some(sz) = size.filter(|_| backstore != BackstoreKind::Tape) {
        if sz % u64::from(block_size) != 0 {
            cx.err(
                l.size.as_ref().map(|s| s.span()),
                &format!("{key}.size"),
                format!("{sz} bytes is not a multiple of the {block_size}-byte block size"),
            );
        }
    }
    let naa = match &l.wwn {
        Some(w) => parse_wwn(w.get_ref()).unwrap_or_else(|| {
            cx.err(
                Some(w.span()),
                &format!("{key}.wwn"),
                "must be naa. followed by 32 hex digits starting with 6 (NAA type 6)",
            );
            [0; 16]
        }),
        None => default_naa,
    };
    if !naas.insert(naa) {
        cx.err(
            l.wwn.as_ref().map(|w| w.span()).or(Some(l.anchor.clone())),
            &format!("{key}.wwn"),
            "this NAA designator is used by another LUN",
        );
    }
    let serial = match &l.serial {
        Some(s) => {
            let v = s.get_ref();
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                cx.err(
                    Some(s.span()),
                    &format!("{key}.serial"),
                    "must be 1-64 printable ASCII characters without spaces",
                );
            }
            v.clone()
        }
        None => naa[8..].iter().map(|b| format!("{b:02x}")).collect(),
    };
    if !serials.insert(serial.clone()) {
        cx.err(
            l.serial
                .as_ref()
                .map(|s| s.span())
                .or(Some(l.anchor.clone())),
            &format!("{key}.serial"),
            "this serial is used by another LUN",
        );
    }
    let text =
        |v: &Option<Spanned<String>>, k: &str, max: usize, def: &str, cx: &mut Ctx<'_>| match v {
            Some(s)
                if s.get_ref().len() > max
                    || !s.get_ref().bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                cx.err(
                    Some(s.span()),
                    &format!("{key}.{k}"),
                    format!("must be at most {max} printable ASCII characters"),
                );
                def.to_owned()
            }
            Some(s) => s.get_ref().clone(),
            None => def.to_owned(),
        };
    let vendor = text(l.vendor, "vendor", 8, "OXTGT", cx);
    let default_product = if backstore == BackstoreKind::Tape {
        "oxtgt tape"
    } else {
        "oxtgt disk"
    };
    let product = text(l.product, "product", 16, default_product, cx);
    LunConfig {
        id: 0,
        lu: lu_name.to_owned(),
        backstore,
        path,
        size,
        block_size,
        physical_block_size,
        memory_limit,
        read_only: l.read_only,
        // RAM and RBD are thin by nature.
        thin: l
            .thin
            .unwrap_or(matches!(backstore, BackstoreKind::Ram | BackstoreKind::Rbd)),
        removable: l.removable,
        cartridge,
        rbd,
        serial,
        naa,
        identity_configured: l.wwn.is_some() || l.serial.is_some(),
        vendor,
        product,
    }
}
