//! The guest's free heap memory handed back to the operating system.
//!
//! Why: WebAssembly memory never shrinks, and the guest's malloc (wasi-libc's dlmalloc,
//! built with MORECORE_CANNOT_TRIM) keeps all it ever got, so after one big query (a
//! 200 MB value, a big sort) the port held its peak for good. A server's backend gives
//! such memory back (glibc maps big blocks apart and trims its heap). Here, while the
//! guest waits for input, the host reads dlmalloc's state, finds its big free chunks
//! (the top chunk, the designated victim, the tree bins' chunks) and releases the whole
//! pages inside them (`MADV_DONTNEED`; guest memory is private and anonymous, so they
//! read back as zeros). dlmalloc keeps nothing in a free chunk past its first 32 bytes
//! (header, list and tree links); the size footer lies in the next chunk.
//!
//! Where that state is: `free`'s code addresses it as `__memory_base + N`, and
//! [`allocator_state_offset`] reads N from the module. Before each look its fields are
//! checked against dlmalloc's invariants (its magic, the top chunk's header, bounds),
//! and a walk stops at anything outside the memory.
//!
//! What a look finds is released within the same wait for input, a step at a time (the
//! guest does not run meanwhile); a request that comes first ends it, and the next
//! wait looks again: by then the rest may be in use.
//!
//! The port's own heap is trimmed at a look too, when a big message's buffer was freed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

use crate::guest_memory::current_length;
use crate::memory_pages;
use crate::stdin_frames::Idle;

/// Free chunks smaller than this stay as they are (glibc maps blocks from 128 KiB apart).
const MIN_CHUNK: u32 = 256 << 10;
/// Of the top chunk, what the next requests are likely to take stays resident.
const KEEP_TOP: u32 = 1 << 20;
/// What one step releases at most: a frame that comes meanwhile waits that long.
const STEP: u32 = 16 << 20;
/// A look waits until the backend has been idle this long...
const SETTLE: Duration = Duration::from_millis(5);
/// ...or until this long since the last one, under steady load.
const EVERY: Duration = Duration::from_millis(100);
/// A walk of the tree bins visits at most this many chunks.
const MAX_CHUNKS: usize = 4096;

// dlmalloc 2.8.6's `struct malloc_state` on wasm32, and its chunks.
const DV_SIZE: u32 = 8;
const TOP_SIZE: u32 = 12;
const LEAST_ADDR: u32 = 16;
const DV: u32 = 20;
const TOP: u32 = 24;
const MAGIC: u32 = 36;
const TREEBINS: u32 = 304;
const MUTEX: u32 = 448;
/// A chunk's size field (the low 3 bits are flags); then the tree links.
const HEAD: u32 = 4;
const FD: u32 = 8;
const CHILD: [u32; 2] = [16, 20];
/// The bytes a free chunk keeps: prev_foot, head, fd, bk, child[2], parent, index.
const FREE_CHUNK_HEADER: u32 = 32;
/// The first tree bin that can hold a chunk of MIN_CHUNK (bin 2k holds 256 << k and up).
const FIRST_BIG_TREEBIN: u32 = 18;

/// The offset from the module's memory base of its malloc's state: the `N` of the first
/// `global.get __memory_base; i32.const N; i32.add` in `free` (or in the one function
/// `free` only forwards to).
pub fn allocator_state_offset(wasm: &[u8]) -> Result<u32> {
    let (mut imported_funcs, mut imported_globals, mut memory_base) = (0u32, 0u32, None);
    let mut free = None;
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.context("parse the PostgreSQL module")? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_funcs += 1,
                        TypeRef::Global(_) => {
                            if import.module == "env" && import.name == "__memory_base" {
                                memory_base = Some(imported_globals);
                            }
                            imported_globals += 1;
                        }
                        _ => {}
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    if export.name == "free" && export.kind == ExternalKind::Func {
                        free = Some(export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => bodies.push(body),
            _ => {}
        }
    }
    let memory_base = memory_base.context("the module imports no __memory_base")?;
    let mut function = free.context("the module exports no free")?;
    for _ in 0..2 {
        let index = function.checked_sub(imported_funcs).context("free is an import")?;
        let body = bodies.get(index as usize).context("free has no code")?;
        let ops: Vec<Operator> = body.get_operators_reader()?.into_iter().take(64).collect::<Result<_, _>>()?;
        if let Some(offset) = ops.windows(3).find_map(|w| match w {
            [Operator::GlobalGet { global_index }, Operator::I32Const { value }, Operator::I32Add] if *global_index == memory_base => {
                u32::try_from(*value).ok()
            }
            _ => None,
        }) {
            return Ok(offset);
        }
        // `free(p) { dlfree(p); }`: look in the one it calls.
        match ops.as_slice() {
            [Operator::LocalGet { local_index: 0 }, Operator::Call { function_index }, Operator::End] => function = *function_index,
            _ => break,
        }
    }
    bail!("free's code does not address the allocator's state as expected")
}

/// The pages of the guest heap's big free chunks, released a step at a time.
pub struct HeapTrim {
    /// The host address of guest address 0.
    base: usize,
    /// The guest address of dlmalloc's `malloc_state`.
    state: u32,
    /// Guest ranges found free and not yet released, and when the wait they were found
    /// in began: once the guest has run again they may be in use.
    pending: Vec<(u32, u32)>,
    found_in: Instant,
    last_look: Instant,
    /// Released since the last look, for the log.
    released: usize,
}

// SAFETY: only addresses; `new`'s caller vouches for when `step` may touch them.
unsafe impl Send for HeapTrim {}

impl HeapTrim {
    /// # Safety
    /// `base` is the start of a guest memory made by `PopulatingTunables` (private,
    /// anonymous) whose malloc state is at `state`; `idle_step` runs only while the guest
    /// does not run.
    pub unsafe fn new(base: *const u8, state: u32) -> Self {
        let now = Instant::now();
        Self { base: base as usize, state, pending: Vec::new(), found_in: now, last_look: now, released: 0 }
    }

    /// One step of idle work in the wait that began at `waiting_since`: release what
    /// this wait's look found, or look when it is time.
    pub fn idle_step(&mut self, waiting_since: Instant) -> Idle {
        let cut_short = !self.pending.is_empty() && self.found_in != waiting_since;
        if cut_short {
            // A request came before all was released: what is left may be in use now.
            self.pending.clear();
        } else if let Some(range) = self.pending.pop() {
            self.release_part(range);
            return self.more_or_rest();
        } else if waiting_since.elapsed() < SETTLE && self.last_look.elapsed() < EVERY {
            return Idle::At(SETTLE);
        }
        self.last_look = Instant::now();
        // The port's own heap too, after a big message.
        memory_pages::trim_heap_if_asked();
        match self.look() {
            Ok(ranges) => {
                self.pending = ranges;
                self.found_in = waiting_since;
                self.more_or_rest()
            }
            Err(e) => {
                log::warn!("free guest heap memory stays resident: {e:#}");
                Idle::Done
            }
        }
    }

    fn more_or_rest(&mut self) -> Idle {
        if !self.pending.is_empty() {
            return Idle::More;
        }
        if self.released >= 1 << 20 {
            log::debug!("released {} MiB of free guest heap", self.released >> 20);
        }
        self.released = 0;
        Idle::Rest
    }

    fn release_part(&mut self, (start, end): (u32, u32)) {
        let stop = end.min(start.saturating_add(STEP));
        // SAFETY: whole pages inside a free chunk of a live guest memory (the look
        // checked the bounds), while the guest does not run (`new`'s contract); dlmalloc
        // keeps nothing there, and they read back as zeros.
        self.released += unsafe { memory_pages::release(std::slice::from_raw_parts((self.base + start as usize) as *const u8, (stop - start) as usize)) };
        if stop < end {
            self.pending.push((stop, end));
        }
    }

    /// The page-aligned insides of dlmalloc's big free chunks.
    fn look(&self) -> Result<Vec<(u32, u32)>> {
        let len = current_length(self.base as *const u8).context("the guest memory is gone")?;
        let heap = Heap { base: self.base, len };
        let state = self.state;
        let magic = heap.read(state, MAGIC)?;
        if magic == 0 || magic & 15 != 8 {
            bail!("no malloc state at {state:#x} (magic {magic:#x})");
        }
        if heap.read(state, MUTEX)? != 0 {
            return Ok(Vec::new());
        }
        let (least, top, top_size) = (heap.read(state, LEAST_ADDR)?, heap.read(state, TOP)?, heap.read(state, TOP_SIZE)?);
        if top < least || heap.read(top, HEAD)? != top_size | 1 {
            bail!("the malloc state at {state:#x} does not match its top chunk");
        }
        let mut chunks = vec![(top, top_size, KEEP_TOP)];
        let (dv, dv_size) = (heap.read(state, DV)?, heap.read(state, DV_SIZE)?);
        if dv != 0 && dv_size >= MIN_CHUNK {
            chunks.push((dv, dv_size, 0));
        }
        let mut stack = Vec::new();
        for bin in FIRST_BIG_TREEBIN..32 {
            stack.push(heap.read(state, TREEBINS + 4 * bin)?);
        }
        let mut visited = 0;
        'walk: while let Some(node) = stack.pop() {
            if node == 0 {
                continue;
            }
            // Chunks of one size hang in a ring off the one in the tree.
            let mut member = node;
            loop {
                visited += 1;
                if visited > MAX_CHUNKS || member < least {
                    break 'walk;
                }
                let size = heap.read(member, HEAD)? & !7;
                if size >= MIN_CHUNK {
                    chunks.push((member, size, 0));
                }
                member = heap.read(member, FD)?;
                if member == node {
                    break;
                }
            }
            for child in CHILD {
                stack.push(heap.read(node, child)?);
            }
        }
        let mut ranges = Vec::new();
        for (chunk, size, keep) in chunks {
            let end = chunk.checked_add(size).filter(|&end| end as usize <= len).context("a free chunk lies past the memory")?;
            let start = (chunk + FREE_CHUNK_HEADER).saturating_add(keep).next_multiple_of(4096);
            let end = end / 4096 * 4096;
            if start < end {
                ranges.push((start, end));
            }
        }
        Ok(ranges)
    }
}

/// Bounds-checked reads of the guest memory.
struct Heap {
    base: usize,
    len: usize,
}

impl Heap {
    /// The 32-bit word `offset` bytes past `at`.
    fn read(&self, at: u32, offset: u32) -> Result<u32> {
        let at = at.checked_add(offset).filter(|&at| at as usize + 4 <= self.len);
        let Some(at) = at else { bail!("the malloc state points past the memory") };
        // SAFETY: inside the live memory (checked above); the guest does not run.
        Ok(u32::from_le(unsafe { std::ptr::read_unaligned((self.base + at as usize) as *const u32) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, GlobalType, ImportSection, Instruction, Module,
        TypeSection, ValType,
    };

    /// A module like the PostgreSQL one: `free` forwards to a function that addresses
    /// its state as `__memory_base + 2486736`.
    fn sample(forwarding: bool) -> Vec<u8> {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32], []);
        m.section(&types);
        let mut imports = ImportSection::new();
        imports.import("env", "imported_fn", EntityType::Function(0));
        imports.import("env", "__stack_pointer", EntityType::Global(GlobalType { val_type: ValType::I32, mutable: true, shared: false }));
        imports.import("env", "__memory_base", EntityType::Global(GlobalType { val_type: ValType::I32, mutable: false, shared: false }));
        m.section(&imports);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        funcs.function(0);
        m.section(&funcs);
        let mut exports = ExportSection::new();
        exports.export("free", ExportKind::Func, if forwarding { 1 } else { 2 });
        m.section(&exports);
        let mut code = CodeSection::new();
        let mut forward = Function::new([]);
        forward.instruction(&Instruction::LocalGet(0)).instruction(&Instruction::Call(2)).instruction(&Instruction::End);
        code.function(&forward);
        let mut dlfree = Function::new([]);
        dlfree
            .instruction(&Instruction::GlobalGet(0))
            .instruction(&Instruction::Drop)
            .instruction(&Instruction::GlobalGet(1))
            .instruction(&Instruction::I32Const(2486736))
            .instruction(&Instruction::I32Add)
            .instruction(&Instruction::Drop)
            .instruction(&Instruction::End);
        code.function(&dlfree);
        m.section(&code);
        m.finish()
    }

    #[test]
    fn the_state_is_found_in_free_or_in_what_it_forwards_to() {
        assert_eq!(allocator_state_offset(&sample(true)).unwrap(), 2486736);
        assert_eq!(allocator_state_offset(&sample(false)).unwrap(), 2486736);
    }

    /// A guest memory of 4 MiB (made as the port makes it) whose malloc state at 0x1000
    /// says its top chunk is `[top, top + size)`; everything else is 0xAB.
    fn heap_with_top(memory: &wasmer::sys::vm::VMMemory, top: u32, size: u32) {
        // SAFETY: the definition of a live memory made just before.
        let base = unsafe { memory.0.vmmemory().as_ref().base };
        // SAFETY: the memory's 4 MiB, which nothing else touches in this test.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, 4 << 20) };
        let mut put = |at: u32, value: u32| bytes[at as usize..at as usize + 4].copy_from_slice(&value.to_le_bytes());
        put(STATE + MAGIC, 0x5a5a_5a58);
        put(STATE + LEAST_ADDR, 0x1_0000);
        put(STATE + TOP, top);
        put(STATE + TOP_SIZE, size);
        put(top + HEAD, size | 1);
    }

    const STATE: u32 = 0x1000;

    fn memory() -> (wasmer::sys::vm::VMMemory, *const u8) {
        use wasmer::sys::Tunables;
        let tunables = crate::guest_memory::PopulatingTunables::new();
        let ty = wasmer::MemoryType::new(64, Some(1024), false);
        let memory = tunables.create_host_memory(&ty, &tunables.memory_style(&ty)).unwrap();
        // SAFETY: as above.
        let base = unsafe { memory.0.vmmemory().as_ref().base };
        // SAFETY: the memory's 4 MiB.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, 4 << 20) };
        bytes[0x1_0000..].fill(0xab);
        (memory, base)
    }

    fn steps(trim: &mut HeapTrim, since: Instant) {
        while trim.idle_step(since) == Idle::More {}
    }

    #[test]
    fn a_look_releases_the_top_chunk_past_what_is_kept_and_nothing_else() {
        let (memory, base) = memory();
        heap_with_top(&memory, 0x1_0000, 3 << 20);
        // SAFETY: the memory lives to the end of the test; nothing runs meanwhile.
        let mut trim = unsafe { HeapTrim::new(base, STATE) };
        steps(&mut trim, Instant::now() - SETTLE);
        // SAFETY: the memory's 4 MiB.
        let bytes = unsafe { std::slice::from_raw_parts(base, 4 << 20) };
        let kept_to = (0x1_0000 + FREE_CHUNK_HEADER + KEEP_TOP).next_multiple_of(4096) as usize;
        assert!(bytes[0x1_0008..kept_to].iter().all(|&b| b == 0xab), "the top's first MiB stays");
        assert!(bytes[kept_to..0x1_0000 + (3 << 20)].iter().all(|&b| b == 0), "the rest of the top is released");
        assert!(bytes[0x1_0000 + (3 << 20)..].iter().all(|&b| b == 0xab), "past the top chunk: untouched");
    }

    #[test]
    fn what_one_wait_found_is_not_released_after_the_guest_ran() {
        let (memory, base) = memory();
        heap_with_top(&memory, 0x1_0000, 3 << 20);
        // SAFETY: as above.
        let mut trim = unsafe { HeapTrim::new(base, STATE) };
        let first_wait = Instant::now() - SETTLE;
        assert_eq!(trim.idle_step(first_wait), Idle::More, "the look found the top chunk");
        // A request comes: the guest takes 2 MiB of the top chunk and writes it.
        heap_with_top(&memory, 0x1_0000 + (2 << 20), 1 << 20);
        let next_wait = first_wait + Duration::from_millis(1);
        steps(&mut trim, next_wait);
        // SAFETY: the memory's 4 MiB.
        let bytes = unsafe { std::slice::from_raw_parts(base, 4 << 20) };
        assert!(bytes[0x1_0008..0x1_0000 + (2 << 20)].iter().all(|&b| b == 0xab), "the guest's new data is kept");
    }

    #[test]
    fn a_module_without_that_pattern_is_refused() {
        let mut m = Module::new();
        m.section(&TypeSection::new());
        assert!(allocator_state_offset(&m.finish()).is_err());
    }
}
