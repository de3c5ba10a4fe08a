//! An LU over a RAM backstore driven by CDB bytes, for in-process tests of the device
//! server: no transport, no threads, every answer visible as status, sense and data.
//!
//! ```text
//! TestLu::run(nexus, cdb, data_out) ──► Command::parse ──► LogicalUnit::execute ──► Reply
//! ```

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use backstore::{Backstore, RamBackstore};

use crate::cdb::Parsed;
use crate::lu::{Ctx, LogicalUnit, LuIdentity, Nexus};
use crate::sense::{status, Asc, Sense, SenseKey};
use crate::tpc::CopyManager;

/// What one command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u8,
    pub sense: Option<Sense>,
    pub data: Vec<u8>,
}

impl Reply {
    pub fn is_good(&self) -> bool {
        self.status == status::GOOD
    }

    /// (sense key, ASC/ASCQ) of a CHECK CONDITION; panics on anything else, so a test
    /// that expects a check learns what it got instead.
    pub fn check(&self) -> (SenseKey, Asc) {
        assert_eq!(self.status, status::CHECK_CONDITION, "{self:?}");
        let s = self.sense.as_ref().expect("CHECK CONDITION carries sense");
        (s.key, s.asc)
    }

    /// The sense-key specific field pointer: (in CDB, byte, bit).
    pub fn field_pointer(&self) -> Option<(bool, u16, Option<u8>)> {
        self.sense
            .as_ref()
            .and_then(|s| s.field)
            .map(|f| (f.in_cdb, f.byte, f.bit))
    }
}

/// One logical unit and the RAM behind it.
#[derive(Debug)]
pub struct TestLu {
    pub lu: Arc<LogicalUnit>,
    pub ram: Arc<RamBackstore>,
}

/// A nexus with a distinct session id, initiator name and ISID.
pub fn nexus(id: u64) -> Nexus {
    Nexus {
        id,
        initiator: format!("iqn.2026-11.test:init{id}").into(),
        isid: [0x80, 0, 0, 0, 0, id as u8],
        target_name: "iqn.2026-11.test:target".into(),
        tpgt: 1,
        relative_port: 1,
    }
}

/// The identity every test LU carries (NAA from a fixed seed).
pub fn identity(seed: u8) -> LuIdentity {
    let mut naa = [0u8; 16];
    naa[0] = 0x65;
    naa[1] = 0xa0;
    naa[2] = 0xe7;
    naa[3] = 0xc0;
    naa[15] = seed;
    LuIdentity {
        vendor: "OXTGT".into(),
        product: "TEST".into(),
        revision: "0001".into(),
        serial: format!("test{seed:04}"),
        naa,
    }
}

impl TestLu {
    /// A thick LU of `blocks` blocks of `block_size` bytes.
    pub fn new(blocks: u64, block_size: u32) -> Self {
        Self::build(blocks, block_size, |lu| lu)
    }

    /// A thin-provisioned LU.
    pub fn thin(blocks: u64, block_size: u32) -> Self {
        Self::build(blocks, block_size, |lu| lu.with_thin(true))
    }

    /// A write-protected LU.
    pub fn read_only(blocks: u64, block_size: u32) -> Self {
        let ram = Arc::new(RamBackstore::new(blocks * u64::from(block_size)));
        let store: Arc<dyn Backstore> = ram.clone();
        let lu = LogicalUnit::new(identity(1), store, block_size, true);
        Self {
            lu: lu.shared(),
            ram,
        }
    }

    /// An LU configured by `f` over a fresh RAM store.
    pub fn build(blocks: u64, block_size: u32, f: impl FnOnce(LogicalUnit) -> LogicalUnit) -> Self {
        Self::with_identity(1, blocks, block_size, f)
    }

    /// As [`TestLu::build`], with the identity of `seed` (distinct LUs for copies).
    pub fn with_identity(
        seed: u8,
        blocks: u64,
        block_size: u32,
        f: impl FnOnce(LogicalUnit) -> LogicalUnit,
    ) -> Self {
        let ram = Arc::new(RamBackstore::new(blocks * u64::from(block_size)));
        let store: Arc<dyn Backstore> = ram.clone();
        let lu = f(LogicalUnit::new(identity(seed), store, block_size, false));
        Self {
            lu: lu.shared(),
            ram,
        }
    }

    /// A nexus that has logged in with this LU mapped.
    pub fn attach(&self, id: u64) -> Nexus {
        let n = nexus(id);
        self.lu.attach(&n);
        n
    }

    /// Runs `cdb` with `data_out`; the Expected Data Transfer Length is what the CDB
    /// asks for (data out) or 64 KiB (data in).
    pub fn run(&self, n: &Nexus, cdb: &[u8], data_out: &[u8]) -> Reply {
        let edtl = if data_out.is_empty() {
            65536
        } else {
            data_out.len() as u32
        };
        self.run_with(n, cdb, data_out, edtl, None, &AtomicBool::new(false))
    }

    /// Runs `cdb` with every input spelled out.
    pub fn run_with(
        &self,
        n: &Nexus,
        cdb: &[u8],
        data_out: &[u8],
        edtl: u32,
        copy: Option<&dyn CopyManager>,
        abort: &AtomicBool,
    ) -> Reply {
        let cmd = Parsed::parse(self.lu.device_type(), cdb);
        let mut data_in = Vec::new();
        let ctx = Ctx { edtl, abort, copy };
        let out = self.lu.execute(n, cmd, ctx, data_out, &mut data_in);
        data_in.truncate(out.data_in_len);
        Reply {
            status: out.status,
            sense: out.sense,
            data: data_in,
        }
    }

    /// An LU over any backstore (fault and timing tests); `ram` is then an empty
    /// store that [`TestLu::medium`] must not be used with.
    pub fn over(store: Arc<dyn Backstore>, block_size: u32, seed: u8) -> Self {
        let lu = LogicalUnit::new(identity(seed), store, block_size, false);
        Self {
            lu: lu.shared(),
            ram: Arc::new(RamBackstore::new(0)),
        }
    }

    /// The bytes of `blocks` blocks at `lba`, read straight from the RAM store.
    pub fn medium(&self, lba: u64, blocks: u64) -> Vec<u8> {
        let bs = u64::from(self.lu.block_size());
        let mut b = vec![0u8; (blocks * bs) as usize];
        self.ram.read_at(&mut b, lba * bs).expect("read RAM");
        b
    }
}

/// A RAM store that fails I/O touching a byte range with a chosen OS error, for
/// fault tests (EIO, ENOSPC).
#[derive(Debug)]
pub struct FaultyBackstore {
    pub inner: RamBackstore,
    /// Failing byte range and errno; reads fail only when `reads` is set.
    pub fault: std::sync::Mutex<Option<(std::ops::Range<u64>, i32, bool)>>,
    /// How long every write takes (a slow device, for abort tests).
    pub write_delay: std::sync::Mutex<std::time::Duration>,
}

impl FaultyBackstore {
    pub fn new(size: u64) -> Self {
        Self {
            inner: RamBackstore::new(size),
            fault: std::sync::Mutex::new(None),
            write_delay: std::sync::Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Makes every later write take `d`.
    pub fn slow(&self, d: std::time::Duration) {
        *self.write_delay.lock().unwrap() = d;
    }

    /// Fails writes (and reads too, with `reads`) touching `range` with `errno`.
    pub fn fail(&self, range: std::ops::Range<u64>, errno: i32, reads: bool) {
        *self.fault.lock().unwrap() = Some((range, errno, reads));
    }

    fn check(&self, offset: u64, len: usize, write: bool) -> std::io::Result<()> {
        if let Some((r, errno, reads)) = self.fault.lock().unwrap().clone() {
            let hits = offset < r.end && r.start < offset + len as u64;
            if hits && (write || reads) {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

impl Backstore for FaultyBackstore {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.check(offset, buf.len(), false)?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> std::io::Result<()> {
        self.check(offset, buf.len(), true)?;
        let d = *self.write_delay.lock().unwrap();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
        self.inner.write_at(buf, offset, fua)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
