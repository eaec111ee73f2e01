//! Generates the protobuf messages of the node registry's contract from the `.proto` file, with
//! a compiler written in Rust (protox): building nodegrid needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/nodegrid/registry/v1/registry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("registry_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
