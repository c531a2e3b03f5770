//! Handing memory pages back to the operating system (`MADV_DONTNEED`). What a page
//! reads as afterwards depends on its mapping: a private file mapping refaults the
//! file's contents, private anonymous memory reads back as zeros.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
