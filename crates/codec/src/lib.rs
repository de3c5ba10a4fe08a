//! Wire-format building blocks shared by the iSCSI and SCSI crates.
//!
//! - [`Reader`]: a cursor over a parameter list or page. Every read is checked; a
//!   short buffer is a [`Short`] error carrying the absolute offset, so parsers turn
//!   it into PARAMETER LIST LENGTH ERROR or a field pointer without arithmetic of
//!   their own. [`Reader::sub`] hands a bounded part to a nested parser, and
//!   [`Reader::expect_empty`] refuses leftovers.
//! - [`Writer`]: big-endian appends, with length fields filled in after the body
//!   ([`Writer::u16_len`], [`Writer::u32_len`]) and padding.
//! - [`be`]: big-endian accessors at fixed offsets, for headers whose length was
//!   checked once (a CDB against its table row, a 48-byte BHS).
//! - [`open_enum!`]: a newtype over a wire code with named constants; unknown values
//!   are data, printed in hex, never a parse failure.
#![forbid(unsafe_code)]

use std::fmt;

/// A read past the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// Absolute offset (from the start of the outermost buffer) where the read began.
    pub at: usize,
    /// Bytes the read needed.
    pub wanted: usize,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes wanted at offset {}", self.wanted, self.at)
    }
}

impl std::error::Error for Short {}

/// Bytes left over after a structure that must fill its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    /// Absolute offset of the first unread byte.
    pub at: usize,
    pub len: usize,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes left over at offset {}", self.len, self.at)
    }
}

impl std::error::Error for Leftover {}

/// A forward-only cursor over bytes. Offsets it reports are absolute: a
/// [`Reader::sub`] reader counts from the start of its parent's buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

macro_rules! read_be {
    ($($name:ident: $t:ty, $n:expr;)*) => {$(
        /// Reads a big-endian integer.
        pub fn $name(&mut self) -> Result<$t, Short> {
            let b = self.array::<$n>()?;
            Ok(<$t>::from_be_bytes(b))
        }
    )*};
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// What is left, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if n > self.remaining() {
            return Err(Short {
                at: self.offset(),
                wanted: n,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), Short> {
        self.take(n).map(|_| ())
    }

    /// A reader over the next `n` bytes, which this one skips.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Short> {
        let base = self.offset();
        let buf = self.take(n)?;
        Ok(Reader { buf, pos: 0, base })
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    read_be! {
        u16: u16, 2;
        u32: u32, 4;
        u64: u64, 8;
    }

    /// A 24-bit big-endian integer.
    pub fn u24(&mut self) -> Result<u32, Short> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    /// Succeeds only when everything was read.
    pub fn expect_empty(&self) -> Result<(), Leftover> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Leftover {
                at: self.offset(),
                len: self.remaining(),
            })
        }
    }
}

/// A big-endian byte builder.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn u24(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes()[1..])
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    /// Pads with zeros to a multiple of `n` bytes.
    pub fn pad_to(&mut self, n: usize) -> &mut Self {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
        self
    }

    /// A 16-bit length field, then what `body` writes; the field holds the body's
    /// length (saturated at the field's maximum).
    pub fn u16_len(&mut self, body: impl FnOnce(&mut Self)) -> &mut Self {
        let at = self.buf.len();
        self.u16(0);
        body(self);
        let n = (self.buf.len() - at - 2).min(usize::from(u16::MAX)) as u16;
        self.buf[at..at + 2].copy_from_slice(&n.to_be_bytes());
        self
    }

    /// A 32-bit length field, then what `body` writes.
    pub fn u32_len(&mut self, body: impl FnOnce(&mut Self)) -> &mut Self {
        let at = self.buf.len();
        self.u32(0);
        body(self);
        let n = u32::try_from(self.buf.len() - at - 4).unwrap_or(u32::MAX);
        self.buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
        self
    }

    /// Overwrites a big-endian u16 written earlier (a count known only at the end).
    pub fn set_u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Big-endian reads at fixed offsets. The caller has checked the buffer's length
/// once (a CDB against its table row, a fixed-size header); an offset past the end
/// is a bug in the caller and panics.
pub mod be {
    pub fn u16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    pub fn u24(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
    }
    pub fn u32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    pub fn u64(b: &[u8], at: usize) -> u64 {
        (u64::from(u32(b, at)) << 32) | u64::from(u32(b, at + 4))
    }
}

/// Upper-case hexadecimal, two digits a byte.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(2 * b.len());
    for &x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    s
}

/// Declares a newtype over a wire code with named constants. Unknown values are
/// representable (the code is data) and print as `Name(0x..)`.
///
/// ```
/// codec::open_enum! {
///     /// A TMF function code.
///     pub struct Tmf(u8) {
///         ABORT_TASK = 1,
///         LOGICAL_UNIT_RESET = 5,
///     }
/// }
/// assert_eq!(format!("{:?}", Tmf::ABORT_TASK), "ABORT_TASK");
/// assert_eq!(format!("{:?}", Tmf(0x7f)), "Tmf(0x7f)");
/// ```
#[macro_export]
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $cname:ident = $value:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: Self = Self($value); )*

            /// The constant's name, for a known value.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$cname => Some(stringify!($cname)), )*
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                Self(v)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reader_reports_absolute_offsets() {
        let b = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut r = Reader::new(&b);
        r.skip(2).unwrap();
        let mut s = r.sub(4).unwrap();
        assert_eq!(s.offset(), 2);
        assert_eq!(s.u16().unwrap(), 0x0203);
        assert_eq!(s.expect_empty(), Err(Leftover { at: 4, len: 2 }));
        assert_eq!(s.u32(), Err(Short { at: 4, wanted: 4 }));
        assert_eq!(s.u16().unwrap(), 0x0405);
        assert!(s.expect_empty().is_ok());
        assert_eq!(r.offset(), 6);
        assert_eq!(r.u24().unwrap(), 0x060708);
        assert!(r.sub(2).is_err());
    }

    #[test]
    fn writer_fills_length_fields() {
        let mut w = Writer::new();
        w.u8(0x8f).u16_len(|w| {
            w.u32(0xdead_beef).u8(1);
        });
        w.pad_to(4);
        assert_eq!(w.as_slice(), &[0x8f, 0, 5, 0xde, 0xad, 0xbe, 0xef, 1]);
        let mut w = Writer::new();
        w.u32_len(|w| {
            w.zeros(3);
        });
        assert_eq!(w.into_vec(), vec![0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn hex_is_upper_case() {
        assert_eq!(hex(&[0x60, 0x0a, 0xff]), "600AFF");
    }

    open_enum! {
        struct Code(u8) { ONE = 1, TWO = 2 }
    }

    #[test]
    fn open_enum_keeps_unknown_values() {
        assert_eq!(format!("{:?}", Code::TWO), "TWO");
        assert_eq!(format!("{:?}", Code(9)), "Code(0x9)");
        assert_eq!(Code::from(1), Code::ONE);
    }

    proptest! {
        #[test]
        fn integers_round_trip(a in any::<u8>(), b in any::<u16>(), c in 0u32..1 << 24, d in any::<u32>(), e in any::<u64>()) {
            let mut w = Writer::new();
            w.u8(a).u16(b).u24(c).u32(d).u64(e);
            let bytes = w.into_vec();
            prop_assert_eq!(be::u16(&bytes, 1), b);
            prop_assert_eq!(be::u24(&bytes, 3), c);
            prop_assert_eq!(be::u32(&bytes, 6), d);
            prop_assert_eq!(be::u64(&bytes, 10), e);
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.u8().unwrap(), a);
            prop_assert_eq!(r.u16().unwrap(), b);
            prop_assert_eq!(r.u24().unwrap(), c);
            prop_assert_eq!(r.u32().unwrap(), d);
            prop_assert_eq!(r.u64().unwrap(), e);
            prop_assert!(r.expect_empty().is_ok());
        }

        #[test]
        fn reads_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..32), ops in proptest::collection::vec(0u8..6, 0..16)) {
            let mut r = Reader::new(&buf);
            for op in ops {
                let _ = match op {
                    0 => r.u8().map(u64::from),
                    1 => r.u16().map(u64::from),
                    2 => r.u24().map(u64::from),
                    3 => r.u32().map(u64::from),
                    4 => r.u64(),
                    _ => r.sub(3).map(|s| s.remaining() as u64),
                };
            }
        }
    }
}
