//! Generates the node registry's gRPC client glue from the contract in `protocol/proto`; the
//! messages themselves are `nodegrid_protocol::registry::grpc`'s.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../protocol/proto";
    let proto = "nodegrid/registry/v1/registry.proto";
    println!("cargo:rerun-if-changed={root}/{proto}");
    let descriptors = protox::compile([proto], [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(
            ".nodegrid.registry.v1",
            "::nodegrid_protocol::registry::grpc",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
