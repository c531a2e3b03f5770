//! The bundled PostgreSQL module with only the exports anything looks up.
//!
//! Why: the module exports 22,329 symbols (its C functions and data, for the dynamic
//! linker). Wasmer builds a map of every export at each instantiation and the WASIX
//! linker clones that map three times: about a fifth of every start. The bundled side
//! modules (plpgsql, dict_snowball, the extensions) import 1,300 of them; the rest
//! nobody asks for. So the module is compiled with the exports they import, the ones
//! WASIX and this host look up, and nothing else; a start loads that compiled form.
//! Only the bundled module is trimmed (and patched, `inet_family`): one given with
//! `--wasm-path` stays whole.

use std::collections::HashSet;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmparser::{ExternalKind, Parser, Payload};

use crate::assets::Runtime;

/// Part of the compiled module's key: a different rule makes a different module.
const RULE: &[u8] = b"exports: side-module imports (with the conversion procedures), WASIX, host (5); inet family byte (2)";

/// What WASIX's loader and linker call (`_start`, `_initialize`, `__wasm_call_ctors`,
/// `__stack_pointer`, `__tls_base`, `asyncify_*`, `wasi_thread_start`, ...) and the
/// PGlite entry points this host calls (`pgl_*`), by prefix.
const KEPT_PREFIXES: &[&str] = &["_", "asyncify_", "wasi_", "pgl_"];

/// The other names this host looks up (`backend`, `interrupts`); a missing one fails
/// the start with "the PostgreSQL module lacks the export ...".
const HOST_NAMES: &[&str] = &[
    "memory",
    "malloc",
    "free",
    "pg_free",
    "ProcessStartupPacket",
    "PostgresMainLoopOnce",
    "PostgresSendReadyForQueryIfNecessary",
    "PostgresMainLongJmp",
    "set_stack_base",
    "errstart",
    "errcode",
    "errmsg",
    "errhint",
    "errfinish",
    "ActivePortal",
    "shmem_exit_inprogress",
    "MarkPortalFailed",
    "error_context_stack",
    "my_exec_path",
    "InterruptPending",
    "QueryCancelPending",
    "StatementTimeout",
];
/// A static array whose export name carries a compiler suffix (`interrupts`).
const HOST_NAME_PREFIX: &str = "all_timeouts.";

/// The key the bundled module's trimmed form is compiled and cached under (its own
/// SHA-256 and the rule), and a function that makes that form.
pub fn bundled(runtime: &Runtime, module_sha256: [u8; 32]) -> ([u8; 32], impl FnOnce() -> Result<Vec<u8>> + '_) {
    let key = Sha256::new().chain_update(module_sha256).chain_update(RULE).finalize().into();
    let make = move || {
        let path = runtime.module_path();
        let module = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let mut imported = HashSet::new();
        for path in runtime.side_module_paths()? {
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            imported.extend(imported_names(&bytes).with_context(|| format!("read the imports of {}", path.display()))?);
        }
        trim(&crate::inet_family::patch(&module)?, &imported)
    };
    (key, make)
}

/// Every name a module imports (whatever the module it imports from: `env`, `GOT.func`,
/// `GOT.mem` all name an export of the main module).
fn imported_names(wasm: &[u8]) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                names.insert(import?.name.to_string());
            }
        }
    }
    Ok(names)
}

fn kept(name: &str, imported: &HashSet<String>) -> bool {
    KEPT_PREFIXES.iter().any(|p| name.starts_with(p))
        || HOST_NAMES.contains(&name)
        || name.starts_with(HOST_NAME_PREFIX)
        || imported.contains(name)
}

/// `module` with only the function and global exports `imported` or the host names;
/// every other section as it was, byte for byte.
fn trim(module: &[u8], imported: &HashSet<String>) -> Result<Vec<u8>> {
    let mut out = wasm_encoder::Module::new();
    let (mut before, mut after) = (0, 0);
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.context("parse the PostgreSQL module")?;
        match payload {
            Payload::ExportSection(reader) => {
                let mut exports = wasm_encoder::ExportSection::new();
                for export in reader {
                    let export = export?;
                    before += 1;
                    let functional = matches!(export.kind, ExternalKind::Func | ExternalKind::Global);
                    if !functional || kept(export.name, imported) {
                        exports.export(export.name, encoder_kind(export.kind), export.index);
                        after += 1;
                    }
                }
                out.section(&exports);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    let range = usize::try_from(range.start)?..usize::try_from(range.end)?;
                    out.section(&wasm_encoder::RawSection { id, data: &module[range] });
                }
            }
        }
    }
    log::debug!("kept {after} of the module's {before} exports");
    Ok(out.finish())
}

fn encoder_kind(kind: ExternalKind) -> wasm_encoder::ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => wasm_encoder::ExportKind::Func,
        ExternalKind::Table => wasm_encoder::ExportKind::Table,
        ExternalKind::Memory => wasm_encoder::ExportKind::Memory,
        ExternalKind::Global => wasm_encoder::ExportKind::Global,
        ExternalKind::Tag => wasm_encoder::ExportKind::Tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting three functions and a global, importing one function.
    fn sample() -> Vec<u8> {
        let mut m = wasm_encoder::Module::new();
        let mut types = wasm_encoder::TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut imports = wasm_encoder::ImportSection::new();
        imports.import("env", "from_elsewhere", wasm_encoder::EntityType::Function(0));
        m.section(&imports);
        let mut funcs = wasm_encoder::FunctionSection::new();
        for _ in 0..3 {
            funcs.function(0);
        }
        m.section(&funcs);
        let mut globals = wasm_encoder::GlobalSection::new();
        let ty = wasm_encoder::GlobalType { val_type: wasm_encoder::ValType::I32, mutable: false, shared: false };
        globals.global(ty, &wasm_encoder::ConstExpr::i32_const(7));
        m.section(&globals);
        let mut exports = wasm_encoder::ExportSection::new();
        exports.export("_start", wasm_encoder::ExportKind::Func, 1);
        exports.export("wanted_by_a_side_module", wasm_encoder::ExportKind::Func, 2);
        exports.export("nobody_asks", wasm_encoder::ExportKind::Func, 3);
        exports.export("some_data", wasm_encoder::ExportKind::Global, 0);
        m.section(&exports);
        let mut code = wasm_encoder::CodeSection::new();
        for _ in 0..3 {
            let mut f = wasm_encoder::Function::new([]);
            f.instruction(&wasm_encoder::Instruction::End);
            code.function(&f);
        }
        m.section(&code);
        m.section(&wasm_encoder::CustomSection { name: "dylink.0".into(), data: b"\x01\x02\x03".as_slice().into() });
        m.finish()
    }

    fn export_names(wasm: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::ExportSection(reader) = payload.unwrap() {
                names.extend(reader.into_iter().map(|e| e.unwrap().name.to_string()));
            }
        }
        names
    }

    #[test]
    fn keeps_what_is_imported_or_looked_up_and_drops_the_rest() {
        let imported = HashSet::from(["wanted_by_a_side_module".to_string()]);
        let trimmed = trim(&sample(), &imported).unwrap();
        assert_eq!(export_names(&trimmed), ["_start", "wanted_by_a_side_module"]);
        wasmparser::Validator::new().validate_all(&trimmed).expect("still a valid module");
        let sections = |wasm: &[u8]| -> Vec<String> {
            Parser::new(0)
                .parse_all(wasm)
                .filter_map(|p| match p.unwrap() {
                    Payload::CustomSection(c) => Some(c.name().to_string()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(sections(&trimmed), ["dylink.0"], "custom sections stay");
    }

    #[test]
    fn every_import_name_counts_whatever_its_module() {
        assert_eq!(imported_names(&sample()).unwrap(), HashSet::from(["from_elsewhere".to_string()]));
    }
}
