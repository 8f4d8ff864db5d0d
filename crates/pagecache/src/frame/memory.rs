//! The arena's bytes: one private anonymous mapping.
//!
//! Mapped rather than allocated so that untouched frames cost nothing (an
//! allocator zeroing 4 GiB faults every page in before the first read), and
//! so that transparent huge pages can be asked for or refused over exactly
//! this range. The start is aligned to a huge page, so every whole 2 MiB of
//! the arena can be backed by one.

use std::ptr::NonNull;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base).
const HUGE_PAGE: usize = 2 << 20;

pub(super) struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    /// `len` bytes of zeros, backed by transparent huge pages where the
    /// kernel has them if `huge`, never by them otherwise. `None` if the
    /// address space cannot be had.
    pub(super) fn new(len: usize, huge: bool) -> Option<Region> {
        let len = len.checked_next_multiple_of(4096)?;
        let map_len = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new mapping at an address the kernel picks; nothing
        // refers to that range yet.
        let raw = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .ok()?;
        let addr = raw as usize;
        let start = addr.next_multiple_of(HUGE_PAGE);
        let head = start - addr;
        let tail = map_len - head - len;
        // SAFETY: the head and tail are whole pages of the mapping just made
        // (`addr` and `len` are page multiples, so is `start`), outside the
        // range kept, and nothing refers to them.
        unsafe {
            if head > 0 {
                let _ = mm::munmap(raw, head);
            }
            if tail > 0 {
                let _ = mm::munmap((start + len) as *mut _, tail);
            }
        }
        let advice = if huge {
            Advice::LinuxHugepage
        } else {
            // Also under THP "always": the knob off means 4 KiB pages.
            Advice::LinuxNoHugepage
        };
        // SAFETY: the range is this mapping's own; the advice changes how
        // it is backed, never its contents. A kernel without THP refuses
        // the advice (EINVAL), which leaves 4 KiB pages: what `false` asks
        // and the only thing `true` can get there.
        let _ = unsafe { mm::madvise(start as *mut _, len, advice) };
        Some(Region {
            base: NonNull::new(start as *mut u8)?,
            len,
        })
    }

    #[inline]
    pub(super) fn base(&self) -> NonNull<u8> {
        self.base
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the range mapped in `new`, unmapped once; the arena that
        // owns this region is being dropped, so nothing refers to its bytes.
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this kernel backs a mapping advised `MADV_HUGEPAGE` with
    /// transparent huge pages (`enabled` is `always` or `madvise`), and why
    /// not if it does not.
    fn thp_available() -> Result<(), String> {
        const PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
        match std::fs::read_to_string(PATH) {
            Ok(s) if s.contains("[never]") => Err(format!("{PATH} is [never]")),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{PATH}: {e}")),
        }
    }

    /// `AnonHugePages` in kB of the mapping that holds `addr`, from
    /// `/proc/self/smaps`.
    fn anon_huge_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("AnonHugePages:") {
                    return v.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    fn touched(huge: bool) -> (Region, u64) {
        let len = 16 * HUGE_PAGE;
        let r = Region::new(len, huge).unwrap();
        assert_eq!(r.base().as_ptr() as usize % HUGE_PAGE, 0);
        // SAFETY: the region is `len` bytes, owned by this test alone.
        let bytes = unsafe { std::slice::from_raw_parts_mut(r.base().as_ptr(), len) };
        assert!(bytes.iter().step_by(4096).all(|&b| b == 0));
        for page in bytes.chunks_mut(4096) {
            page[0] = 1;
        }
        let kb = anon_huge_kb(r.base().as_ptr() as usize);
        (r, kb)
    }

    #[test]
    fn huge_pages_back_the_arena_only_when_asked() {
        let (_off, kb) = touched(false);
        assert_eq!(kb, 0, "huge pages backed an arena that refused them");
        if let Err(why) = thp_available() {
            eprintln!("SKIPPED the huge-page half: transparent huge pages are off ({why})");
            return;
        }
        let (_on, kb) = touched(true);
        // The kernel may fail to find free 2 MiB blocks for a few; it has
        // found none only if the advice did nothing.
        assert!(kb > 0, "no huge pages in an arena advised MADV_HUGEPAGE");
    }
}
