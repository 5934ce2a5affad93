//! `cargo run -p uniffi-bindgen -- generate --library target/debug/libtern_ffi.so
//! --language kotlin|swift|python --out-dir DIR`: the generator for the
//! bindings of `tern-ffi`, built from the same uniffi version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
