//! gRPC validation with a real tonic server and client: a decoded prost message that fails its `Validate`
//! rules is answered `INVALID_ARGUMENT` with `google.rpc.BadRequest` field violations; the request firewall in
//! front of a tonic server answers trailers-only `INVALID_ARGUMENT` too.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use msec_core::SecurityContext;
use msec_validate::FirewallLayer;
use msec_validate::grpc::ValidateRequest;
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tonic_types::StatusExt;
use validator::Validate;

/// What `tonic_prost_build` generates for `message CreateOrder { string sku = 1; repeated Line lines = 2; }`,
/// plus the `Validate` derive and rules a `type_attribute` / `field_attribute` adds.
#[derive(Clone, PartialEq, prost::Message, Validate)]
pub struct CreateOrder {
    #[prost(string, tag = "1")]
    #[validate(length(min = 1, max = 8))]
    pub sku: String,
    #[prost(message, repeated, tag = "2")]
    #[validate(nested)]
    pub lines: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message, Validate)]
pub struct Line {
    #[prost(uint32, tag = "1")]
    #[validate(range(min = 1, max = 10))]
    pub qty: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Created {
    #[prost(string, tag = "1")]
    pub sku: String,
}

/// A hand-written `msec.test.v1.Orders` service with one unary method, as tonic's codegen would produce.
#[derive(Clone)]
struct Orders;

impl NamedService for Orders {
    const NAME: &'static str = "msec.test.v1.Orders";
}

impl tower::Service<http::Request<tonic::body::Body>> for Orders {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Created, CreateOrder>::default());
            let handler = tower::service_fn(|request: tonic::Request<CreateOrder>| async move {
                // The whole of the validation a handler needs:
                let order = request.validated()?.into_inner();
                Ok::<_, Status>(tonic::Response::new(Created { sku: order.sku }))
            });
            Ok(grpc.unary(handler, req).await)
        })
    }
}

async fn start() -> Channel {
    let (incoming, addr) = msec_test_support::net::tonic_incoming().await;
    tokio::spawn(
        Server::builder()
            .layer(FirewallLayer::strict())
            .add_service(Orders)
            .serve_with_incoming(incoming),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn call(channel: &Channel, path: &'static str, msg: CreateOrder) -> Result<Created, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(msg),
            PathAndQuery::from_static(path),
            ProstCodec::<CreateOrder, Created>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn invalid_message_is_invalid_argument_with_field_violations() {
    let channel = start().await;
    let ok = call(
        &channel,
        "/msec.test.v1.Orders/Create",
        CreateOrder {
            sku: "ABC".into(),
            lines: vec![Line { qty: 2 }],
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.sku, "ABC");

    let bad = CreateOrder {
        sku: "secret-sku-too-long".into(),
        lines: vec![Line { qty: 1 }, Line { qty: 77 }],
    };
    let status = call(&channel, "/msec.test.v1.Orders/Create", bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), msec_validate::grpc::MESSAGE);
    let details = status
        .get_details_bad_request()
        .expect("google.rpc.BadRequest in grpc-status-details-bin");
    let mut got: Vec<(String, String, String)> = details
        .field_violations
        .iter()
        .map(|v| (v.field.clone(), v.reason.clone(), v.description.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("lines[1].qty".into(), "RANGE".into(), "must be between 1 and 10".into()),
            (
                "sku".into(),
                "LENGTH".into(),
                "must be between 1 and 8 characters long".into()
            ),
        ]
    );
    let all = format!("{status:?}");
    assert!(
        !all.contains("secret-sku") && !all.contains("77"),
        "values echoed: {all}"
    );
}

#[tokio::test]
async fn firewall_answers_grpc_trailers_only() {
    let channel = start().await;
    let status = call(
        &channel,
        "/msec.test.v1.Orders/%2e%2e",
        CreateOrder {
            sku: "A".into(),
            lines: vec![],
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("dot_segment"), "{}", status.message());
}

#[test]
fn validated_records_a_decision() {
    let ctx = SecurityContext::new();
    let mut req = tonic::Request::new(CreateOrder {
        sku: String::new(),
        lines: vec![],
    });
    req.extensions_mut().insert(ctx.clone());
    assert!(req.validated().is_err());
    let d = ctx.decisions();
    assert_eq!((d[0].layer, d[0].code.as_str()), ("validate", "validation_failed"));
}
