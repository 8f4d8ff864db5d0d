//! Changing a file's length: dropping cached pages past a new end of file.

use std::sync::atomic::Ordering;

use crate::cache::Inner;
use crate::error::{Error, Result};
use crate::filemap::{lock_for_write, MAX_FILE_SIZE};
use crate::frame::{DIRTY, ORPHAN};
use crate::guard::held;
use crate::mapping::Mapping;

pub(crate) fn set_len(inner: &Inner, m: &Mapping, new: u64) -> Result<()> {
    if new > MAX_FILE_SIZE {
        return Err(Error::InvalidArgument(format!(
            "length {new} is past the largest file size {MAX_FILE_SIZE}"
        )));
    }
    if held::any_on(m.id) {
        return Err(Error::WouldDeadlock("set_len"));
    }
    // Exclusive: no write and no writeback of this file runs meanwhile.
    let _resize = m.resize.write();
    let old = m.size();
    m.backend
        .set_len(new)
        .map_err(|e| Error::io("setting the length", m.path.clone(), e))?;
    m.size.store(new, Ordering::Release);
    if new >= old {
        // Cached bytes past the old end are zero already (read-in and
        // truncation both zero them), so the extension reads as zeros.
        return Ok(());
    }
    let ps = inner.page_size() as u64;
    let keep = new.div_ceil(ps);
    let gone = m.pages.remove_from(keep);
    let arena = &inner.arena;
    for (index, id) in gone {
        let f = arena.frame(id);
        f.set(ORPHAN);
        if f.clear(DIRTY) {
            inner.nr_dirty.fetch_sub(1, Ordering::Relaxed);
        }
        m.note_clean(index);
        arena.try_free_orphan(id);
    }
    if new % ps != 0 {
        if let Some(id) = m.find_pin(arena, new / ps) {
            let guard = lock_for_write(inner, id);
            // SAFETY: write lock held with WRITEBACK clear.
            let page = unsafe { arena.page_mut(id) };
            page[(new % ps) as usize..].fill(0);
            drop(guard);
            arena.unpin(id);
        }
    }
    if m.nr_pages() == 0 && m.handles.load(Ordering::Acquire) == 0 {
        inner.maybe_forget(m);
    }
    Ok(())
}
