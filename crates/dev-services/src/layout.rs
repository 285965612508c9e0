//! Where things live on disk: the tools directory and the per-checkout services directory.

use std::path::{Path, PathBuf};

use crate::STATE_FILE_VAR;

/// Paths used by the services.
///
/// Binaries go to a stable tools directory outside `target/`, so that `cargo clean` does not
/// force a FerretDB rebuild; data, logs and the state file go to `target/services/`.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The workspace root (the directory holding the root `Cargo.toml`).
    pub workspace_root: PathBuf,
    /// `target/services`: data, logs, pid files and `state.json`.
    pub services_dir: PathBuf,
    /// `${IDENFY_TOOLS_DIR:-$XDG_DATA_HOME/idenfy-sessions/tools}`; binaries are in `bin/`.
    pub tools_dir: PathBuf,
    /// `IDENFY_SERVICES_STATE`, else `state.json` in `services_dir`.
    pub state_file: PathBuf,
}

impl Layout {
    /// The layout for this checkout, honouring `CARGO_TARGET_DIR`, `IDENFY_SERVICES_DIR` and
    /// `IDENFY_TOOLS_DIR`.
    pub fn from_env() -> Layout {
        // dev-services sits at crates/dev-services, two levels below the root.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace_root = manifest_dir
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf);
        let target_dir = non_empty_var("CARGO_TARGET_DIR")
            .map(|dir| workspace_root.join(dir))
            .unwrap_or_else(|| workspace_root.join("target"));
        let services_dir = non_empty_var("IDENFY_SERVICES_DIR")
            .map(|dir| workspace_root.join(dir))
            .unwrap_or_else(|| target_dir.join("services"));
        let tools_dir = non_empty_var("IDENFY_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_tools_dir);
        let state_file = non_empty_var(STATE_FILE_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| services_dir.join("state.json"));
        Layout {
            workspace_root,
            services_dir,
            tools_dir,
            state_file,
        }
    }

    /// A layout of its own below this one's services directory (`<services_dir>/<name>/`,
    /// with its own state file), so that one `cargo xtask test` run neither reuses nor stops
    /// servers that another run or `cargo xtask services up` started. Tools are shared.
    pub fn isolated(&self, name: &str) -> Layout {
        let services_dir = self.services_dir.join(name);
        Layout {
            workspace_root: self.workspace_root.clone(),
            state_file: services_dir.join("state.json"),
            services_dir,
            tools_dir: self.tools_dir.clone(),
        }
    }

    /// Where installed binaries go.
    pub fn bin_dir(&self) -> PathBuf {
        self.tools_dir.join("bin")
    }
}

fn default_tools_dir() -> PathBuf {
    let data_home = non_empty_var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty_var("HOME").map(|home| Path::new(&home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data_home.join("idenfy-sessions").join("tools")
}

/// An environment variable that is set and not empty.
pub(crate) fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}
