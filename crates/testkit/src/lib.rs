//! A scripted iSCSI initiator for oxtgt's end-to-end tests.
//!
//! Blocking, one connection, explicit about every PDU: tests can log in with chosen
//! keys, send raw or malformed PDUs, and run SCSI commands that follow R2Ts and
//! Data-In exactly as the target drives them. It talks to loopback only.

use codec::be;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use iscsi::framer::{self, DigestConfig, Frame};
use iscsi::keys::TextPairs;
use iscsi::pdu::{opcode, BhsWriter, BHS_LEN, NO_TAG};

pub mod load;
pub mod pagecache;
pub mod perf;
pub mod relay;
pub mod rod;
pub mod xcopy;
pub mod xfs;

pub const INITIATOR: &str = "iqn.2026-11.org.oxtgt.testkit:initiator";

/// The first Login Request's keys: who, to what, and how it authenticates.
fn security_keys(initiator: &str, target: Option<&str>, auth: &str) -> TextPairs {
    let mut sec = TextPairs::default();
    sec.push("InitiatorName", initiator);
    match target {
        Some(t) => {
            sec.push("SessionType", "Normal");
            sec.push("TargetName", t);
        }
        None => sec.push("SessionType", "Discovery"),
    }
    sec.push("AuthMethod", auth);
    sec
}

/// Result of a login attempt.
#[derive(Debug)]
pub struct LoginResult {
    pub status_class: u8,
    pub status_detail: u8,
    /// Every key the target answered across the login.
    pub answers: TextPairs,
    pub tsih: u16,
}

/// Result of one SCSI command.
#[derive(Debug, Default)]
pub struct ScsiResult {
    pub status: u8,
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
    /// (flags byte of the final PDU & 0x06, residual count)
    pub residual_flags: u8,
    pub residual: u32,
    pub r2ts: usize,
    pub data_in_pdus: usize,
}

impl ScsiResult {
    /// (sense key, ASC, ASCQ) from fixed or descriptor sense.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first()? & 0x7f {
            0x70 | 0x71 => Some((s.get(2)? & 0x0f, *s.get(12)?, *s.get(13)?)),
            0x72 | 0x73 => Some((s.get(1)? & 0x0f, *s.get(2)?, *s.get(3)?)),
            _ => None,
        }
    }
}

pub struct Initiator {
    stream: TcpStream,
    rbuf: Vec<u8>,
    pub digests: DigestConfig,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    next_itt: u32,
    pub isid: [u8; 6],
    /// What the target declared it accepts per data segment.
    pub target_mrdsl: usize,
    pub first_burst: usize,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    /// Completed responses of other tasks seen while waiting for one.
    stash: std::collections::HashMap<u32, ScsiResult>,
    /// AsyncEvent codes of the Async Messages received (1: the target asks for a
    /// logout).
    pub async_events: Vec<u8>,
}

impl Initiator {
    pub fn connect(addr: &str) -> io::Result<Self> {
        Self::from_stream(TcpStream::connect(addr)?)
    }

    /// An initiator on a connection made elsewhere (e.g. from a chosen source
    /// address).
    pub fn from_stream(stream: TcpStream) -> io::Result<Self> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            rbuf: Vec::new(),
            digests: DigestConfig::default(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            next_itt: 1,
            isid: [0x80, 0x12, 0x34, 0x56, 0x00, 0x01],
            target_mrdsl: 8192,
            first_burst: 65536,
            immediate_data: true,
            initial_r2t: true,
            stash: std::collections::HashMap::new(),
            async_events: Vec::new(),
        })
    }

    /// The connection, for a driver that takes over after login (`perf`). Bytes
    /// this initiator had read ahead are lost: call it between commands.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub fn itt(&mut self) -> u32 {
        let t = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1);
        t
    }

    pub fn set_read_timeout(&self, d: Duration) {
        let _ = self.stream.set_read_timeout(Some(d));
    }

    /// Sends one PDU with the digests in force.
    pub fn send(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) -> io::Result<()> {
        let mut out = Vec::new();
        framer::encode(bhs, &[], data, self.digests, &mut out);
        self.stream.write_all(&out)
    }

    /// Sends raw bytes (for malformed-PDU tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Receives one PDU; `Err` with UnexpectedEof when the target closed.
    pub fn recv(&mut self) -> io::Result<Frame> {
        loop {
            match framer::decode(&self.rbuf, self.digests, 1 << 24) {
                Ok(Some((f, used))) => {
                    self.rbuf.drain(..used);
                    if let Some(sn) = stat_sn_of(&f) {
                        self.exp_stat_sn = sn.wrapping_add(1);
                    }
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut tmp = [0u8; 65536];
            let n = self.stream.read(&mut tmp)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    /// A full login: security stage then operational stage with `keys`.
    pub fn login(
        &mut self,
        target: Option<&str>,
        keys: &[(&str, &str)],
    ) -> io::Result<LoginResult> {
        self.login_as(INITIATOR, target, keys)
    }

    pub fn login_as(
        &mut self,
        initiator: &str,
        target: Option<&str>,
        keys: &[(&str, &str)],
    ) -> io::Result<LoginResult> {
        let sec = security_keys(initiator, target, "None");
        let mut answers = TextPairs::default();
        let r = self.login_pdu(0, 1, &sec.encode(), &mut answers)?;
        if r.status_class != 0 {
            return Ok(r);
        }
        self.operational(keys, &mut answers)
    }

    /// A login that authenticates with CHAP (RFC 7143 §12.1.3): AuthMethod=CHAP,
    /// CHAP_A from `algorithms`, the response to the target's challenge with
    /// `user`/`secret`, and with `mutual` a challenge of our own whose answer must
    /// come from that target user and secret. Returns the login's result; a
    /// target that answers the mutual challenge wrongly is an error.
    pub fn login_chap(
        &mut self,
        initiator: &str,
        target: Option<&str>,
        user: &str,
        secret: &[u8],
        algorithms: &str,
        mutual: Option<(&str, &[u8])>,
    ) -> io::Result<LoginResult> {
        use iscsi::chap::{decode_binary, encode_hex, Algorithm};
        let sec = security_keys(initiator, target, "CHAP");
        let mut answers = TextPairs::default();
        let r = self.login_pdu(0, 1, &sec.encode(), &mut answers)?;
        if r.status_class != 0 {
            return Ok(r);
        }
        let mut a = TextPairs::default();
        a.push("CHAP_A", algorithms);
        let r = self.login_pdu(0, 1, &a.encode(), &mut answers)?;
        if r.status_class != 0 {
            return Ok(r);
        }
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let alg = r
            .answers
            .get("CHAP_A")
            .and_then(|v| v.parse().ok())
            .and_then(Algorithm::from_code)
            .ok_or_else(|| bad("no CHAP_A"))?;
        let id: u8 = r
            .answers
            .get("CHAP_I")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no CHAP_I"))?;
        let challenge = r
            .answers
            .get("CHAP_C")
            .and_then(decode_binary)
            .ok_or_else(|| bad("no CHAP_C"))?;
        let mut resp = TextPairs::default();
        resp.push("CHAP_N", user);
        resp.push("CHAP_R", encode_hex(&alg.response(id, secret, &challenge)));
        let my_challenge: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        if mutual.is_some() {
            resp.push("CHAP_I", "42");
            resp.push("CHAP_C", encode_hex(&my_challenge));
        }
        let r = self.login_pdu(0, 1, &resp.encode(), &mut answers)?;
        if r.status_class != 0 {
            return Ok(r);
        }
        if let Some((tuser, tsecret)) = mutual {
            let want = encode_hex(&alg.response(42, tsecret, &my_challenge));
            if r.answers.get("CHAP_N") != Some(tuser) || r.answers.get("CHAP_R") != Some(&want) {
                return Err(bad("the target failed mutual CHAP"));
            }
        }
        self.operational(&[], &mut answers)
    }

    /// The operational stage, into full-feature phase.
    fn operational(
        &mut self,
        keys: &[(&str, &str)],
        answers: &mut TextPairs,
    ) -> io::Result<LoginResult> {
        let mut op = TextPairs::default();
        for (k, v) in keys {
            op.push(k, *v);
        }
        let r = self.login_pdu(1, 3, &op.encode(), answers)?;
        if r.status_class == 0 {
            let a = &r.answers;
            self.digests = DigestConfig {
                header: a.get("HeaderDigest") == Some("CRC32C"),
                data: a.get("DataDigest") == Some("CRC32C"),
            };
            if let Some(v) = a
                .get("MaxRecvDataSegmentLength")
                .and_then(|v| v.parse().ok())
            {
                self.target_mrdsl = v;
            }
            if let Some(v) = a.get("FirstBurstLength").and_then(|v| v.parse().ok()) {
                self.first_burst = v;
            }
            self.immediate_data = a.get("ImmediateData").is_none_or(|v| v == "Yes");
            self.initial_r2t = a.get("InitialR2T").is_none_or(|v| v == "Yes");
        }
        Ok(r)
    }

    fn login_pdu(
        &mut self,
        csg: u8,
        nsg: u8,
        text: &[u8],
        answers: &mut TextPairs,
    ) -> io::Result<LoginResult> {
        let mut w = BhsWriter::new(0x40 | opcode::LOGIN_REQ, 0x80 | (csg << 2) | nsg)
            .data_len(text.len())
            .u32_at(16, 0x1000)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn);
        w.bytes[8..14].copy_from_slice(&self.isid);
        self.send(&w.finish(), text)?;
        let f = self.recv()?;
        if f.bhs[0] & 0x3f != opcode::LOGIN_RESP {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "expected a Login Response",
            ));
        }
        for (k, v) in TextPairs::parse(&f.data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
            .0
        {
            answers.0.retain(|(ak, _)| *ak != k);
            answers.push(&k, v);
        }
        Ok(LoginResult {
            status_class: f.bhs[36],
            status_detail: f.bhs[37],
            answers: answers.clone(),
            tsih: u16::from_be_bytes([f.bhs[14], f.bhs[15]]),
        })
    }

    /// The BHS of a SCSI Command (non-immediate, SIMPLE, F set unless unsolicited
    /// Data-Out follows). Each argument is a header field a test may want to vary.
    #[allow(clippy::too_many_arguments)]
    pub fn command_bhs(
        &mut self,
        itt: u32,
        lun: u16,
        cdb: &[u8],
        edtl: u32,
        read: bool,
        write: bool,
        final_: bool,
    ) -> [u8; BHS_LEN] {
        let flags = (u8::from(final_) << 7) | (u8::from(read) << 6) | (u8::from(write) << 5) | 1;
        let mut w = BhsWriter::new(opcode::SCSI_COMMAND, flags)
            .u16_at(8, lun)
            .u32_at(16, itt)
            .u32_at(20, edtl)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn);
        w.bytes[32..32 + cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        w.finish()
    }

    pub fn data_out_bhs(
        &self,
        itt: u32,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        len: usize,
        final_: bool,
    ) -> [u8; BHS_LEN] {
        BhsWriter::new(opcode::DATA_OUT, u8::from(final_) << 7)
            .data_len(len)
            .u32_at(16, itt)
            .u32_at(20, ttt)
            .u32_at(28, self.exp_stat_sn)
            .u32_at(36, data_sn)
            .u32_at(40, offset)
            .finish()
    }

    /// Runs one SCSI command to completion: immediate and unsolicited data as
    /// negotiated, Data-Out for every R2T, Data-In collected.
    pub fn scsi(
        &mut self,
        lun: u16,
        cdb: &[u8],
        read_len: u32,
        write: Option<&[u8]>,
    ) -> io::Result<ScsiResult> {
        let itt = self.itt();
        let wdata = write.unwrap_or(&[]);
        let edtl = if write.is_some() {
            wdata.len() as u32
        } else {
            read_len
        };
        let imm = if self.immediate_data {
            wdata.len().min(self.first_burst).min(self.target_mrdsl)
        } else {
            0
        };
        let unsolicited_end = if self.initial_r2t {
            imm
        } else {
            wdata.len().min(self.first_burst)
        };
        let final_ = unsolicited_end == imm;
        let bhs = self.command_bhs(itt, lun, cdb, edtl, read_len > 0, write.is_some(), final_);
        let mut bhs = bhs;
        bhs[5..8].copy_from_slice(&(imm as u32).to_be_bytes()[1..]);
        self.send(&bhs, &wdata[..imm])?;
        let mut off = imm;
        let mut sn = 0;
        while off < unsolicited_end {
            let len = (unsolicited_end - off).min(self.target_mrdsl);
            let last = off + len == unsolicited_end;
            let h = self.data_out_bhs(itt, NO_TAG, sn, off as u32, len, last);
            self.send(&h, &wdata[off..off + len])?;
            off += len;
            sn += 1;
        }
        self.collect(itt, wdata)
    }

    /// Sends a command with all of `data` as immediate data and returns its ITT
    /// without waiting: several tasks can then be in flight on this session. The
    /// data must fit FirstBurstLength and the target's MaxRecvDataSegmentLength.
    pub fn start(&mut self, lun: u16, cdb: &[u8], read_len: u32, data: &[u8]) -> io::Result<u32> {
        let itt = self.itt();
        let write = !data.is_empty();
        let edtl = if write { data.len() as u32 } else { read_len };
        let mut bhs = self.command_bhs(itt, lun, cdb, edtl, read_len > 0, write, true);
        bhs[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        self.send(&bhs, data)?;
        Ok(itt)
    }

    /// Waits for the task `itt` started with [`Initiator::start`].
    pub fn wait(&mut self, itt: u32) -> io::Result<ScsiResult> {
        if let Some(r) = self.stash.remove(&itt) {
            return Ok(r);
        }
        self.collect(itt, &[])
    }

    /// Runs the target's side of task `itt` to its status: answers its R2Ts from
    /// `wdata`, gathers its Data-In, and keeps other tasks' responses for later.
    fn collect(&mut self, itt: u32, wdata: &[u8]) -> io::Result<ScsiResult> {
        let mut res = ScsiResult::default();
        let mut others: std::collections::HashMap<u32, ScsiResult> = Default::default();
        loop {
            let f = self.recv()?;
            let op = f.bhs[0] & 0x3f;
            let fitt = be::u32(&f.bhs, 16);
            if fitt != itt && matches!(op, opcode::DATA_IN | opcode::SCSI_RESPONSE) {
                let o = others.entry(fitt).or_default();
                let done = Self::absorb(o, &f);
                if done {
                    if let Some(r) = others.remove(&fitt) {
                        self.stash.insert(fitt, r);
                    }
                }
                continue;
            }
            match op {
                opcode::R2T => {
                    res.r2ts += 1;
                    let ttt = be::u32(&f.bhs, 20);
                    let offset = be::u32(&f.bhs, 40) as usize;
                    let len = be::u32(&f.bhs, 44) as usize;
                    let mut o = offset;
                    let mut dsn = 0;
                    while o < offset + len {
                        let n = (offset + len - o).min(self.target_mrdsl);
                        let h =
                            self.data_out_bhs(itt, ttt, dsn, o as u32, n, o + n == offset + len);
                        let chunk = wdata.get(o..o + n).unwrap_or(&[]);
                        self.send(&h, chunk)?;
                        o += n;
                        dsn += 1;
                    }
                }
                opcode::DATA_IN | opcode::SCSI_RESPONSE => {
                    if Self::absorb(&mut res, &f) {
                        return Ok(res);
                    }
                }
                opcode::NOP_IN => {}
                opcode::ASYNC_MSG => self.async_events.push(f.bhs[36]),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected opcode {other:#x}"),
                    ))
                }
            }
        }
    }

    /// Adds a Data-In or SCSI Response PDU to `res`; true when it carried status.
    fn absorb(res: &mut ScsiResult, f: &Frame) -> bool {
        if f.bhs[0] & 0x3f == opcode::DATA_IN {
            res.data_in_pdus += 1;
            let offset = be::u32(&f.bhs, 40) as usize;
            if res.data.len() < offset + f.data.len() {
                res.data.resize(offset + f.data.len(), 0);
            }
            res.data[offset..offset + f.data.len()].copy_from_slice(&f.data);
            if f.bhs[1] & 0x01 != 0 {
                res.status = f.bhs[3];
                res.residual_flags = f.bhs[1] & 0x06;
                res.residual = be::u32(&f.bhs, 44);
                return true;
            }
            return false;
        }
        res.status = f.bhs[3];
        res.residual_flags = f.bhs[1] & 0x06;
        res.residual = be::u32(&f.bhs, 44);
        if f.data.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([f.data[0], f.data[1]]));
            res.sense = f.data.get(2..2 + n).unwrap_or(&[]).to_vec();
        }
        true
    }

    /// NOP-Out ping with data; returns the echoed data.
    pub fn ping(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let itt = self.itt();
        let bhs = BhsWriter::new(0x40 | opcode::NOP_OUT, 0x80)
            .data_len(data.len())
            .u32_at(16, itt)
            .u32_at(20, NO_TAG)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn)
            .finish();
        self.send(&bhs, data)?;
        loop {
            let f = self.recv()?;
            if f.bhs[0] & 0x3f == opcode::NOP_IN && be::u32(&f.bhs, 16) == itt {
                return Ok(f.data);
            }
        }
    }

    /// Task management request (immediate); returns the response code.
    pub fn tmf(&mut self, function: u8, lun: u16, rtt: u32, ref_cmd_sn: u32) -> io::Result<u8> {
        let itt = self.itt();
        let bhs = BhsWriter::new(0x40 | opcode::TASK_MGMT_REQ, 0x80 | function)
            .u16_at(8, lun)
            .u32_at(16, itt)
            .u32_at(20, rtt)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn)
            .u32_at(32, ref_cmd_sn)
            .finish();
        self.send(&bhs, &[])?;
        loop {
            let f = self.recv()?;
            if f.bhs[0] & 0x3f == opcode::TASK_MGMT_RESP && be::u32(&f.bhs, 16) == itt {
                return Ok(f.bhs[2]);
            }
        }
    }

    /// Text request; returns the answered pairs.
    pub fn text(&mut self, pairs: &[(&str, &str)]) -> io::Result<TextPairs> {
        let mut t = TextPairs::default();
        for (k, v) in pairs {
            t.push(k, *v);
        }
        let itt = self.itt();
        let data = t.encode();
        let bhs = BhsWriter::new(0x40 | opcode::TEXT_REQ, 0x80)
            .data_len(data.len())
            .u32_at(16, itt)
            .u32_at(20, NO_TAG)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn)
            .finish();
        self.send(&bhs, &data)?;
        let f = self.recv()?;
        TextPairs::parse_list(&f.data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Logout (close session); returns the response code.
    pub fn logout(&mut self) -> io::Result<u8> {
        let itt = self.itt();
        let bhs = BhsWriter::new(0x40 | opcode::LOGOUT_REQ, 0x80)
            .u32_at(16, itt)
            .u32_at(24, self.cmd_sn)
            .u32_at(28, self.exp_stat_sn)
            .finish();
        self.send(&bhs, &[])?;
        let f = self.recv()?;
        Ok(f.bhs[2])
    }
}

/// StatSN of target PDUs that carry one.
fn stat_sn_of(f: &Frame) -> Option<u32> {
    let op = f.bhs[0] & 0x3f;
    let has = matches!(
        op,
        opcode::SCSI_RESPONSE
            | opcode::TASK_MGMT_RESP
            | opcode::LOGIN_RESP
            | opcode::TEXT_RESP
            | opcode::LOGOUT_RESP
            | opcode::NOP_IN
    ) || (op == opcode::DATA_IN && f.bhs[1] & 0x01 != 0);
    has.then(|| be::u32(&f.bhs, 24))
        .filter(|_| !(op == opcode::NOP_IN && be::u32(&f.bhs, 16) == NO_TAG))
}

/// CDB builders for the commands tests use most.
pub mod cdb {
    pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = 0x28;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }
    pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
        let mut c = read10(lba, blocks);
        c[0] = 0x2a;
        c
    }
    pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x88;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }
    pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
        let mut c = read16(lba, blocks);
        c[0] = 0x8a;
        c
    }
    pub fn compare_and_write(lba: u64, blocks: u8) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x89;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = blocks;
        c
    }
    pub const TEST_UNIT_READY: [u8; 6] = [0; 6];
    /// READ CAPACITY(16) (SERVICE ACTION IN, 10h).
    pub fn read_capacity16(alloc: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x10;
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }
    pub fn report_luns(alloc: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0] = 0xa0;
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    }
    pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
        let a = alloc.to_be_bytes();
        [0x12, u8::from(evpd), page, a[0], a[1], 0]
    }
    pub fn read12(lba: u32, blocks: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0] = 0xa8;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[6..10].copy_from_slice(&blocks.to_be_bytes());
        c
    }
    pub fn verify16(lba: u64, blocks: u32) -> [u8; 16] {
        let mut c = read16(lba, blocks);
        c[0] = 0x8f;
        c
    }
    pub fn request_sense(alloc: u8) -> [u8; 6] {
        [0x03, 0, 0, 0, alloc, 0]
    }
    /// SSC READ(6): FIXED (a count of blocks) or a byte count; SILI.
    pub fn tape_read(fixed: bool, sili: bool, len: u32) -> [u8; 6] {
        let l = len.to_be_bytes();
        [
            0x08,
            u8::from(sili) << 1 | u8::from(fixed),
            l[1],
            l[2],
            l[3],
            0,
        ]
    }
    /// SSC WRITE(6): FIXED (a count of blocks) or a byte count.
    pub fn tape_write(fixed: bool, len: u32) -> [u8; 6] {
        let l = len.to_be_bytes();
        [0x0a, u8::from(fixed), l[1], l[2], l[3], 0]
    }
    /// WRITE FILEMARKS(6).
    pub fn write_filemarks(n: u32) -> [u8; 6] {
        let l = n.to_be_bytes();
        [0x10, 0, l[1], l[2], l[3], 0]
    }
    /// SPACE(6): code 0 blocks, 1 filemarks, 3 end of data; a 24-bit signed count.
    pub fn space(code: u8, count: i32) -> [u8; 6] {
        let c = count.to_be_bytes();
        [0x11, code, c[1], c[2], c[3], 0]
    }
    pub const REWIND: [u8; 6] = [0x01, 0, 0, 0, 0, 0];
    /// START STOP UNIT: LOEJ and START, no IMMED, power condition 0.
    pub fn start_stop(loej: bool, start: bool) -> [u8; 6] {
        [0x1b, 0, 0, 0, u8::from(loej) << 1 | u8::from(start), 0]
    }
    pub fn prevent_allow(prevent: bool) -> [u8; 6] {
        [0x1e, 0, 0, 0, u8::from(prevent), 0]
    }
    /// SANITIZE with `action` (01h OVERWRITE, 02h BLOCK ERASE, 1Fh EXIT FAILURE MODE)
    /// and a parameter list of `len` bytes.
    pub fn sanitize(immed: bool, ause: bool, action: u8, len: u16) -> [u8; 10] {
        let [hi, lo] = len.to_be_bytes();
        let b1 = u8::from(immed) << 7 | u8::from(ause) << 5 | action;
        [0x48, b1, 0, 0, 0, 0, 0, hi, lo, 0]
    }
    /// SANITIZE OVERWRITE's parameter list: `passes`, INVERT, the pattern.
    pub fn overwrite_params(passes: u8, invert: bool, pattern: &[u8]) -> Vec<u8> {
        let mut p = vec![u8::from(invert) << 7 | passes, 0];
        p.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
        p.extend_from_slice(pattern);
        p
    }
    /// REPORT SUPPORTED OPERATION CODES for one opcode and service action (option 2).
    pub fn report_opcode(opcode: u8, sa: u16) -> [u8; 12] {
        let [h, l] = sa.to_be_bytes();
        [0xa3, 0x0c, 0x02, opcode, h, l, 0, 0, 1, 0, 0, 0]
    }
    pub fn pr_in(sa: u8, alloc: u16) -> [u8; 10] {
        let [hi, lo] = alloc.to_be_bytes();
        [0x5e, sa, 0, 0, 0, 0, 0, hi, lo, 0]
    }
    /// PERSISTENT RESERVE OUT with a 24-byte parameter list.
    pub fn pr_out(sa: u8, kind: u8) -> [u8; 10] {
        [0x5f, sa, kind, 0, 0, 0, 0, 0, 24, 0]
    }
    /// The 24-byte PR OUT parameter list: reservation key, service action key.
    pub fn pr_params(key: u64, sark: u64) -> [u8; 24] {
        let mut p = [0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sark.to_be_bytes());
        p
    }
    pub fn receive_copy_results(sa: u8, alloc: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x84;
        c[1] = sa;
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }
}

/// A TCP connection to `to` from the local address `from`: on Linux every 127.x.y.z
/// is loopback, so one test can play several hosts (per-address limits, delays).
pub fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    fn sin(a: std::net::SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket(2); the fd is owned by the TcpStream made from it below
    // (or closed here on failure).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we own; nothing else holds it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sin(std::net::SocketAddrV4::new(from, 0));
    let remote = sin(to);
    // SAFETY: valid sockaddr_in values of the length passed, on our socket.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}
