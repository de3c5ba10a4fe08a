//! The connection's byte streams: reading PDUs (header first, data straight into the
//! buffer it belongs in) and the writer task that stamps sequence numbers and sends
//! PDUs with vectored writes.

use std::io::{self, IoSlice};
use std::sync::Arc;

use iscsi::framer::{data_digest, pad4, Layout};
use iscsi::pdu::BHS_LEN;
use iscsi::session::stamp::Stamper;
use iscsi::{DigestConfig, PduError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

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
    /// The bytes of this PDU's data segment; `buf` is the message's shared buffer.
    fn data_in<'a>(&'a self, buf: Option<&'a [u8]>) -> &'a [u8] {
        match &self.data {
            DataRef::None => &[],
            DataRef::Owned(v) => v,
            DataRef::Buf(at, len) => buf.and_then(|b| b.get(*at..at + len)).unwrap_or(&[]),
        }
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
/// their data refers to (returned to the pool after sending), and whether this ends
/// an admitted command.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub pdus: Vec<PduOut>,
    pub buf: Option<Vec<u8>>,
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

pub type OutTx = mpsc::UnboundedSender<Outgoing>;

/// Writes `slices` completely.
async fn write_all_vectored(
    wr: &mut OwnedWriteHalf,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let n = wr.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// The writer task: owns the write half and the StatSN counter (`Stamper`).
pub async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<SessionWindow>,
    digests: DigestConfig,
    mut stamper: Stamper,
    pool: Arc<BufPool>,
) {
    let mut meta: Vec<u8> = Vec::with_capacity(4096);
    let mut ranges: Vec<(usize, usize, usize, usize)> = Vec::new();
    while let Some(msg) = rx.recv().await {
        if msg.completes_command {
            shared.completed();
        }
        let (exp, max) = shared.sns();
        meta.clear();
        ranges.clear();
        let mut pdus = msg.pdus;
        for p in &mut pdus {
            stamper.stamp(&mut p.bhs, p.sn, exp, max);
            let data = p.data_in(msg.buf.as_deref());
            let h0 = meta.len();
            meta.extend_from_slice(&p.bhs);
            if digests.header {
                meta.extend_from_slice(&iscsi::digest::crc32c(&p.bhs).to_le_bytes());
            }
            let h1 = meta.len();
            if !data.is_empty() {
                meta.extend_from_slice(&[0u8; 3][..pad4(data.len()) - data.len()]);
                if digests.data {
                    meta.extend_from_slice(&data_digest(data).to_le_bytes());
                }
            }
            ranges.push((h0, h1, h1, meta.len()));
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(pdus.len() * 3);
        for (p, &(h0, h1, t0, t1)) in pdus.iter().zip(&ranges) {
            slices.push(IoSlice::new(&meta[h0..h1]));
            let data = p.data_in(msg.buf.as_deref());
            if !data.is_empty() {
                slices.push(IoSlice::new(data));
            }
            if t1 > t0 {
                slices.push(IoSlice::new(&meta[t0..t1]));
            }
        }
        let mut failed = false;
        for chunk in slices.chunks_mut(512) {
            if let Err(e) = write_all_vectored(&mut wr, chunk).await {
                tracing::debug!(error = %e, "write failed; connection closing");
                failed = true;
                break;
            }
        }
        drop(slices);
        if let Some(b) = msg.buf {
            pool.put(b);
        }
        if failed {
            return;
        }
        match msg.after {
            After::Nothing => {}
            After::Close => {
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
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
