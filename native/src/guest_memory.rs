//! The guest's linear memory, with what PostgreSQL's start-up grows faulted in on
//! another core while the guest writes it.
//!
//! Why: PostgreSQL zeroes its whole shared memory at start (44 MB at 32 MB of
//! shared_buffers), so every 4 KB page of it takes a page fault, one at a time, on the
//! backend's thread; on this project's VM that was ~35 ms of a ~105 ms warm start, with
//! the second core idle. For a large grow while `_start` runs, a helper thread asks the
//! kernel to populate the new range (`MADV_POPULATE_WRITE`) from its far end backwards,
//! chunk by chunk, and stops where it meets pages the guest has faulted itself. Other
//! grows (the dynamic linker's, a query's) fault lazily as usual, since they may never
//! all be touched. Populating changes no byte of the memory, only when its pages are
//! mapped, so the two threads need no other agreement.
//!
//! It also keeps where each live memory's current length is ([`current_length`]).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmer::sys::vm::{
    ExpectedValue, LinearMemory, MemoryError, MemoryStyle, TableStyle, ThreadConditions, VMMemory, VMMemoryDefinition, VMSharedMemory, VMTable,
    VMTableDefinition, WaiterError,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

/// Whether grows are populated now: only inside `populating`.
static POPULATE: AtomicBool = AtomicBool::new(false);
/// The helpers started inside `populating`, joined when it ends.
static HELPERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Grows smaller than this fault lazily: not worth a thread.
const MIN_GROW: usize = 4 << 20;
/// What a helper populates per call: small enough to notice the guest's progress soon.
const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

/// Runs `work` (PostgreSQL's start) with its large memory grows populated by helpers;
/// returns once they are done too (they have long finished by then: populating 44 MB
/// takes ~20 ms here, `_start` ~40 ms).
pub fn populating<T>(work: impl FnOnce() -> T) -> T {
    POPULATE.store(true, Ordering::Relaxed);
    let result = work();
    POPULATE.store(false, Ordering::Relaxed);
    let helpers = std::mem::take(&mut *HELPERS.lock().unwrap_or_else(|e| e.into_inner()));
    for helper in helpers {
        let _ = helper.join();
    }
    result
}

/// Populates the pages of `[start, top)` from the top, a chunk at a time, until a chunk
/// whose first page is resident already: the guest, writing upwards, got there (the
/// range's last page may be resident from the start: the guest's allocator writes its
/// next header there). A kernel without MADV_POPULATE_WRITE (before Linux 5.14) says
/// EINVAL at once and the pages fault one by one as before. Returns the bytes populated.
fn populate_backwards(start: usize, top: usize) -> usize {
    let mut end = top;
    while end > start {
        let from = end.saturating_sub(CHUNK).max(start);
        let mut resident = 0u8;
        // SAFETY: one page of the range, which stays mapped while `populating` runs
        // (a static-style memory never moves); mincore only reads the page tables.
        let checked = unsafe { libc::mincore(from as *mut libc::c_void, PAGE, &mut resident) };
        if checked != 0 || resident & 1 == 1 {
            break;
        }
        // SAFETY: as above; populating maps pages, it does not change what they hold.
        if unsafe { libc::madvise(from as *mut libc::c_void, end - from, libc::MADV_POPULATE_WRITE) } != 0 {
            break;
        }
        end = from;
    }
    top - end
}

/// Wasmer's own tunables, but large grows inside `populating` are populated by helpers.
pub struct PopulatingTunables(BaseTunables);

impl PopulatingTunables {
    pub fn new() -> Self {
        Self(BaseTunables::new())
    }
}

impl Default for PopulatingTunables {
    fn default() -> Self {
        Self::new()
    }
}

impl Tunables for PopulatingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        // The compiled code depends on it: exactly Wasmer's.
        self.0.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.0.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.0.create_host_memory(ty, style).map(Populating::wrap)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: the caller's promise about the location is passed on unchanged.
        unsafe { self.0.create_vm_memory(ty, style, vm_definition_location) }.map(Populating::wrap)
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.0.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: as above.
        unsafe { self.0.create_vm_table(ty, style, vm_definition_location) }
    }
}

/// The live memories these tunables made, as (base, definition) addresses: work that
/// runs while the store is in use (the backend's idle work) learns a memory's current
/// length from its definition.
static LIVE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The current length of the live memory whose bytes start at `base`; None once it is gone.
pub fn current_length(base: *const u8) -> Option<usize> {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let &(_, definition) = live.iter().find(|(b, _)| *b == base as usize)?;
    // SAFETY: the definition of a memory still alive (it leaves LIVE when dropped),
    // kept up to date by the memory itself.
    Some(unsafe { (*(definition as *const VMMemoryDefinition)).current_length })
}

/// A memory that, inside `populating`, hands each large grow to a helper that populates it.
#[derive(Debug)]
struct Populating(VMMemory);

impl Populating {
    // What the memory starts with is left to fault: instantiation writes only part of it.
    fn wrap(memory: VMMemory) -> VMMemory {
        let definition = memory.vmmemory();
        // SAFETY: the definition of the memory just made.
        let base = unsafe { definition.as_ref().base } as usize;
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((base, definition.as_ptr() as usize));
        VMMemory(Box::new(Populating(memory)))
    }

    fn current_len(&self) -> usize {
        // SAFETY: the definition of a live memory, kept up to date by the memory itself.
        unsafe { self.0.vmmemory().as_ref().current_length }
    }

    /// Hands `[from, to)` of the memory, just grown, to a helper that populates it.
    fn populate(&self, from: usize, to: usize) {
        // Only a static-style memory keeps its base when it grows.
        if !POPULATE.load(Ordering::Relaxed) || to < from + MIN_GROW || !matches!(self.0.style(), MemoryStyle::Static { .. }) {
            return;
        }
        // SAFETY: reading the base of a live memory's definition.
        let base = unsafe { self.0.vmmemory().as_ref().base } as usize;
        let (start, end) = ((base + from).next_multiple_of(PAGE), (base + to) / PAGE * PAGE);
        let helper = std::thread::Builder::new().name("populate".into()).spawn(move || {
            let started = std::time::Instant::now();
            let done = populate_backwards(start, end);
            log::debug!("populated {} of {} MiB the guest grew, in {:.1?}", done >> 20, (end - start) >> 20, started.elapsed());
        });
        match helper {
            Ok(helper) => HELPERS.lock().unwrap_or_else(|e| e.into_inner()).push(helper),
            Err(e) => log::debug!("no helper to populate guest memory: {e}"),
        }
    }
}

impl Drop for Populating {
    fn drop(&mut self) {
        let definition = self.0.vmmemory().as_ptr() as usize;
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|&(_, d)| d != definition);
    }
}

impl LinearMemory for Populating {
    fn ty(&self) -> MemoryType {
        self.0.ty()
    }

    fn size(&self) -> Pages {
        self.0.size()
    }

    fn style(&self) -> MemoryStyle {
        self.0.style()
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let before = self.current_len();
        let previous = self.0.grow(delta)?;
        self.populate(before, self.current_len());
        Ok(previous)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let before = self.current_len();
        self.0.grow_at_least(min_size)?;
        self.populate(before, self.current_len());
        Ok(())
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.0.reset()
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.0.vmmemory()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::try_clone(&self.0)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::copy(&self.0)
    }

    fn as_shared(&self) -> Result<VMSharedMemory, MemoryError> {
        self.0.as_shared()
    }

    unsafe fn do_wait(&mut self, dst: u32, expected: ExpectedValue, timeout: Option<Duration>) -> Result<u32, WaiterError> {
        // SAFETY: the caller's promise about `dst` is passed on unchanged.
        unsafe { self.0.do_wait(dst, expected, timeout) }
    }

    fn do_notify(&mut self, dst: u32, count: u32) -> u32 {
        self.0.do_notify(dst, count)
    }

    fn thread_conditions(&self) -> Option<&ThreadConditions> {
        self.0.thread_conditions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_pages(map: &[u8]) -> usize {
        let mut vec = vec![0u8; map.len() / PAGE];
        // SAFETY: the whole of a live mapping, page aligned.
        assert_eq!(unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), vec.as_mut_ptr()) }, 0);
        vec.iter().filter(|&&page| page & 1 == 1).count()
    }

    fn populate_supported() -> bool {
        let map = memmap2::MmapMut::map_anon(PAGE).unwrap();
        // SAFETY: a scratch page of our own.
        unsafe { libc::madvise(map.as_ptr() as *mut libc::c_void, PAGE, libc::MADV_POPULATE_WRITE) == 0 }
    }

    #[test]
    fn a_helper_populates_from_the_top_down_to_what_the_guest_touched_and_changes_no_byte() {
        if !populate_supported() {
            eprintln!("MADV_POPULATE_WRITE is not supported by this kernel: nothing to test");
            return;
        }
        let mut map = memmap2::MmapMut::map_anon(8 * CHUNK).unwrap();
        // The guest has written its first 3 chunks, and one byte on the last page.
        for (i, byte) in map[..3 * CHUNK].iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        let last = map.len() - 1;
        map[last] = 7;
        let (start, top) = (map.as_ptr() as usize, map.as_ptr() as usize + map.len());
        assert_eq!(populate_backwards(start, top), 5 * CHUNK);
        assert_eq!(resident_pages(&map), map.len() / PAGE);
        assert!(map[..3 * CHUNK].iter().enumerate().all(|(i, &byte)| byte == (i % 251) as u8));
        assert!(map[3 * CHUNK..last].iter().all(|&byte| byte == 0));
        assert_eq!(map[last], 7);
    }

    #[test]
    fn a_helper_stops_at_once_when_the_guest_is_ahead_of_it() {
        let mut map = memmap2::MmapMut::map_anon(2 * CHUNK).unwrap();
        map.fill(1);
        let start = map.as_ptr() as usize;
        assert_eq!(populate_backwards(start, start + map.len()), 0);
    }
}
