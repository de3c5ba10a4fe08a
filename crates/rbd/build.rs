//! Compiles the C++ copy-from shim (librados' copy-from exists only in its C++ API)
//! and links librbd and librados (Debian: librbd-dev, librados-dev, libradospp-dev).

fn main() {
    println!("cargo:rerun-if-changed=shim/copy_from.cc");
    cc::Build::new()
        .cpp(true)
        .file("shim/copy_from.cc")
        .flag("-std=c++17")
        .warnings(true)
        .compile("oxtgt_rbd_shim");
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rustc-link-lib=dylib=rados");
}
