//! Operation sequences against an in-memory model (the same checker as the
//! cargo-fuzz target `ops`, run here as a property test on stable).

#[path = "support/ops.rs"]
mod ops;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn op_sequences_match_the_model(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        ops::check(&ops::decode(&bytes));
    }
}

/// A few fixed sequences that once mattered or cover edge cases.
#[test]
fn fixed_sequences() {
    use ops::Op::*;
    ops::check(&[
        Write {
            off: 4090,
            len: 20,
            seed: 1,
        },
        FailNextWrite { enospc: true },
        Sync,
        SetLen { len: 4093 },
        Page { index: 0 },
        PageMut {
            index: 3,
            at: 100,
            len: 5,
            byte: 9,
        },
        Sync,
        SetLen { len: 0 },
        Read { off: 0, len: 10 },
        Sync,
    ]);
}
