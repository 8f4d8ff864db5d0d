//! Waiting instead of failing (reclaim throttle) and pacing dirtiers (dirty
//! throttle).

pub(crate) mod dirty;
pub(crate) mod reclaim;
