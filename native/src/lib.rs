//! pglite-port: PostgreSQL 17 (the PGlite WASIX build) under Wasmer, behind a framed
//! stdin/stdout protocol. The binary is `main.rs`; these modules follow the data path.

pub mod assets;
pub mod backend;
pub mod config;
pub mod data_dir;
pub mod export_trim;
pub mod frame;
pub mod frontend_guard;
pub mod guest_fs;
pub mod guest_heap;
pub mod guest_memory;
pub mod guest_sleep;
pub mod guest_symbols;
pub mod inet_family;
pub mod host_dir;
pub mod interrupts;
pub mod memory_pages;
pub mod module_cache;
pub mod no_space;
pub mod output_gate;
pub mod pg_dump;
pub mod precompile;
pub mod session;
pub mod side_modules;
pub mod stack_limit;
pub mod sql_cli;
pub mod stdin_frames;
pub mod stdin_wait;
pub mod stdio_bridge;
pub mod stray_portals;
pub mod wire;
