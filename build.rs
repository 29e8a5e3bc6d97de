//! Gives every binary and test of this package an rpath to libtorch, so `slt` runs without
//! LD_LIBRARY_PATH. torch-sys (links = "tch") exports its library directory as
//! DEP_TCH_LIBTORCH_LIB to packages that depend on it directly.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
