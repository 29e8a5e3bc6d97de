//! Making NCCL loadable: torch's CUDA library, the `libnccl.so` shim and the re-execution
//! (see the parent module's docs).

use std::ffi::{CStr, OsString};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cudarc::nccl::sys as nccl;

use super::{check, guarded, unavailable};
use crate::dist::DistError;

/// Path of the NCCL library to use (e.g. `…/site-packages/nvidia/nccl/lib/libnccl.so.2`).
pub const ENV_NCCL_LIBRARY: &str = "SLT_NCCL_LIBRARY";
/// `0`: never re-execute to put a `libnccl.so` shim on `LD_LIBRARY_PATH`; fail instead.
pub const ENV_NCCL_REEXEC: &str = "SLT_NCCL_REEXEC";
/// Set in the re-executed process (the shim directory), so it does not loop.
const ENV_SHIM: &str = "SLT_NCCL_SHIM";

/// What [`prepare`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NcclRuntime {
    /// `ncclGetVersion` (e.g. 22907 for 2.29.7).
    pub version: i32,
    /// The shim directory this process was re-executed with, if any.
    pub shim: Option<PathBuf>,
}

/// Makes sure torch's CUDA library and NCCL can be used by this process; see the module docs.
/// May re-execute the process (it then does not return).
pub fn prepare() -> Result<NcclRuntime, DistError> {
    load_torch_cuda()?;
    // SAFETY: only tries to dlopen cudarc's candidate names.
    if !unsafe { nccl::is_culib_present() } {
        let library = find_libnccl()?;
        let shim = shim_dir(&library)?;
        reexec_with(&shim, &library)?;
    }
    let mut version = 0i32;
    // SAFETY: `version` is a valid out-pointer.
    let result = guarded("ncclGetVersion", || unsafe {
        nccl::ncclGetVersion(&mut version)
    })
    .map_err(unavailable)?;
    check(result, "ncclGetVersion").map_err(unavailable)?;
    Ok(NcclRuntime {
        version,
        shim: std::env::var_os(ENV_SHIM).map(PathBuf::from),
    })
}

/// `dlopen("libtorch_cuda.so", RTLD_GLOBAL)`: torch's CUDA kernels and hooks (binaries linked
/// with `--as-needed` do not load it by themselves), and the `libnccl.so.2` it depends on.
fn load_torch_cuda() -> Result<(), DistError> {
    // SAFETY: dlopen/dlerror with a NUL-terminated name; the handle is deliberately leaked
    // (the library stays loaded for the life of the process).
    unsafe {
        let handle = libc::dlopen(
            c"libtorch_cuda.so".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL,
        );
        if handle.is_null() {
            let err = libc::dlerror();
            let msg = if err.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(err).to_string_lossy().into_owned()
            };
            return Err(unavailable(format!(
                "libtorch_cuda.so cannot be loaded ({msg}): slt needs a CUDA build of libtorch \
                 (e.g. the torch 2.13 CUDA wheel) for the nccl backend"
            )));
        }
    }
    Ok(())
}

/// `$SLT_NCCL_LIBRARY`, else a `libnccl` already mapped into this process, else the wheel's
/// `nvidia/nccl/lib/libnccl.so.2` or `libnccl.so.2` in torch's `lib` directory.
fn find_libnccl() -> Result<PathBuf, DistError> {
    if let Some(path) = std::env::var_os(ENV_NCCL_LIBRARY) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(unavailable(format!(
                "{ENV_NCCL_LIBRARY}={} is not a file",
                path.display()
            )))
        };
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mapped = |needle: &str| {
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| {
                Path::new(p)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(needle))
            })
            .map(PathBuf::from)
    };
    if let Some(path) = mapped("libnccl.so") {
        return Ok(path);
    }
    let torch_lib = mapped("libtorch_cuda.so").and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(lib) = &torch_lib {
        for candidate in [
            lib.join("../../nvidia/nccl/lib/libnccl.so.2"),
            lib.join("libnccl.so.2"),
        ] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(unavailable(format!(
        "no NCCL library found: cudarc looks for libnccl.so (not libnccl.so.2), torch has no \
         libnccl mapped{}; set {ENV_NCCL_LIBRARY}=/path/to/libnccl.so.2",
        torch_lib.map_or(String::new(), |l| format!(
            " and there is none next to {}",
            l.display()
        ))
    )))
}

/// A directory owned by this user, holding `libnccl.so` → `library` (replaced atomically, so
/// concurrent ranks agree).
fn shim_dir(library: &Path) -> Result<PathBuf, DistError> {
    let setup = |what: String| move |source: io::Error| DistError::Setup { what, source };
    let target = std::fs::canonicalize(library)
        .map_err(setup(format!("resolving {}", library.display())))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let base = std::env::temp_dir().join(format!("slt-nccl-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(setup(format!("creating {}", base.display()))(e)),
    }
    let meta = std::fs::symlink_metadata(&base)
        .map_err(setup(format!("inspecting {}", base.display())))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(unavailable(format!(
            "{} is not a private directory of this user; remove it",
            base.display()
        )));
    }
    let link = base.join("libnccl.so");
    let tmp = base.join(format!("libnccl.so.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .map_err(setup(format!("creating the symlink {}", tmp.display())))?;
    std::fs::rename(&tmp, &link).map_err(setup(format!("creating {}", link.display())))?;
    Ok(base)
}

/// Re-executes this process with `shim` in front of `LD_LIBRARY_PATH`; returns only errors.
fn reexec_with(shim: &Path, library: &Path) -> Result<(), DistError> {
    use std::os::unix::process::CommandExt;
    let old = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let mut path = OsString::from(shim);
    if !old.is_empty() {
        path.push(":");
        path.push(&old);
    }
    if std::env::var_os(ENV_SHIM).is_some() {
        return Err(unavailable(format!(
            "NCCL still cannot be loaded after re-executing with LD_LIBRARY_PATH={} (symlink \
             libnccl.so → {}); is that library usable?",
            path.to_string_lossy(),
            library.display()
        )));
    }
    if std::env::var(ENV_NCCL_REEXEC).is_ok_and(|v| v.trim() == "0") {
        return Err(unavailable(format!(
            "cudarc cannot load {} under its name libnccl.so.2; start slt with \
             LD_LIBRARY_PATH={} (a directory with a libnccl.so symlink), or unset \
             {ENV_NCCL_REEXEC} to let slt do that",
            library.display(),
            path.to_string_lossy()
        )));
    }
    let exe = std::fs::read_link("/proc/self/exe").map_err(|source| DistError::Setup {
        what: "finding this executable to re-execute it with the NCCL shim".into(),
        source,
    })?;
    // Whatever is buffered would be lost with this image.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let source = std::process::Command::new(&exe)
        .arg0(argv0)
        .args(args)
        .env("LD_LIBRARY_PATH", &path)
        .env(ENV_SHIM, shim)
        .exec();
    Err(DistError::Setup {
        what: format!(
            "re-executing {} with LD_LIBRARY_PATH={}",
            exe.display(),
            path.to_string_lossy()
        ),
        source,
    })
}
