//! The 8-byte `mbarrier` object in shared memory and its transitions. A phase completes when
//! its pending arrivals reach zero and its transaction count (bytes expected by `expect_tx`
//! minus bytes reported by `complete_tx`) is zero; the object then flips its phase bit and
//! expects the full arrival count again.
//!
//! Layout: pending arrivals in bits 0..20, expected arrivals per phase in bits 20..40, the
//! signed transaction count in bits 40..62 and the phase in bit 63 (PTX limits both counts to
//! 2^20 - 1, so each fits its field). An arrival's state value is the object before it.

use super::program::MbarOp;

const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const EXPECTED_SHIFT: u32 = 20;
const TX_SHIFT: u32 = 40;
const TX_BITS: u32 = 22;
const PHASE: u64 = 1 << 63;

/// The decoded fields of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mbarrier {
    pub phase: bool,
    pub expected: u64,
    pub pending: u64,
    pub tx: i64,
}

impl Mbarrier {
    pub fn decode(v: u64) -> Self {
        let tx_field = (v >> TX_SHIFT) & ((1 << TX_BITS) - 1);
        // Sign-extend the 22-bit field.
        let tx = ((tx_field << (64 - TX_BITS)) as i64) >> (64 - TX_BITS);
        Mbarrier { phase: v & PHASE != 0, expected: (v >> EXPECTED_SHIFT) & COUNT_MASK, pending: v & COUNT_MASK, tx }
    }

    pub fn encode(&self) -> u64 {
        let tx_field = (self.tx as u64) & ((1 << TX_BITS) - 1);
        (if self.phase { PHASE } else { 0 })
            | (tx_field << TX_SHIFT)
            | ((self.expected & COUNT_MASK) << EXPECTED_SHIFT)
            | (self.pending & COUNT_MASK)
    }

    /// Completes the phase if nothing is pending any more.
    fn settle(mut self) -> Self {
        if self.pending == 0 && self.tx == 0 {
            self.phase = !self.phase;
            self.pending = self.expected;
        }
        self
    }

    /// `arrivals` arrive (and leave future phases too when `drop`).
    pub fn arrive(mut self, arrivals: u64, drop: bool) -> Self {
        if drop {
            self.expected = self.expected.saturating_sub(arrivals);
        }
        self.pending = self.pending.saturating_sub(arrivals);
        self.settle()
    }

    /// `bytes` more (or, negative, fewer) transaction bytes are expected.
    pub fn expect_tx(mut self, bytes: i64) -> Self {
        self.tx += bytes;
        self.settle_if_arrived()
    }

    /// A change of the transaction count completes the phase only after its arrivals.
    fn settle_if_arrived(self) -> Self {
        if self.pending == 0 {
            self.settle()
        } else {
            self
        }
    }
}

/// The arrivals pending in a state value (`mbarrier.pending_count`).
pub fn pending_count(state: u64) -> u64 {
    state & COUNT_MASK
}

/// One operation on the object's value `old` with operand `b` (count, byte count, state or
/// parity): the new value and the destination's.
pub fn apply(kind: MbarOp, old: u64, b: u64) -> (u64, u64) {
    let m = Mbarrier::decode(old);
    match kind {
        MbarOp::Init => {
            let count = b & COUNT_MASK;
            (Mbarrier { phase: false, expected: count, pending: count, tx: 0 }.encode(), 0)
        }
        MbarOp::Arrive { drop, expect_tx: false } => (m.arrive(b & COUNT_MASK, drop).encode(), old),
        MbarOp::Arrive { drop, expect_tx: true } => {
            let m = Mbarrier { tx: m.tx + tx_bytes(b), ..m };
            (m.arrive(1, drop).encode(), old)
        }
        MbarOp::ExpectTx => (m.expect_tx(tx_bytes(b)).encode(), 0),
        MbarOp::CompleteTx => (m.expect_tx(-tx_bytes(b)).encode(), 0),
        // The phase a state (or parity) names is complete once the object moved past it.
        MbarOp::TestWait { parity: false } => (old, ((b & PHASE != 0) != m.phase) as u64),
        MbarOp::TestWait { parity: true } => (old, ((b & 1 != 0) != m.phase) as u64),
        MbarOp::Inval => (0, 0),
    }
}

/// A 32-bit transaction byte count operand.
fn tx_bytes(b: u64) -> i64 {
    (b as u32) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ops: &[(MbarOp, u64)]) -> Mbarrier {
        let mut v = 0;
        for &(kind, b) in ops {
            v = apply(kind, v, b).0;
        }
        Mbarrier::decode(v)
    }

    const ARRIVE: MbarOp = MbarOp::Arrive { drop: false, expect_tx: false };

    #[test]
    fn a_phase_completes_with_its_last_arrival() {
        let m = run(&[(MbarOp::Init, 3), (ARRIVE, 1), (ARRIVE, 1)]);
        assert_eq!(m, Mbarrier { phase: false, expected: 3, pending: 1, tx: 0 });
        let m = run(&[(MbarOp::Init, 3), (ARRIVE, 2), (ARRIVE, 1)]);
        assert_eq!(m, Mbarrier { phase: true, expected: 3, pending: 3, tx: 0 });
        let m = run(&[(MbarOp::Init, 2), (MbarOp::Arrive { drop: true, expect_tx: false }, 1), (ARRIVE, 1)]);
        assert_eq!(m, Mbarrier { phase: true, expected: 1, pending: 1, tx: 0 });
    }

    #[test]
    fn transaction_bytes_hold_the_phase_until_they_complete() {
        let expect = MbarOp::Arrive { drop: false, expect_tx: true };
        let m = run(&[(MbarOp::Init, 2), (expect, 256), (ARRIVE, 1)]);
        assert_eq!(m, Mbarrier { phase: false, expected: 2, pending: 0, tx: 256 });
        let m = run(&[(MbarOp::Init, 2), (expect, 256), (ARRIVE, 1), (MbarOp::CompleteTx, 200)]);
        assert_eq!(m.tx, 56);
        assert!(!m.phase);
        let m = run(&[(MbarOp::Init, 2), (expect, 256), (ARRIVE, 1), (MbarOp::CompleteTx, 256)]);
        assert_eq!(m, Mbarrier { phase: true, expected: 2, pending: 2, tx: 0 });
        // Bytes may complete before they are expected: the count goes negative meanwhile.
        let m = run(&[(MbarOp::Init, 1), (MbarOp::CompleteTx, 64), (MbarOp::ExpectTx, 64)]);
        assert_eq!(m, Mbarrier { phase: false, expected: 1, pending: 1, tx: 0 });
        let m = run(&[(MbarOp::Init, 1), (MbarOp::CompleteTx, 64)]);
        assert_eq!(m.tx, -64);
        assert_eq!(Mbarrier::decode(m.encode()), m);
    }

    #[test]
    fn waits_see_the_phase_move_past_a_state_or_parity() {
        let init = apply(MbarOp::Init, 0, 1).0;
        let (after, state) = apply(ARRIVE, init, 1);
        assert_eq!(apply(MbarOp::TestWait { parity: false }, init, state).1, 0);
        assert_eq!(apply(MbarOp::TestWait { parity: false }, after, state).1, 1);
        assert_eq!(apply(MbarOp::TestWait { parity: true }, after, 0).1, 1);
        assert_eq!(apply(MbarOp::TestWait { parity: true }, after, 1).1, 0);
        assert_eq!(pending_count(state), 1);
    }
}
