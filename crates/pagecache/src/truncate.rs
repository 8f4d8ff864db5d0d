//! Changing a file's length: dropping cached pages past a new end of file.
//!
//! Lock order (docs/design.md): a mapping's `resize` lock before any frame
//! lock. A thread holding a page guard holds a frame lock without `resize`,
//! so `set_len` never waits for a frame lock while it holds `resize`
//! exclusively: it takes the partial last page's lock without waiting, and
//! if that fails, lets go of `resize`, waits for the page, and starts over.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::filemap::{lock_for_write, MAX_FILE_SIZE};
use crate::frame::{FrameId, DIRTY, ORPHAN, WRITEBACK};
use crate::guard::held;
use crate::mapping::Mapping;
use crate::state::Inner;
use crate::writeback::commit;

pub(crate) fn set_len(inner: &Inner, m: &Mapping, new: u64) -> Result<()> {
    if new > MAX_FILE_SIZE {
        return Err(Error::InvalidArgument(format!(
            "length {new} is past the largest file size {MAX_FILE_SIZE}"
        )));
    }
    if held::any_on(m.id) {
        return Err(Error::WouldDeadlock("set_len"));
    }
    let arena = &inner.arena;
    let ps = inner.page_size() as u64;
    loop {
        // Exclusive: no write and no writeback of this file runs meanwhile.
        let resize = m.resize.write();
        inner.check_open()?;
        let old = m.size();
        // The page the new end falls inside keeps its head and loses its
        // tail: it must be write-locked (with no writeback reading it)
        // before anything changes.
        let partial = if new < old && new % ps != 0 {
            m.find_pin(arena, new / ps)
        } else {
            None
        };
        let tail_lock = match partial {
            None => None,
            Some(id) => {
                let f = arena.frame(id);
                match arena.try_write_frame(id) {
                    Some(g) if f.flags() & WRITEBACK == 0 => Some((id, g)),
                    busy => {
                        drop(busy);
                        drop(resize);
                        // A guard holder may need `resize` to let go of the
                        // page: wait for the page without holding it.
                        drop(lock_for_write(inner, id));
                        arena.unpin(id);
                        continue;
                    }
                }
            }
        };
        let result = m
            .backend
            .set_len(new)
            .map_err(|e| Error::io("setting the length", m.path.clone(), e));
        if let Err(e) = result {
            if let Some((id, g)) = tail_lock {
                drop(g);
                arena.unpin(id);
            }
            return Err(e);
        }
        m.size.store(new, Ordering::Release);
        if new < old {
            drop_pages_from(inner, m, new.div_ceil(ps));
        }
        if let Some((id, g)) = tail_lock {
            // SAFETY: write lock held with WRITEBACK clear.
            let page = unsafe { arena.page_mut(id) };
            page[(new % ps) as usize..].fill(0);
            drop(g);
            arena.unpin(id);
        }
        drop(resize);
        break;
    }
    if m.nr_pages() == 0 && m.handles.load(Ordering::Acquire) == 0 {
        inner.maybe_forget(m);
    }
    Ok(())
}

/// Takes pages `keep..` out of the mapping: they become orphans, their dirty
/// and unstable state is dropped (the file no longer has those bytes), and
/// each is freed once nobody holds it.
fn drop_pages_from(inner: &Inner, m: &Mapping, keep: u64) {
    let arena = &inner.arena;
    let gone: Vec<(u64, FrameId)> = m.pages.remove_from(keep);
    for &(index, id) in &gone {
        let f = arena.frame(id);
        f.set(ORPHAN);
        if f.clear(DIRTY) {
            inner.nr_dirty.fetch_sub(1, Ordering::Relaxed);
        }
        m.note_clean(index);
    }
    commit::forget(inner, m, &gone);
    for &(_, id) in &gone {
        arena.try_free_orphan(id);
    }
}
