//! Compiles `proto/` for the `grpc` feature: protox parses the files (pure
//! Rust, no `protoc`), tonic-prost-build generates the messages and the
//! server traits into `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "grpc")]
    grpc()?;
    Ok(())
}

#[cfg(feature = "grpc")]
fn grpc() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: [&str; 10] = [
        "proto/yandex/cloud/iam/v1/api_key_service.proto",
        "proto/yandex/cloud/operation/operation_service.proto",
        "proto/yandex/cloud/endpoint/api_endpoint_service.proto",
        "proto/apikeys/v1/operation.proto",
        "proto/google/rpc/status.proto",
        "proto/yandex/cloud/iam/v1/api_key.proto",
        "proto/yandex/cloud/iam/v1/service_account_service.proto",
        "proto/yandex/cloud/resourcemanager/v1/folder_service.proto",
        "proto/yandex/cloud/resourcemanager/v1/cloud_service.proto",
        "proto/yandex/cloud/organizationmanager/v1/organization_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(FILES, ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
