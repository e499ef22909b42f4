//! Compiles the drand wire protocol (proto/) into Rust with protox, a protobuf compiler in pure
//! Rust: no protoc is needed on any machine that builds the node.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/drand/common.proto",
        "proto/drand/protocol.proto",
        "proto/drand/api.proto",
        "proto/dkg/dkg.proto",
        "proto/dkg/dkg_public.proto",
        "proto/control/control.proto",
        "proto/grpc/health/v1/health.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
