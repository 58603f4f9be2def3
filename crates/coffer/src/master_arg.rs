//! The master key of the offline commands that authenticate what they read or write
//! (`coffer audit verify`, `coffer backup`, `coffer restore`): `COFFER_MASTER_KEY` when set,
//! else `--master-key-file`, else `<data-dir>/master.key`, as for `coffer serve`.

use crate::MASTER_KEY_ENV;
use clap::Args;
use coffer_crypto::MasterKey;
use std::path::{Path, PathBuf};

/// `--master-key-file`.
#[derive(Args, Debug, Clone)]
pub struct MasterKeyArg {
    /// The master key file, when it is not `<data-dir>/master.key` (`COFFER_MASTER_KEY` is
    /// used when set).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
}

impl MasterKeyArg {
    /// Reads the master key; never creates one.
    pub fn load(&self, data_dir: &Path) -> Result<MasterKey, String> {
        // The environment's value was moved into memory at start (`crate::main`).
        if let Some(text) = crate::master_key_from_env() {
            return MasterKey::from_text(std::str::from_utf8(text.expose()).unwrap_or_default())
                .map_err(|e| format!("{MASTER_KEY_ENV} is not a valid master key: {e}"));
        }
        let path = self.master_key_file.clone().unwrap_or_else(|| data_dir.join("master.key"));
        MasterKey::load(&path).map_err(|e| {
            format!(
                "cannot read the master key file {}: {e} (pass --master-key-file or set {MASTER_KEY_ENV})",
                path.display()
            )
        })
    }
}
