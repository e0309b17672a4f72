//! Compiles the test protos with protox (pure Rust): no `protoc` needed on a newcomer's machine.
//!
//! `orders.proto` (the `tonic_mtls` example) gets `validator::Validate` derived on its request messages, with one
//! rule per field, through tonic-prost-build's type and field attributes.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/echo.proto", "proto/orders.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".shop.v1.CreateOrderRequest", "#[derive(validator::Validate)]")
        .field_attribute(
            ".shop.v1.CreateOrderRequest.sku",
            "#[validate(length(min = 1, max = 32))]",
        )
        .field_attribute(
            ".shop.v1.CreateOrderRequest.quantity",
            "#[validate(range(min = 1, max = 1000))]",
        )
        .field_attribute(".shop.v1.CreateOrderRequest.customer_email", "#[validate(email)]")
        .type_attribute(".shop.v1.GetOrderRequest", "#[derive(validator::Validate)]")
        .field_attribute(".shop.v1.GetOrderRequest.id", "#[validate(length(min = 1, max = 64))]")
        .compile_fds(fds)?;
    Ok(())
}
