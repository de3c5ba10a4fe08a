//! The connection's byte streams: reading PDUs (header first, data straight into the
//! buffer it belongs in) and `OutTx`, which stamps sequence numbers and sends PDUs
//! with vectored writes from whichever thread answers (a flusher task writes what
//! the socket does not take at once).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};

use backstore::SharedBytes;
use iscsi::framer::{data_digest, pad4, Layout};
use iscsi::pdu::BHS_LEN;
use iscsi::session::stamp::Stamper;
use iscsi::{DigestConfig, PduError};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

use crate::pool::BufPool;

pub use iscsi::session::stamp::{SessionWindow, SnMode};

#[derive(Debug)]
pub enum DataRef {
    None,
    Owned(Vec<u8>),
    /// A range of the message's shared buffer.
    Buf(usize, usize),
}

#[derive(Debug)]
pub struct PduOut {
    pub bhs: [u8; BHS_LEN],
    pub sn: SnMode,
    pub data: DataRef,
}

impl PduOut {
    /// Hands `f` the bytes of this PDU's data segment in order: `buf` is the
    /// message's buffer, `shared` the store's pages when the message has no buffer.
    fn for_each_part<'a>(
        &'a self,
        buf: Option<&'a [u8]>,
        shared: &'a [SharedBytes],
        mut f: impl FnMut(&'a [u8]),
    ) {
        match &self.data {
            DataRef::None => {}
            DataRef::Owned(v) => f(v),
            DataRef::Buf(at, len) => {
                if let Some(b) = buf {
                    f(b.get(*at..at + len).unwrap_or(&[]));
                    return;
                }
                // The range [at, at + len) of the shared pieces laid end to end.
                let (mut pos, end) = (0usize, at + len);
                for piece in shared {
                    let bytes = piece.as_slice();
                    let (p0, p1) = (pos, pos + bytes.len());
                    pos = p1;
                    if p1 <= *at {
                        continue;
                    }
                    if p0 >= end {
                        break;
                    }
                    f(&bytes[at.saturating_sub(p0)..(end - p0).min(bytes.len())]);
                }
            }
        }
    }

    fn data_len(&self, buf: Option<&[u8]>, shared: &[SharedBytes]) -> usize {
        let mut n = 0;
        self.for_each_part(buf, shared, |p| n += p.len());
        n
    }

    pub fn new(bhs: [u8; BHS_LEN], sn: SnMode) -> Self {
        Self {
            bhs,
            sn,
            data: DataRef::None,
        }
    }
    pub fn with_data(bhs: [u8; BHS_LEN], sn: SnMode, data: Vec<u8>) -> Self {
        Self {
            bhs,
            sn,
            data: if data.is_empty() {
                DataRef::None
            } else {
                DataRef::Owned(data)
            },
        }
    }
}

/// What to do once a message is on the wire.
#[derive(Debug, Default)]
pub enum After {
    #[default]
    Nothing,
    Close,
}

/// One message for the writer: PDUs sent back to back, an optional shared buffer
/// their data refers to (returned to the pool after sending) or, instead, pieces of
/// a store's memory lent without a copy, and whether this ends an admitted command.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub pdus: Vec<PduOut>,
    pub buf: Option<Vec<u8>>,
    pub shared: Vec<SharedBytes>,
    pub completes_command: bool,
    pub after: After,
}

impl Outgoing {
    pub fn one(pdu: PduOut) -> Self {
        Self {
            pdus: vec![pdu],
            ..Self::default()
        }
    }
}

/// A message stamped and encoded, waiting for (the rest of) its bytes to go out.
struct Encoded {
    /// BHS, header digests, padding and data digests of every PDU, back to back.
    meta: Vec<u8>,
    /// Per PDU: its header bytes and its padding/digest bytes in `meta`.
    ranges: Vec<(usize, usize, usize, usize)>,
    pdus: Vec<PduOut>,
    buf: Option<Vec<u8>>,
    shared: Vec<SharedBytes>,
    after: After,
    /// Bytes already on the wire.
    written: usize,
}

impl Encoded {
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut v = Vec::with_capacity(self.pdus.len() * 3);
        for (p, &(h0, h1, t0, t1)) in self.pdus.iter().zip(&self.ranges) {
            v.push(IoSlice::new(&self.meta[h0..h1]));
            p.for_each_part(self.buf.as_deref(), &self.shared, |d| {
                if !d.is_empty() {
                    v.push(IoSlice::new(d));
                }
            });
            if t1 > t0 {
                v.push(IoSlice::new(&self.meta[t0..t1]));
            }
        }
        v
    }

    /// Writes what the socket takes now. `Ok(true)`: all of it is out.
    fn write_some(&mut self, wr: &OwnedWriteHalf) -> io::Result<bool> {
        let mut all = self.slices();
        let mut slices = &mut all[..];
        IoSlice::advance_slices(&mut slices, self.written);
        let mut written = self.written;
        let result = loop {
            if slices.is_empty() {
                break Ok(true);
            }
            // Linux takes at most IOV_MAX (1024) slices per call.
            let n = slices.len().min(1024);
            match wr.try_write_vectored(&slices[..n]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    written += k;
                    IoSlice::advance_slices(&mut slices, k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        drop(all);
        self.written = written;
        result
    }
}

/// The sending side of a connection, shared by everything that answers on it.
///
/// `send` stamps StatSN/ExpCmdSN/MaxCmdSN and writes the PDUs to the socket right
/// away from the calling thread (a network task or the worker that ran the
/// command) when nothing is queued ahead of them; only what the socket does not
/// take at once is queued for the flusher task, which writes it as the socket
/// drains. A command's response thus costs no hand-off to another task.
#[derive(Clone)]
pub struct OutTx {
    wire: Arc<Wire>,
    _senders: Arc<Senders>,
}

/// Dropped with the last [`OutTx`]: the flusher then sends what is queued, shuts
/// the socket's sending side and returns (what the channel's closing did).
struct Senders(Arc<Wire>);

impl Drop for Senders {
    fn drop(&mut self) {
        self.0.core.lock().unwrap_or_else(|e| e.into_inner()).ending = true;
        self.0.flush.notify_one();
    }
}

struct Wire {
    wr: OwnedWriteHalf,
    core: Mutex<Core>,
    flush: Notify,
    shared: Arc<SessionWindow>,
    digests: DigestConfig,
    pool: Arc<BufPool>,
}

struct Core {
    stamper: Stamper,
    /// Messages (the first possibly half written) waiting for the socket, in order.
    backlog: VecDeque<Encoded>,
    /// No more bytes go out: closed after a message, ended, or failed.
    closed: bool,
    /// The session ended: the flusher writes the backlog, shuts down and exits.
    ending: bool,
    spare: Vec<u8>,
    /// The reader has more requests buffered: hold responses and write them
    /// together when it runs dry ([`OutTx::uncork`]).
    corked: bool,
    /// Bytes held while corked.
    held: usize,
}

/// Most bytes held while corked before they are written anyway.
const CORK_LIMIT: usize = 1 << 20;

/// The connection can take no more messages.
#[derive(Debug)]
pub struct Closed;

impl OutTx {
    /// The sender and its flusher task (spawn it; it returns once every clone of
    /// the sender is dropped and the backlog is out, or when the connection fails).
    pub fn new(
        wr: OwnedWriteHalf,
        shared: Arc<SessionWindow>,
        digests: DigestConfig,
        stamper: Stamper,
        pool: Arc<BufPool>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let wire = Arc::new(Wire {
            wr,
            core: Mutex::new(Core {
                stamper,
                backlog: VecDeque::new(),
                closed: false,
                ending: false,
                spare: Vec::with_capacity(4096),
                corked: false,
                held: 0,
            }),
            flush: Notify::new(),
            shared,
            digests,
            pool,
        });
        let senders = Arc::new(Senders(wire.clone()));
        (
            Self {
                wire: wire.clone(),
                _senders: senders,
            },
            flusher(wire),
        )
    }

    /// Sends (or queues, in order) one message.
    pub fn send(&self, msg: Outgoing) -> Result<(), Closed> {
        let w = &*self.wire;
        let mut core = w.core.lock().unwrap_or_else(|e| e.into_inner());
        if msg.completes_command {
            w.shared.completed();
        }
        if core.closed {
            if let Some(b) = msg.buf {
                w.pool.put(b);
            }
            return Err(Closed);
        }
        let (exp, max) = w.shared.sns();
        let mut meta = std::mem::take(&mut core.spare);
        meta.clear();
        let mut ranges = Vec::with_capacity(msg.pdus.len());
        let mut data_bytes = 0;
        let mut pdus = msg.pdus;
        for p in &mut pdus {
            core.stamper.stamp(&mut p.bhs, p.sn, exp, max);
            let len = p.data_len(msg.buf.as_deref(), &msg.shared);
            data_bytes += len;
            let h0 = meta.len();
            meta.extend_from_slice(&p.bhs);
            if w.digests.header {
                meta.extend_from_slice(&iscsi::digest::crc32c(&p.bhs).to_le_bytes());
            }
            let h1 = meta.len();
            if len > 0 {
                let pad = &[0u8; 3][..pad4(len) - len];
                meta.extend_from_slice(pad);
                if w.digests.data {
                    let mut crc = 0;
                    p.for_each_part(msg.buf.as_deref(), &msg.shared, |d| {
                        crc = iscsi::digest::crc32c_append(crc, d);
                    });
                    meta.extend_from_slice(&iscsi::digest::crc32c_append(crc, pad).to_le_bytes());
                }
            }
            ranges.push((h0, h1, h1, meta.len()));
        }
        let mut e = Encoded {
            meta,
            ranges,
            pdus,
            buf: msg.buf,
            shared: msg.shared,
            after: msg.after,
            written: 0,
        };
        if core.corked && core.held < CORK_LIMIT {
            core.held += e.meta.len() + data_bytes;
            core.backlog.push_back(e);
            return Ok(());
        }
        if !core.backlog.is_empty() {
            core.backlog.push_back(e);
            if !core.corked {
                return Ok(());
            }
            // Corked past the limit: write what is held now.
            core.held = 0;
            drop(core);
            w.write_backlog_now();
            return Ok(());
        }
        match e.write_some(&w.wr) {
            Ok(true) => {
                if matches!(e.after, After::Close) {
                    core.closed = true;
                    w.shutdown_write();
                }
                if let Some(b) = e.buf.take() {
                    w.pool.put(b);
                }
                core.spare = e.meta;
            }
            Ok(false) => {
                core.backlog.push_back(e);
                drop(core);
                w.flush.notify_one();
            }
            Err(err) => {
                tracing::debug!(error = %err, "write failed; connection closing");
                core.closed = true;
                if let Some(b) = e.buf.take() {
                    w.pool.put(b);
                }
                drop(core);
                w.flush.notify_one();
            }
        }
        Ok(())
    }
}

impl OutTx {
    /// The reader has more requests already buffered: hold responses (from any
    /// thread) until [`OutTx::uncork`], so that they leave in one write. Cuts
    /// syscalls and wake-ups of the initiator when it pipelines commands.
    pub fn cork(&self) {
        self.wire
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .corked = true;
    }

    /// Writes what was held while corked (what the socket does not take goes to
    /// the flusher) and sends later responses at once again.
    pub fn uncork(&self) {
        let mut core = self.wire.core.lock().unwrap_or_else(|e| e.into_inner());
        if !core.corked {
            return;
        }
        core.corked = false;
        core.held = 0;
        let pending = !core.backlog.is_empty();
        drop(core);
        if pending {
            self.wire.write_backlog_now();
        }
    }
}

impl Wire {
    /// Writes the backlog from the calling thread as far as the socket takes it;
    /// the flusher is told about the rest, or about a failure.
    fn write_backlog_now(&self) {
        match self.flush_backlog() {
            Ok(true) => {}
            Ok(false) => self.flush.notify_one(),
            Err(e) => {
                tracing::debug!(error = %e, "write failed; connection closing");
                self.core.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
                self.flush.notify_one();
            }
        }
    }

    fn shutdown_write(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is owned by `self.wr` and open for its lifetime.
        unsafe { libc::shutdown(self.wr.as_ref().as_raw_fd(), libc::SHUT_WR) };
    }

    /// Writes queued messages until the socket is full (`Ok(false)`) or the queue
    /// is empty (`Ok(true)`).
    fn flush_backlog(&self) -> io::Result<bool> {
        let mut guard = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let core = &mut *guard;
        while !core.closed {
            let Some(front) = core.backlog.front_mut() else {
                break;
            };
            if !front.write_some(&self.wr)? {
                return Ok(false);
            }
            if let Some(mut done) = core.backlog.pop_front() {
                if let Some(b) = done.buf.take() {
                    self.pool.put(b);
                }
                if matches!(done.after, After::Close) {
                    core.closed = true;
                    self.shutdown_write();
                }
            }
        }
        Ok(true)
    }

    fn release_backlog(&self) {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        core.closed = true;
        for mut m in core.backlog.drain(..) {
            if let Some(b) = m.buf.take() {
                self.pool.put(b);
            }
        }
    }
}

/// Writes what `send` could not, as the socket drains; returns once the session
/// ended and its last bytes are out, or the connection failed.
async fn flusher(w: Arc<Wire>) {
    loop {
        w.flush.notified().await;
        loop {
            match w.flush_backlog() {
                Ok(true) => break,
                Ok(false) => {
                    if let Err(e) = w.wr.writable().await {
                        tracing::debug!(error = %e, "connection failed while sending");
                        w.release_backlog();
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write failed; connection closing");
                    w.release_backlog();
                    return;
                }
            }
        }
        let core = w.core.lock().unwrap_or_else(|e| e.into_inner());
        let (closed, ending) = (core.closed, core.ending);
        drop(core);
        if closed || ending {
            w.release_backlog();
            if !closed {
                w.shutdown_write();
            }
            return;
        }
    }
}

/// A PDU header as read: BHS, its layout, and AHS bytes.
pub struct Header {
    pub bhs: [u8; BHS_LEN],
    pub layout: Layout,
    pub ahs: Vec<u8>,
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Protocol(PduError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

pub struct PduReader {
    pub rd: BufReader<OwnedReadHalf>,
    pub digests: DigestConfig,
    /// Largest data segment accepted (our MaxRecvDataSegmentLength).
    pub max_data: usize,
    scratch: Vec<u8>,
}

impl PduReader {
    pub fn new(rd: OwnedReadHalf, max_data: usize) -> Self {
        Self {
            rd: BufReader::with_capacity(64 * 1024, rd),
            digests: DigestConfig::default(),
            max_data,
            scratch: vec![0u8; 8],
        }
    }

    /// Whether a whole PDU is already in the read buffer (so handling it needs no
    /// wait on the network).
    pub fn whole_pdu_buffered(&self) -> bool {
        let buf = self.rd.buffer();
        let Some(bhs) = buf
            .get(..BHS_LEN)
            .and_then(|b| <&[u8; BHS_LEN]>::try_from(b).ok())
        else {
            return false;
        };
        let l = Layout::of(bhs, self.digests);
        buf.len() >= BHS_LEN + l.header_tail + l.data_tail
    }

    /// Reads the next header. A header digest error or an oversized data segment
    /// cannot be recovered from at ErrorRecoveryLevel 0: the caller closes.
    pub async fn header(&mut self) -> Result<Header, ReadError> {
        let mut bhs = [0u8; BHS_LEN];
        self.rd.read_exact(&mut bhs).await?;
        let layout = Layout::of(&bhs, self.digests);
        // AHS (at most 255 words) and header digest fit on the stack: no allocation
        // per PDU unless an AHS is present.
        let mut tail_buf = [0u8; 255 * 4 + 4];
        let tail = &mut tail_buf[..layout.header_tail];
        self.rd.read_exact(tail).await?;
        layout
            .check_header(&bhs, tail, self.digests)
            .map_err(ReadError::Protocol)?;
        if layout.prefix.data_segment_len > self.max_data {
            return Err(ReadError::Protocol(PduError::DataTooLong {
                len: layout.prefix.data_segment_len,
                max: self.max_data,
            }));
        }
        let ahs = tail[..layout.prefix.total_ahs_len].to_vec();
        Ok(Header { bhs, layout, ahs })
    }

    /// Reads the data segment into `dst` (exactly the segment length), then padding and
    /// digest. A digest mismatch is reported after the bytes are consumed, so the
    /// stream stays in sync.
    pub async fn data_into(
        &mut self,
        h: &Header,
        dst: &mut [u8],
    ) -> Result<Result<(), PduError>, ReadError> {
        let len = h.layout.prefix.data_segment_len;
        debug_assert_eq!(dst.len(), len);
        if len == 0 {
            return Ok(Ok(()));
        }
        self.rd.read_exact(dst).await?;
        let extra = pad4(len) - len + if self.digests.data { 4 } else { 0 };
        self.rd.read_exact(&mut self.scratch[..extra]).await?;
        if self.digests.data {
            let at = pad4(len) - len;
            let got = u32::from_le_bytes([
                self.scratch[at],
                self.scratch[at + 1],
                self.scratch[at + 2],
                self.scratch[at + 3],
            ]);
            if got != data_digest(dst) {
                return Ok(Err(PduError::DataDigest));
            }
        }
        Ok(Ok(()))
    }

    /// Reads the data segment into a new vector.
    pub async fn data_vec(&mut self, h: &Header) -> Result<Result<Vec<u8>, PduError>, ReadError> {
        let mut v = vec![0u8; h.layout.prefix.data_segment_len];
        Ok(self.data_into(h, &mut v).await?.map(|_| v))
    }

    /// Consumes and drops the data segment.
    pub async fn skip_data(&mut self, h: &Header) -> Result<(), ReadError> {
        let n = h.layout.data_tail;
        let mut left = n;
        let mut buf = [0u8; 4096];
        while left > 0 {
            let k = left.min(buf.len());
            self.rd.read_exact(&mut buf[..k]).await?;
            left -= k;
        }
        Ok(())
    }
}
