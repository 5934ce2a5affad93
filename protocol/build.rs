//! Compiles `proto/tern.proto` with the pure-Rust `protox` compiler (no `protoc`
//! needed on the build machine) and generates prost types from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tern.proto");
    let descriptors = protox::compile(["proto/tern.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
