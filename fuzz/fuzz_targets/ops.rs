//! Operation sequences through a small cache over a fault-injecting backend,
//! checked against an in-memory model (the checker lives with the tests, in
//! `crates/pagecache/tests/support/ops.rs`, and also runs there as a proptest).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run ops -- -max_total_time=60`
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/pagecache/tests/support/ops.rs"]
mod ops;

/// The fuzzer's input: an operation sequence decoded from its bytes.
#[derive(Debug)]
struct Input(Vec<ops::Op>);

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let bytes = u.bytes(u.len().min(4096))?;
        Ok(Input(ops::decode(bytes)))
    }
}

fuzz_target!(|input: Input| {
    ops::check(&input.0);
});
