//! Addresses of the PostgreSQL module's exported data symbols (globals such as
//! `my_exec_path` or `InterruptPending`) in its linear memory, and reading and writing
//! bytes there.
//!
//! The module is a WASIX dynamic-linking main module: an exported data global holds an
//! offset from the module's memory base, which the linker picks as 2^alignment from
//! the `dylink.0` memory info. Address = that base + the global's value.

use anyhow::{bail, Context, Result};
use wasmer::{Instance, Module, Store};
use wasmer_wasix::WasiFunctionEnv;

pub struct DataSymbols {
    memory_base: u32,
}

impl DataSymbols {
    pub fn new(module: &Module) -> Result<Self> {
        Ok(Self { memory_base: memory_base(module)? })
    }

    /// Where the module's data starts in the linear memory.
    pub fn memory_base(&self) -> u32 {
        self.memory_base
    }

    /// The address of exported data symbol `name`.
    pub fn address(&self, store: &mut Store, instance: &Instance, name: &str) -> Result<u32> {
        let global = instance.exports.get_global(name).with_context(|| format!("the module does not export {name}"))?;
        match global.get(store) {
            wasmer::Value::I32(offset) if offset > 0 => Ok(offset as u32 + self.memory_base),
            other => bail!("{name} holds {other:?}, not an address"),
        }
    }
}

/// Writes `bytes` into the guest's memory at `at`.
pub fn poke(store: &mut Store, env: &WasiFunctionEnv, at: u32, bytes: &[u8]) -> Result<()> {
    let view = env.data(&*store).try_memory_view(&*store).context("guest memory")?;
    view.write(u64::from(at), bytes).context("write guest memory")
}

/// Reads `out.len()` bytes of the guest's memory at `at` into `out`.
pub fn peek(store: &Store, env: &WasiFunctionEnv, at: u32, out: &mut [u8]) -> Result<()> {
    let view = env.data(store).try_memory_view(store).context("guest memory")?;
    view.read(u64::from(at), out).context("read guest memory")
}

fn memory_base(module: &Module) -> Result<u32> {
    let section = module.custom_sections("dylink.0").next().context("the module has no dylink.0 section")?;
    let mut at = 0;
    while at < section.len() {
        let kind = section[at];
        let (len, next) = leb128(&section, at + 1)?;
        if kind == 1 {
            // WASM_DYLINK_MEM_INFO: memory size, then log2 of the alignment.
            let (_size, next) = leb128(&section, next)?;
            let (align, _) = leb128(&section, next)?;
            anyhow::ensure!(align < 32, "dylink.0 memory alignment 2^{align} is out of range");
            return Ok(1 << align);
        }
        at = next + len as usize;
    }
    bail!("dylink.0 has no memory info")
}

fn leb128(bytes: &[u8], mut at: usize) -> Result<(u32, usize)> {
    let (mut value, mut shift) = (0u32, 0);
    loop {
        let byte = *bytes.get(at).context("truncated dylink.0 section")?;
        at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
        shift += 7;
        anyhow::ensure!(shift < 35, "bad LEB128 in dylink.0");
    }
}
