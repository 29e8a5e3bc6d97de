//! Gives every binary and test of this package an rpath to libtorch, so `slt` runs without
//! LD_LIBRARY_PATH. torch-sys (links = "tch") exports its library directory as
//! DEP_TCH_LIBTORCH_LIB to packages that depend on it directly.
//!
//! When that libtorch has CUDA (`libtorch_cuda.so`, as the default PyPI wheels do), it is linked
//! with `--no-as-needed`: nothing references its symbols directly, so the linker would otherwise
//! drop it and `tch::Cuda::is_available()` would report false on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
