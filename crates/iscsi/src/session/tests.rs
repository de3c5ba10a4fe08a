//! The sequencers driven by a simulated initiator in memory: what each side sends is
//! checked by the other, as over a wire.

use proptest::prelude::*;

use super::data_in::{plan, Answer};
use super::order::{CmdQueue, Offer};
use super::write::{DataOutHeader, TttAllocator, WriteSeq};
use crate::pdu::{Residual, NO_TAG};
use crate::seq::CmdWindow;

/// An initiator writing `transfer` bytes: immediate data, unsolicited Data-Out up
/// to `first_burst` (when InitialR2T=No), then whatever the target's R2Ts ask for,
/// in PDUs of at most `mrdsl` bytes. Returns the bytes the target accepted, by
/// offset, and how many R2Ts it sent.
fn exchange(
    transfer: usize,
    immediate: usize,
    initial_r2t: bool,
    first_burst: usize,
    max_burst: usize,
    max_outstanding: usize,
    mrdsl: usize,
) -> (Vec<u32>, usize) {
    let immediate = immediate.min(first_burst).min(transfer);
    let unsolicited_limit = first_burst.min(transfer);
    let unsolicited_open = !initial_r2t && immediate < unsolicited_limit;
    let mut seq = WriteSeq::new(transfer, immediate, unsolicited_open, unsolicited_limit);
    let mut ttts = TttAllocator::default();
    let mut seen = vec![0u32; transfer];
    seen[..immediate].iter_mut().for_each(|b| *b += 1);
    // Unsolicited Data-Out, the last with F.
    if unsolicited_open {
        let (mut off, mut sn) = (immediate, 0);
        while off < unsolicited_limit {
            let len = mrdsl.min(unsolicited_limit - off);
            let h = DataOutHeader {
                ttt: NO_TAG,
                data_sn: sn,
                offset: off,
                len,
                final_: off + len == unsolicited_limit,
            };
            seq.check(&h).expect("unsolicited PDU in sequence");
            seq.accept(&h);
            seen[off..off + len].iter_mut().for_each(|b| *b += 1);
            off += len;
            sn += 1;
        }
    }
    let mut r2ts = 0;
    let mut pending = seq.next_r2ts(max_burst, max_outstanding, &mut ttts);
    while let Some(r) = pending.first().copied() {
        pending.remove(0);
        r2ts += 1;
        assert!(r.len as usize <= max_burst);
        let (mut off, end, mut sn) = (r.offset as usize, (r.offset + r.len) as usize, 0);
        while off < end {
            let len = mrdsl.min(end - off);
            let h = DataOutHeader {
                ttt: r.ttt,
                data_sn: sn,
                offset: off,
                len,
                final_: off + len == end,
            };
            seq.check(&h).expect("solicited PDU in sequence");
            seq.accept(&h);
            seen[off..off + len].iter_mut().for_each(|b| *b += 1);
            off += len;
            sn += 1;
        }
        pending.extend(seq.next_r2ts(max_burst, max_outstanding, &mut ttts));
    }
    assert!(seq.complete());
    (seen, r2ts)
}

#[test]
fn r2ts_cover_the_rest_after_immediate_and_unsolicited_data() {
    // 1 MiB with 8 KiB immediate, FirstBurstLength 64 KiB, MaxBurstLength 256 KiB.
    let (seen, r2ts) = exchange(1 << 20, 8192, false, 65536, 262144, 1, 8192);
    assert!(seen.iter().all(|&n| n == 1), "every byte exactly once");
    assert_eq!(r2ts, 4, "960 KiB in bursts of at most 256 KiB");
}

#[test]
fn out_of_sequence_data_out_is_refused() {
    let mut seq = WriteSeq::new(16384, 0, false, 0);
    let r = seq.next_r2ts(8192, 2, &mut TttAllocator::default());
    assert_eq!(r.len(), 2);
    let good = DataOutHeader {
        ttt: r[0].ttt,
        data_sn: 0,
        offset: 0,
        len: 4096,
        final_: false,
    };
    assert!(seq.check(&good).is_ok());
    for bad in [
        DataOutHeader { data_sn: 1, ..good },
        DataOutHeader {
            offset: 4096,
            ..good
        },
        DataOutHeader {
            ttt: 0x7777,
            ..good
        },
        DataOutHeader {
            ttt: NO_TAG,
            ..good
        },
        // F before the R2T's range is filled.
        DataOutHeader {
            final_: true,
            ..good
        },
        // Past the R2T's end.
        DataOutHeader { len: 8193, ..good },
    ] {
        assert!(seq.check(&bad).is_err(), "{bad:?}");
    }
    assert!(!seq.complete());
}

#[test]
fn in_order_delivery_with_gaps_and_immediates() {
    let mut w = CmdWindow::new(10, 8);
    let mut q = CmdQueue::default();
    let mut admitted = 0;
    assert_eq!(
        q.offer(&mut w, 12, false, "c", || admitted += 1),
        Offer::Queued
    );
    assert_eq!(
        q.offer(&mut w, 11, false, "b", || admitted += 1),
        Offer::Queued
    );
    // Immediate: delivered at once, uncounted, ExpCmdSN unchanged.
    assert_eq!(
        q.offer(&mut w, 10, true, "nop", || admitted += 1),
        Offer::Deliver("nop", false)
    );
    assert_eq!(w.exp_cmd_sn(), 10);
    assert_eq!(
        q.offer(&mut w, 10, false, "a", || admitted += 1),
        Offer::Deliver("a", true)
    );
    let mut rest = Vec::new();
    while let Some(x) = q.next_ready(&mut w, || admitted += 1) {
        rest.push(x);
    }
    assert_eq!(rest, vec!["b", "c"]);
    assert_eq!((w.exp_cmd_sn(), admitted), (13, 3));
    // Already seen, and beyond MaxCmdSN: dropped.
    assert_eq!(
        q.offer(&mut w, 11, false, "old", || {}),
        Offer::Dropped("old")
    );
    assert_eq!(
        q.offer(&mut w, 10 + 8 + 5, false, "far", || {}),
        Offer::Dropped("far")
    );
    assert!(q.is_empty());
}

#[test]
fn abort_takes_a_command_still_waiting_for_its_turn() {
    let mut w = CmdWindow::new(0, 8);
    let mut q = CmdQueue::default();
    assert_eq!(q.offer(&mut w, 2, false, 0xaa_u32, || {}), Offer::Queued);
    assert_eq!(q.take_where(|itt| *itt == 0xaa), Some(0xaa));
    assert_eq!(q.take_where(|itt| *itt == 0xaa), None);
}

#[test]
fn read_data_splits_at_segments_and_bursts_with_status_in_the_last() {
    let p = plan(
        Answer {
            edtl: 20000,
            read: true,
            needed_out: 0,
            data_in: 20000,
            good: true,
        },
        8192,
        16384,
    );
    let lens: Vec<_> = p.data_in().map(|d| (d.offset, d.len, d.final_)).collect();
    assert_eq!(
        lens,
        vec![(0, 8192, false), (8192, 8192, true), (16384, 3616, true)]
    );
    assert!({
        let v: Vec<_> = p.data_in().collect();
        v[2].with_status && !v[1].with_status
    });
    assert_eq!((p.response, p.residual), (None, Residual::None));
}

#[test]
fn residuals_and_the_response_pdu() {
    // A short read (EDTL 4096 for 8192 bytes): overflow, status piggybacked.
    let p = plan(
        Answer {
            edtl: 4096,
            read: true,
            needed_out: 0,
            data_in: 8192,
            good: true,
        },
        65536,
        65536,
    );
    assert_eq!(p.residual, Residual::Overflow(4096));
    assert_eq!(p.data_in().map(|d| d.len).sum::<usize>(), 4096);
    // A write the CDB wanted 8192 bytes for, EDTL 16384: underflow, SCSI Response.
    let p = plan(
        Answer {
            edtl: 16384,
            read: false,
            needed_out: 8192,
            data_in: 0,
            good: true,
        },
        65536,
        65536,
    );
    assert_eq!(
        (p.residual, p.response),
        (Residual::Underflow(8192), Some(0))
    );
    // CHECK CONDITION after data: a SCSI Response with ExpDataSN after the Data-In.
    let p = plan(
        Answer {
            edtl: 8192,
            read: true,
            needed_out: 0,
            data_in: 8192,
            good: false,
        },
        4096,
        65536,
    );
    assert_eq!(p.data_in().count(), 2);
    assert!(p.data_in().all(|d| !d.with_status));
    assert_eq!(p.response, Some(2));
}

proptest! {
    #[test]
    fn every_write_exchange_moves_each_byte_exactly_once(
        transfer in 1usize..300_000,
        immediate in 0usize..70_000,
        initial_r2t in any::<bool>(),
        first_burst in 512usize..100_000,
        max_burst in 512usize..100_000,
        max_outstanding in 1usize..4,
        mrdsl in 512usize..70_000,
    ) {
        let (seen, _) = exchange(transfer, immediate, initial_r2t, first_burst, max_burst, max_outstanding, mrdsl);
        prop_assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn any_arrival_order_inside_the_window_delivers_in_cmdsn_order(
        start in any::<u32>(),
        order in Just((0u32..16).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut w = CmdWindow::new(start, 16);
        let mut q = CmdQueue::default();
        let mut delivered = Vec::new();
        for k in order {
            if let Offer::Deliver(k, _) = q.offer(&mut w, start.wrapping_add(k), false, k, || {}) {
                delivered.push(k);
                while let Some(next) = q.next_ready(&mut w, || {}) {
                    delivered.push(next);
                }
            }
        }
        prop_assert_eq!(delivered, (0u32..16).collect::<Vec<_>>());
    }

    #[test]
    fn data_in_covers_exactly_what_is_sent(
        edtl in 0u32..200_000, data in 0usize..200_000, seg in 512usize..70_000, burst in 512usize..300_000, good in any::<bool>(),
    ) {
        let p = plan(Answer { edtl, read: true, needed_out: 0, data_in: data, good }, seg, burst);
        let mut at = 0;
        for (i, d) in p.data_in().enumerate() {
            prop_assert_eq!(d.offset, at);
            prop_assert_eq!(d.data_sn as usize, i);
            prop_assert!(d.len <= seg && d.len > 0);
            at += d.len;
        }
        prop_assert_eq!(at, data.min(edtl as usize));
        prop_assert_eq!(p.response.is_some(), at == 0 || !good);
        prop_assert_eq!(p.data_in().filter(|d| d.with_status).count(), usize::from(at > 0 && good));
    }
}
