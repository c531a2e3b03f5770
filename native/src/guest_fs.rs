//! What the guest sees: an in-memory root (/tmp, /dev, /home), the runtime files from
//! the cache directory (/bin, /share, /lib), and the data directory at /pgdata.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use virtual_fs::{FileSystem, MountFileSystem};

use crate::host_dir::HostDir;

pub const PGDATA: &str = "/pgdata";

pub fn build(
    rt: &tokio::runtime::Runtime,
    runtime_root: &Path,
    pgdata: Arc<dyn FileSystem + Send + Sync>,
) -> Result<Arc<dyn FileSystem + Send + Sync>> {
    let root = virtual_fs::RootFileSystemBuilder::default().build_tmp();
    for dir in ["/home", "/pgdata", "/share", "/lib", "/dev/shm"] {
        let _ = root.create_dir(Path::new(dir));
    }
    let mount = MountFileSystem::new();
    mount.mount(Path::new("/"), Arc::new(root)).context("mount /")?;
    for dir in ["bin", "share", "lib"] {
        let host = HostDir::new(rt.handle(), &runtime_root.join(dir)).with_context(|| format!("open runtime {dir}/"))?;
        mount
            .mount(&Path::new("/").join(dir), Arc::new(host))
            .with_context(|| format!("mount /{dir}"))?;
    }
    mount.mount(Path::new(PGDATA), pgdata).context("mount /pgdata")?;
    Ok(Arc::new(mount))
}
