//! Compiles `proto/tern.proto` and `proto/cluster.proto` with the pure-Rust `protox` compiler (no `protoc`
//! needed on the build machine) and generates prost types from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tern.proto");
    println!("cargo:rerun-if-changed=proto/cluster.proto");
    let descriptors = protox::compile(["proto/tern.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    // Relay-to-relay messages; their references to tern.v1 types point at
    // the `wire` module generated above.
    let cluster = protox::compile(["proto/cluster.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .extern_path(".tern.v1", "crate::wire")
        .compile_fds(cluster)?;
    Ok(())
}
