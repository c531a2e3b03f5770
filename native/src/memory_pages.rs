//! Handing memory pages back to the operating system (`MADV_DONTNEED`). What a page
//! reads as afterwards depends on its mapping: a private file mapping refaults the
//! file's contents, private anonymous memory reads back as zeros.

use std::sync::atomic::{AtomicBool, Ordering};

const PAGE: usize = 4096;

/// Releases the whole pages inside `bytes`; returns how many bytes were released.
///
/// # Safety
/// `bytes` must lie in a private mapping (file or anonymous) that nothing writes
/// meanwhile, so that what its pages read back as is what they held.
pub unsafe fn release(bytes: &[u8]) -> usize {
    let start = (bytes.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (bytes.as_ptr() as usize + bytes.len()) / PAGE * PAGE;
    if end <= start {
        return 0;
    }
    // SAFETY: a whole-page range inside `bytes`; the caller vouches for the mapping.
    match unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } {
        0 => end - start,
        _ => 0,
    }
}

/// Whether a big buffer was freed since the heap was last trimmed.
static TRIM_WANTED: AtomicBool = AtomicBool::new(false);

/// Hands the free memory of this process's heap back to the OS.
pub fn trim_heap() {
    // SAFETY: malloc_trim only hands free heap memory back.
    unsafe { libc::malloc_trim(0) };
}

/// Asks for [`trim_heap_if_asked`] after a big buffer was freed: glibc keeps a freed
/// block of up to 32 MiB (its mapping threshold grows with what was freed), so after
/// one big message the port would hold it for good.
pub fn ask_for_heap_trim() {
    TRIM_WANTED.store(true, Ordering::Relaxed);
}

/// Trims the heap if a big buffer was freed since the last time: in idle moments, so
/// that a result of many big rows does not pay a trim per row.
pub fn trim_heap_if_asked() {
    if TRIM_WANTED.swap(false, Ordering::Relaxed) {
        trim_heap();
    }
}

/// After start-up: returns the heap's free memory to the OS (`malloc_trim`) and drops
/// from this process the pages of its own executable that it touched while starting
/// (Wasmer's loader, the asset code): untouched file pages, which stay in the page
/// cache and fault back in if used again. Writable mappings, and mappings holding a
/// page written since (relocations), are left alone, so other threads may run
/// meanwhile. Returns the size of the mappings dropped.
pub fn release_start_up_leftovers() -> usize {
    trim_heap();
    let (Ok(exe), Ok(smaps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps")) else {
        return 0;
    };
    clean_file_mappings(&smaps, &exe.to_string_lossy())
        .into_iter()
        // SAFETY: clean private read-only file pages of our executable, mapped for the
        // process's life: they read back from the file as they are now (a running
        // executable cannot be written).
        .map(|(start, end)| unsafe { release(std::slice::from_raw_parts(start as *const u8, end - start)) })
        .sum()
}

/// The address ranges of `path`'s mappings in an smaps listing that are private,
/// read-only and hold no anonymous (written) page.
fn clean_file_mappings(smaps: &str, path: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| line.ends_with(path)) {
            // Not a writable one: a page written after smaps was read would be lost.
            let private = fields.next().is_some_and(|perms| perms.ends_with('p') && !perms.contains('w'));
            current = match (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                (Ok(s), Ok(e)) if private => Some((s, e)),
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if fields.next() == Some("0") {
                    out.push(range);
                }
            }
        } else if first.contains('-') && !first.ends_with(':') {
            current = None;
        }
    }
    out
}

/// Releases the runs of whole pages inside `bytes` that hold only zeros; returns how
/// many bytes were released.
///
/// # Safety
/// `bytes` must lie in private anonymous memory that nothing touches meanwhile (a
/// released page reads back as zeros, which is what it held).
pub unsafe fn release_zero_pages(bytes: &[u8]) -> usize {
    let offset = (bytes.as_ptr() as usize).next_multiple_of(PAGE) - bytes.as_ptr() as usize;
    let Some(aligned) = bytes.get(offset..) else { return 0 };
    let mut released = 0;
    let mut run_start = None;
    for (i, page) in aligned.chunks_exact(PAGE).enumerate() {
        let zero = page.iter().fold(0, |acc, b| acc | b) == 0;
        match (zero, run_start) {
            (true, None) => run_start = Some(i),
            // SAFETY: whole zero pages of `bytes`, as the caller vouches.
            (false, Some(first)) => {
                released += unsafe { release(&aligned[first * PAGE..i * PAGE]) };
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = run_start {
        let end = aligned.len() / PAGE * PAGE;
        // SAFETY: as above.
        released += unsafe { release(&aligned[first * PAGE..end]) };
    }
    released
}

/// Releases the zero pages of a region (as [`release_zero_pages`]) a slice at a time,
/// so that the work can fit in the moments the region is not in use.
#[derive(Debug)]
pub struct ZeroPageSweep {
    next: usize,
    end: usize,
    released: usize,
}

// SAFETY: only addresses; `new`'s caller vouches for when `step` may touch them.
unsafe impl Send for ZeroPageSweep {}

impl ZeroPageSweep {
    /// # Safety
    /// `bytes` must lie in private anonymous memory that stays mapped as long as the
    /// sweep may step, and that nothing touches while `step` runs.
    pub unsafe fn new(bytes: &[u8]) -> Self {
        let next = (bytes.as_ptr() as usize).next_multiple_of(PAGE);
        let end = (bytes.as_ptr() as usize + bytes.len()) / PAGE * PAGE;
        Self { next, end: end.max(next), released: 0 }
    }

    /// Releases the zero pages among the next `len` bytes (rounded up to pages); true
    /// while some of the region is left.
    pub fn step(&mut self, len: usize) -> bool {
        let stop = self.end.min(self.next.saturating_add(len.next_multiple_of(PAGE).max(PAGE)));
        // SAFETY: whole pages inside the region `new` was given, under its contract.
        let slice = unsafe { std::slice::from_raw_parts(self.next as *const u8, stop - self.next) };
        // SAFETY: as above.
        self.released += unsafe { release_zero_pages(slice) };
        self.next = stop;
        self.next < self.end
    }

    /// The bytes released so far.
    pub fn released(&self) -> usize {
        self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_private_read_only_mappings_of_the_file_are_picked() {
        let smaps = "\
1000-3000 r--p 00000000 fe:01 42 /opt/bin/pglite-port
Rss:                   8 kB
Anonymous:             0 kB
3000-4000 r--p 00002000 fe:01 42 /opt/bin/pglite-port
Anonymous:             4 kB
4000-5000 rw-s 00000000 fe:01 42 /opt/bin/pglite-port
Anonymous:             0 kB
5000-6000 rw-p 00000000 00:00 0
Anonymous:             0 kB
6000-8000 r-xp 00003000 fe:01 42 /opt/bin/pglite-port
Anonymous:             0 kB
8000-9000 rw-p 00005000 fe:01 42 /opt/bin/pglite-port
Anonymous:             0 kB
";
        assert_eq!(clean_file_mappings(smaps, "/opt/bin/pglite-port"), vec![(0x1000, 0x3000), (0x6000, 0x8000)]);
    }

    #[test]
    fn zero_pages_are_released_and_read_back_as_zeros_the_rest_is_kept() {
        // A private anonymous mapping of 8 pages: pages 2 and 5 hold data.
        let mut map = memmap2::MmapMut::map_anon(8 * PAGE).unwrap();
        map[2 * PAGE + 7] = 1;
        map[5 * PAGE] = 2;
        let released = unsafe { release_zero_pages(&map) };
        assert_eq!(released, 6 * PAGE);
        assert_eq!(map[2 * PAGE + 7], 1);
        assert_eq!(map[5 * PAGE], 2);
        assert_eq!(map.iter().map(|&b| b as usize).sum::<usize>(), 3);
    }

    #[test]
    fn a_sweep_in_steps_releases_what_one_pass_would() {
        let mut map = memmap2::MmapMut::map_anon(10 * PAGE).unwrap();
        map[3 * PAGE] = 1;
        map[4 * PAGE - 1] = 2;
        map[9 * PAGE + 5] = 3;
        let mut sweep = unsafe { ZeroPageSweep::new(&map) };
        let mut steps = 1;
        while sweep.step(3 * PAGE) {
            steps += 1;
        }
        assert_eq!(steps, 4, "10 pages in steps of 3");
        assert!(!sweep.step(3 * PAGE), "a finished sweep stays finished");
        assert_eq!(sweep.released(), 8 * PAGE);
        assert_eq!((map[3 * PAGE], map[4 * PAGE - 1], map[9 * PAGE + 5]), (1, 2, 3));
        assert_eq!(map.iter().map(|&b| b as usize).sum::<usize>(), 6);
    }
}
