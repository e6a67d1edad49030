//! Compiles the protos with a vendored `protoc`, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[
                "tollgate/admin/v1/admin.proto",
                "tollgate/admin/v1/usage_query.proto",
                "tollgate/admin/v1/auth.proto",
                "tollgate/admin/v1/guardrails.proto",
                "tollgate/admin/v1/billing.proto",
                "tollgate/sync/v1/sync.proto",
                "tollgate/admin/v1/cache.proto",
                "tollgate/admin/v1/dp_groups.proto",
                "tollgate/admin/v1/dashboard.proto",
                "tollgate/admin/v1/status.proto",
                "tollgate/admin/v1/rate_limits.proto",
                "tollgate/admin/v1/audit.proto",
            ],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=tollgate");
    Ok(())
}
