//! The address family byte of binary `inet` and `cidr` values, as every server sends it.
//!
//! PostgreSQL puts its own family code on the wire: `PGSQL_AF_INET` (defined as
//! `AF_INET + 0`) for IPv4 and `PGSQL_AF_INET6` (`AF_INET + 1`) for IPv6, 2 and 3 on
//! every platform a server runs on. WASI's `AF_INET` is 1, so this build sent 1 and 2,
//! and refused the 2 and 3 that clients send ("invalid address family"): Postgrex
//! always uses the binary format for inet/cidr, and psycopg and node `pg` can too. The
//! bytes stored in data files (1 and 2) stay as they are, only this build reads them.
//! So the module is patched where the byte crosses the wire: in `network_send` (called
//! by `inet_send` and `cidr_send`) the family read from the value gets +1 before it is
//! written, and in `network_recv` (called by `inet_recv` and `cidr_recv`) the byte read
//! from the message gets -1 before it is stored and checked. Binary COPY goes through
//! the same functions. If the code does not have the expected shape (another build),
//! nothing is patched and a warning says so.

use std::collections::HashMap;

use anyhow::{Context, Result};
use wasmparser::{ExternalKind, FunctionBody, Operator, Parser, Payload};

/// `i32.const 1; i32.add` and `i32.const 1; i32.sub`.
const PLUS_ONE: &[u8] = &[0x41, 0x01, 0x6a];
const MINUS_ONE: &[u8] = &[0x41, 0x01, 0x6b];

/// `module` with the two functions patched, or as it was when they cannot be found.
pub fn patch(module: &[u8]) -> Result<Vec<u8>> {
    let parts = Parts::read(module)?;
    let (Some(send), Some(recv)) = (parts.last_call("inet_send"), parts.last_call("inet_recv")) else {
        log::warn!("binary inet/cidr not patched: inet_send or inet_recv not found");
        return Ok(module.to_vec());
    };
    // network_send: `<value> i32.load8_u; local.set` reads the family to send.
    let send_at = parts.after_load(send, |next| matches!(next, [Operator::LocalSet { .. }, ..]));
    // network_recv: `<message byte> i32.load8_u; local.tee; i32.store8` reads and stores it.
    let recv_at = parts.after_load(recv, |next| matches!(next, [Operator::LocalTee { .. }, Operator::I32Store8 { .. }, ..]));
    let (Some(send_at), Some(recv_at)) = (send_at, recv_at) else {
        log::warn!("binary inet/cidr not patched: network_send/network_recv have an unexpected shape");
        return Ok(module.to_vec());
    };
    parts.rebuild(module, &HashMap::from([(send, (send_at, PLUS_ONE)), (recv, (recv_at, MINUS_ONE))]))
}

/// What the patch needs to know of the module.
struct Parts<'a> {
    imported_funcs: u32,
    exports: HashMap<&'a str, u32>,
    bodies: Vec<FunctionBody<'a>>,
}

impl<'a> Parts<'a> {
    fn read(module: &'a [u8]) -> Result<Self> {
        let mut parts = Parts { imported_funcs: 0, exports: HashMap::new(), bodies: Vec::new() };
        for payload in Parser::new(0).parse_all(module) {
            match payload.context("parse the PostgreSQL module")? {
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        if matches!(import?.ty, wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_)) {
                            parts.imported_funcs += 1;
                        }
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export?;
                        if matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact) {
                            parts.exports.insert(export.name, export.index);
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => parts.bodies.push(body),
                _ => {}
            }
        }
        Ok(parts)
    }

    fn body(&self, func: u32) -> Option<&FunctionBody<'a>> {
        self.bodies.get(func.checked_sub(self.imported_funcs)? as usize)
    }

    /// The function the exported `name` calls last: the fmgr wrapper's worker, after
    /// the detoasting of its argument.
    fn last_call(&self, name: &str) -> Option<u32> {
        let mut ops = self.body(*self.exports.get(name)?)?.get_operators_reader().ok()?;
        let mut last = None;
        while !ops.eof() {
            if let Operator::Call { function_index } = ops.read().ok()? {
                last = Some(function_index);
            }
        }
        last
    }

    /// The module offset right after the first `i32.load8_u` whose following
    /// operators satisfy `next`.
    fn after_load(&self, func: u32, next: impl Fn(&[Operator]) -> bool) -> Option<usize> {
        let mut ops = self.body(func)?.get_operators_reader().ok()?;
        let mut all = Vec::new();
        while !ops.eof() {
            all.push(ops.read_with_offset().ok()?);
        }
        let operators: Vec<Operator> = all.iter().map(|(op, _)| op.clone()).collect();
        (0..operators.len().saturating_sub(1))
            .find(|&i| matches!(operators[i], Operator::I32Load8U { .. }) && next(&operators[i + 1..]))
            .and_then(|i| usize::try_from(all[i + 1].1).ok())
    }

    /// The module again, with `insert` bytes put into the bodies it names.
    fn rebuild(&self, module: &[u8], insert: &HashMap<u32, (usize, &[u8])>) -> Result<Vec<u8>> {
        let mut out = wasm_encoder::Module::new();
        for payload in Parser::new(0).parse_all(module) {
            let payload = payload.context("parse the PostgreSQL module")?;
            match payload {
                Payload::CodeSectionStart { .. } => {
                    let mut code = wasm_encoder::CodeSection::new();
                    for (i, body) in self.bodies.iter().enumerate() {
                        let range = usize::try_from(body.range().start)?..usize::try_from(body.range().end)?;
                        match insert.get(&(self.imported_funcs + i as u32)) {
                            Some(&(at, bytes)) => {
                                let mut patched = module[range.start..at].to_vec();
                                patched.extend_from_slice(bytes);
                                patched.extend_from_slice(&module[at..range.end]);
                                code.raw(&patched);
                            }
                            None => {
                                code.raw(&module[range]);
                            }
                        }
                    }
                    out.section(&code);
                }
                Payload::CodeSectionEntry(_) => {}
                other => {
                    if let Some((id, range)) = other.as_section() {
                        let range = usize::try_from(range.start)?..usize::try_from(range.end)?;
                        out.section(&wasm_encoder::RawSection { id, data: &module[range] });
                    }
                }
            }
        }
        Ok(out.finish())
    }
}
