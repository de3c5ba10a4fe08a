//! Serial number arithmetic (RFC 1982, as required by RFC 7143 §4.2.2.1) and the
//! CmdSN window a session advertises through ExpCmdSN / MaxCmdSN.

/// `a < b` in 32-bit serial number arithmetic.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `a <= b` in 32-bit serial number arithmetic.
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// What the window says about a command's CmdSN (RFC 7143 §4.2.2.1, §3.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdSnCheck {
    /// The next command to deliver (CmdSN == ExpCmdSN).
    InOrder,
    /// Inside the window but ahead of ExpCmdSN: hold it until the gap fills.
    Ahead,
    /// Outside the window (already seen, or beyond MaxCmdSN): the target silently drops it.
    OutOfWindow,
}

/// The session's command window: `ExpCmdSN ..= MaxCmdSN`.
///
/// MaxCmdSN is recomputed from the number of admitted-but-unanswered commands, so a
/// session can never queue more than `depth` of them, and it never moves backwards
/// (RFC 7143 §4.2.2.1): admission is checked against the last value advertised.
#[derive(Debug, Clone)]
pub struct CmdWindow {
    exp_cmd_sn: u32,
    depth: u32,
    max_cmd_sn: u32,
}

impl CmdWindow {
    /// A window starting at `first` (the CmdSN of the leading login request) that
    /// admits `depth` non-immediate commands at once.
    pub fn new(first: u32, depth: u32) -> Self {
        let depth = depth.max(1);
        Self {
            exp_cmd_sn: first,
            depth,
            max_cmd_sn: first.wrapping_add(depth).wrapping_sub(1),
        }
    }

    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// The MaxCmdSN to advertise now, given `in_flight` admitted commands not yet
    /// answered. Never less than what was advertised before.
    pub fn max_cmd_sn(&mut self, in_flight: u32) -> u32 {
        let free = self.depth.saturating_sub(in_flight);
        let candidate = self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1);
        if sn_lt(self.max_cmd_sn, candidate) {
            self.max_cmd_sn = candidate;
        }
        self.max_cmd_sn
    }

    /// Classifies a non-immediate command's CmdSN against `[ExpCmdSN, MaxCmdSN]`.
    pub fn check(&self, cmd_sn: u32) -> CmdSnCheck {
        if cmd_sn == self.exp_cmd_sn && sn_le(cmd_sn, self.max_cmd_sn) {
            CmdSnCheck::InOrder
        } else if sn_lt(self.exp_cmd_sn, cmd_sn) && sn_le(cmd_sn, self.max_cmd_sn) {
            CmdSnCheck::Ahead
        } else {
            CmdSnCheck::OutOfWindow
        }
    }

    /// Accepts the in-order command: ExpCmdSN advances by one.
    pub fn advance(&mut self) {
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn serial_compare_wraps() {
        assert!(sn_lt(0xffff_fff0, 5));
        assert!(!sn_lt(5, 0xffff_fff0));
        assert!(sn_le(7, 7));
        assert!(!sn_lt(7, 7));
    }

    #[test]
    fn window_classifies_and_closes() {
        let mut w = CmdWindow::new(10, 4);
        assert_eq!(w.check(10), CmdSnCheck::InOrder);
        assert_eq!(w.check(13), CmdSnCheck::Ahead);
        assert_eq!(w.check(14), CmdSnCheck::OutOfWindow);
        assert_eq!(w.check(9), CmdSnCheck::OutOfWindow);
        assert_eq!(w.max_cmd_sn(0), 13);
        for _ in 0..4 {
            w.advance();
        }
        assert_eq!(
            w.max_cmd_sn(4),
            13,
            "four unanswered commands hold the window shut"
        );
        assert_eq!(w.check(14), CmdSnCheck::OutOfWindow);
        assert_eq!(w.max_cmd_sn(1), 16, "answers reopen it");
        assert_eq!(w.max_cmd_sn(4), 16, "and it never shrinks");
    }

    proptest! {
        #[test]
        fn lt_is_antisymmetric(a: u32, d in 1u32..0x7fff_ffff) {
            let b = a.wrapping_add(d);
            prop_assert!(sn_lt(a, b));
            prop_assert!(!sn_lt(b, a));
        }
    }
}
