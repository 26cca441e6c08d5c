//! Compiles `proto/admin.proto` with protox (a pure-Rust protobuf compiler, so no `protoc` is
//! needed on the build machine) and generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a compiled-in path would be wherever a shared build cache was first filled.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let dir = std::path::Path::new(&manifest_dir).join("../../proto");
    let file = dir.join("admin.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
