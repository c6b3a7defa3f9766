//! `thanos.info.Info/Info` on the gRPC port, as Thanos Query calls it to discover a receiver:
//! component `receive` and one label set per tenant that holds data, with the external labels;
//! and `grpc.health.v1.Health`, following readiness.

use bytes::Bytes;
use e2e::{Receiver, post_v1};
use prost::Message;
use receiver::grpc::{INFO_PATH, RawCodec};
use receiver::wire::info::InfoResponse;
use receiver::wire::messages::{snappy, v1};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn info(grpc_port: u16) -> Result<InfoResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(grpc_port).await);
    grpc.ready().await.unwrap();
    let response = grpc
        .unary(
            tonic::Request::new(Bytes::new()),
            http::uri::PathAndQuery::from_static(INFO_PATH),
            RawCodec,
        )
        .await?;
    Ok(InfoResponse::decode(response.into_inner()).expect("an InfoResponse"))
}

fn label_sets(r: &InfoResponse) -> Vec<Vec<(String, String)>> {
    r.label_sets
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_health_describe_the_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(
        &tmp.path().join("data"),
        &["--label=cluster=\"eu-1\"".into()],
    );
    recv.wait_ready(&client).await;
    let health = HealthClient::new(e2e::grpc_channel(recv.grpc_port).await);
    e2e::eventually(
        std::time::Duration::from_secs(5),
        "gRPC health to follow readiness",
        || {
            let mut health = health.clone();
            async move {
                let r = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .ok()?;
                (r.into_inner().status == ServingStatus::Serving as i32).then_some(())
            }
        },
    )
    .await;
    let empty = info(recv.grpc_port).await.unwrap();
    assert_eq!(empty.component_type, "receive");
    assert!(
        empty.label_sets.is_empty(),
        "no data, no label set: {empty:?}"
    );

    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(
            &[("__name__", "up")],
            &[(1_700_000_000_000, 1.0)],
        )],
        metadata: vec![],
    });
    for tenant in [Some("team-a"), None] {
        let (status, text) = post_v1(&client, &recv.write_url(), body.clone(), tenant).await;
        assert_eq!(status, 200, "{text}");
    }
    let r = info(recv.grpc_port).await.unwrap();
    let set = |tenant: &str| {
        vec![
            ("cluster".to_string(), "eu-1".to_string()),
            ("replica".to_string(), "e2e".to_string()),
            ("tenant_id".to_string(), tenant.to_string()),
        ]
    };
    assert_eq!(label_sets(&r), vec![set("default-tenant"), set("team-a")]);
    assert!(recv.terminate().success(), "{}", recv.log_text());
}
