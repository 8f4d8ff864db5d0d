//! Model checks of the frame state machine (DESIGN §4 invariant 8), run
//! under loom: `RUSTFLAGS="--cfg loom" cargo test -p pagecache --lib --release frame::tests`.

mod loom_state;
