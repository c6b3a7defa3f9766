//! TLS and mTLS on every listener with Thanos' flags: a real Prometheus writing with a client
//! certificate, strangers refused, three receivers replicating over mTLS, certificates replaced
//! under steady writes, the tenant taken from the client certificate, and `--http.config`.
//! Certificates are made here with rcgen; clients are reqwest, Prometheus and raw rustls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::certs::{Ca, Pem};
use e2e::prometheus::Prometheus;
use e2e::{Receiver, eventually, free_port, metric_sum, now_ms, ring_json, write_atomic};
use http_body_util::BodyExt as _;
use receiver::wire::messages::{snappy, v1};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const TENANT_HEADER: &str = "THANOS-TENANT";

/// A reqwest client over rustls that trusts `ca` and presents `identity`, opening a new
/// connection for every request (so each request shows the certificates in force).
fn tls_client(ca: &Path, identity: Option<&Pem>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).expect("CA"),
        )
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(&id.identity_pem()).expect("identity"));
    }
    b.build().unwrap()
}

/// A remote write 1.0 body of `n` series named `name`.
fn write_body(name: &str, n: usize) -> Vec<u8> {
    let t = now_ms();
    let timeseries = (0..n)
        .map(|i| {
            let i = i.to_string();
            v1::series(&[("__name__", name), ("i", &i)], &[(t, 1.0)])
        })
        .collect();
    snappy(&v1::WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

/// Posts a write; `Ok(status)` when an HTTP answer came back.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> Result<u16, String> {
    e2e::try_post_v1(client, url, body, tenant)
        .await
        .map(|(status, _)| status)
        .map_err(|e| format!("{e:?}"))
}

/// The certificate a TLS server on `port` presents to a fresh connection.
async fn presented_certificate(port: u16, ca: &Path, identity: &Pem, alpn: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(&identity.cert).unwrap()],
            PrivateKeyDer::from_pem_file(&identity.key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Sends a forward to a receiver's gRPC port over TLS presenting `identity` (trusting `ca`);
/// `Ok(grpc-status)` when the call got an answer, `Err` when the connection was refused.
async fn grpc_forward(
    port: u16,
    ca: &Path,
    identity: Option<&Pem>,
    name: &str,
) -> Result<String, String> {
    use receiver::tls::{ClientOptions, ClientTls, PeerConnector};
    let tls = ClientTls::new(ClientOptions {
        cert: identity.map(|p| p.cert.clone()),
        key: identity.map(|p| p.key.clone()),
        ca: Some(ca.to_path_buf()),
        min_version: "1.3".into(),
        ..ClientOptions::default()
    })
    .unwrap();
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_with_connector(PeerConnector(tls))
        .await
        .map_err(|e| format!("{e:?}"))?;
    std::future::poll_fn(|cx| tonic::codegen::Service::poll_ready(&mut channel, cx))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let req = http::Request::post(receiver::grpc::REMOTE_WRITE_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            e2e::grpc_frame(false, &e2e::forward_message(name)),
        )))
        .unwrap();
    let resp = tonic::codegen::Service::call(&mut channel, req)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if let Some(s) = resp.headers().get("grpc-status") {
        return Ok(s.to_str().unwrap().to_owned());
    }
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(collected.trailers().unwrap()["grpc-status"]
        .to_str()
        .unwrap()
        .to_owned())
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// Remote-write server TLS with client certificates verified against `ca`.
fn rw_mtls(server: &Pem, ca: &Ca) -> Vec<String> {
    vec![
        flag("remote-write.server-tls-cert", &server.cert),
        flag("remote-write.server-tls-key", &server.key),
        flag("remote-write.server-tls-client-ca", &ca.cert),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_writes_over_mtls_and_other_clients_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ours");
    let other = Ca::new(tmp.path(), "theirs");
    let server = ca.server("server", "receiver", &["127.0.0.1", "localhost"]);
    let prom_cert = ca.client("prometheus", "prometheus", None);
    let stranger = other.client("stranger", "prometheus", None);
    let mut recv = Receiver::start(&tmp.path().join("data"), &rw_mtls(&server, &ca));
    let plain = reqwest::Client::new();
    recv.wait_ready(&plain).await;
    let url = format!("https://127.0.0.1:{}/api/v1/receive", recv.rw_port);

    // Refused: plain HTTP, TLS without a certificate, a certificate from another CA.
    let plain_url = format!("http://127.0.0.1:{}/api/v1/receive", recv.rw_port);
    let attempts = [
        (
            "plain HTTP",
            post(&plain, &plain_url, write_body("intruder", 5), None).await,
        ),
        (
            "no certificate",
            post(
                &tls_client(&ca.cert, None),
                &url,
                write_body("intruder", 5),
                None,
            )
            .await,
        ),
        (
            "another CA",
            post(
                &tls_client(&ca.cert, Some(&stranger)),
                &url,
                write_body("intruder", 5),
                None,
            )
            .await,
        ),
    ];
    for (who, result) in &attempts {
        assert!(
            !matches!(result, Ok(200..=299)),
            "{who}: a write was accepted: {result:?}"
        );
    }

    // A real Prometheus with its client certificate.
    let prom = Prometheus::agent_with(
        &tmp.path().join("prom"),
        &url,
        &[],
        &format!(
            "    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
            ca.cert.display(),
            prom_cert.cert.display(),
            prom_cert.key.display()
        ),
    );
    let sent = eventually(
        Duration::from_secs(60),
        "Prometheus sending samples",
        || async {
            let text = prom.metrics(&plain).await?;
            let sent = metric_sum(&text, "prometheus_remote_storage_samples_total", &[]);
            (sent >= 500.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        metric_sum(&sent, "prometheus_remote_storage_samples_failed_total", &[]),
        0.0,
        "Prometheus failed samples; its log:\n{}",
        prom.log_text()
    );
    // Reads on the remote-write port need the certificate too.
    let series: serde_json::Value = tls_client(&ca.cert, Some(&prom_cert))
        .get(format!(
            "https://127.0.0.1:{}/api/v1/series?match[]=up",
            recv.rw_port
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!series["data"].as_array().unwrap().is_empty(), "{series}");
    assert!(
        recv.child.try_wait().unwrap().is_none(),
        "the receiver died"
    );
    assert!(recv.terminate().success());
    assert!(!recv.stored_series("default-tenant", "up").is_empty());
    assert!(
        recv.stored_series("default-tenant", "intruder").is_empty(),
        "a refused client's series was stored"
    );
}

/// Three receivers, RF=3, gRPC with mTLS between them and forwards over TLS; the remote-write
/// port with mTLS too. Every receiver presents `pem` as server and as client.
struct TlsCluster {
    receivers: Vec<Receiver>,
}

impl TlsCluster {
    async fn start(root: &Path, ca: &Ca, pem: &Pem) -> TlsCluster {
        let ports: Vec<[u16; 3]> = (0..3)
            .map(|_| [free_port(), free_port(), free_port()])
            .collect();
        let endpoints: Vec<String> = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[2]))
            .collect();
        let ring = root.join("hashrings.json");
        write_atomic(&ring, &ring_json(&endpoints, "ketama"));
        let mut receivers = Vec::new();
        for (i, [rw, http, grpc]) in ports.iter().copied().enumerate() {
            let mut flags = vec![
                flag("receive.hashrings-file", &ring),
                "--receive.replication-factor=3".to_owned(),
                format!("--receive.local-endpoint={}", endpoints[i]),
                format!("--label=replica=\"r{i}\""),
                flag("grpc-server-tls-cert", &pem.cert),
                flag("grpc-server-tls-key", &pem.key),
                flag("grpc-server-tls-client-ca", &ca.cert),
                "--remote-write.client-tls-secure".to_owned(),
                flag("remote-write.client-tls-cert", &pem.cert),
                flag("remote-write.client-tls-key", &pem.key),
                flag("remote-write.client-tls-ca", &ca.cert),
            ];
            flags.extend(rw_mtls(pem, ca));
            receivers.push(Receiver::start_on(
                &root.join(format!("r{i}")),
                rw,
                http,
                grpc,
                &flags,
            ));
        }
        let plain = reqwest::Client::new();
        for r in &mut receivers {
            r.wait_ready(&plain).await;
        }
        TlsCluster { receivers }
    }

    fn url(&self, i: usize) -> String {
        format!(
            "https://127.0.0.1:{}/api/v1/receive",
            self.receivers[i].rw_port
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_receivers_replicate_over_mtls_and_a_peer_without_a_valid_certificate_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ours");
    let other = Ca::new(tmp.path(), "theirs");
    let peer = ca.server("peer", "receiver", &["127.0.0.1", "localhost"]);
    let mut cluster = TlsCluster::start(tmp.path(), &ca, &peer).await;
    let client = tls_client(&ca.cert, Some(&peer));
    assert_eq!(
        post(
            &client,
            &cluster.url(0),
            write_body("replicated", 100),
            None
        )
        .await,
        Ok(200)
    );
    let plain = reqwest::Client::new();
    for r in &cluster.receivers {
        eventually(
            Duration::from_secs(10),
            "100 series on every replica",
            || async { (e2e::head_series(&plain, r).await == 100).then_some(()) },
        )
        .await;
    }

    let grpc = cluster.receivers[1].grpc_port;
    let no_cert = grpc_forward(grpc, &ca.cert, None, "forged").await;
    let their_cert = other.client("forger", "receiver", None);
    let wrong_ca = grpc_forward(grpc, &ca.cert, Some(&their_cert), "forged").await;
    for (who, result) in [("no certificate", &no_cert), ("another CA", &wrong_ca)] {
        assert!(
            !result.as_ref().is_ok_and(|s| s == "0"),
            "{who}: a forward was accepted: {result:?}"
        );
    }
    // The same call with a valid certificate goes through, so the refusals above are the
    // certificates' doing.
    assert_eq!(
        grpc_forward(grpc, &ca.cert, Some(&peer), "genuine").await,
        Ok("0".to_owned())
    );
    let r1 = &mut cluster.receivers[1];
    assert!(r1.terminate().success());
    assert!(r1.stored_series("default-tenant", "forged").is_empty());
    assert_eq!(r1.stored_series("default-tenant", "genuine").len(), 1);
    assert_eq!(r1.stored_series("default-tenant", "replicated").len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_replaced_during_steady_writes_fail_no_write() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ours");
    let peer = ca.server("peer", "receiver", &["127.0.0.1", "localhost"]);
    let cluster = TlsCluster::start(tmp.path(), &ca, &peer).await;
    let client_cert = ca.client("prometheus", "prometheus", None);
    let client = tls_client(&ca.cert, Some(&client_cert));
    let old = peer.der();

    // Writes every 50 ms for 8 s, each on a new connection, round-robin over the receivers;
    // after 3 s every receiver's certificate and key are replaced, as cert-manager does.
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let writer = tokio::spawn(async move {
        let mut results = Vec::new();
        let until = Instant::now() + Duration::from_secs(8);
        let mut n = 0usize;
        while Instant::now() < until {
            let started = Instant::now();
            let status = post(&client, &urls[n % 3], write_body("steady", 20), None).await;
            results.push((status, started.elapsed()));
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        results
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = ca.server("fresh", "receiver", &["127.0.0.1", "localhost"]);
    // Renamed into place one file after the other: for a moment the key does not match the
    // certificate, which must not matter.
    std::fs::rename(&fresh.cert, &peer.cert).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&fresh.key, &peer.key).unwrap();
    let new = peer.der();
    assert_ne!(old, new);

    let results = writer.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(results.len() > 50, "only {} writes", results.len());
    // New connections see the new certificate, on both ports of every receiver.
    for r in &cluster.receivers {
        assert_eq!(
            presented_certificate(r.rw_port, &ca.cert, &client_cert, b"http/1.1").await,
            new,
            "remote-write port"
        );
        assert_eq!(
            presented_certificate(r.grpc_port, &ca.cert, &peer, b"h2").await,
            new,
            "gRPC port"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_names_the_tenant_whatever_the_header_says() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ours");
    let server = ca.server("server", "receiver", &["127.0.0.1"]);
    let team_a = ca.client("team-a", "team-a", Some("org-x"));
    let mut flags = rw_mtls(&server, &ca);
    flags.push("--receive.tenant-certificate-field=commonName".into());
    let mut recv = Receiver::start(&tmp.path().join("data"), &flags);
    recv.wait_ready(&reqwest::Client::new()).await;
    let url = format!("https://127.0.0.1:{}/api/v1/receive", recv.rw_port);
    let client = tls_client(&ca.cert, Some(&team_a));
    assert_eq!(
        post(&client, &url, write_body("from_a", 3), Some("team-b")).await,
        Ok(200)
    );
    // Reads are the certificate's tenant's too.
    let series: serde_json::Value = client
        .get(format!(
            "https://127.0.0.1:{}/api/v1/series?match[]=from_a",
            recv.rw_port
        ))
        .header(TENANT_HEADER, "team-b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(series["data"].as_array().unwrap().len(), 3, "{series}");
    assert!(recv.terminate().success());
    assert_eq!(recv.stored_series("team-a", "from_a").len(), 3);
    assert!(recv.stored_series("team-b", "from_a").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_config_puts_tls_and_basic_auth_on_the_ops_port() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ours");
    let server = ca.server("server", "receiver", &["127.0.0.1"]);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = tmp.path().join("web.yml");
    // Relative paths are relative to the file, as Prometheus reads them.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: {hash}\n",
            server.cert.file_name().unwrap().to_str().unwrap(),
            server.key.display()
        ),
    )
    .unwrap();
    let recv = Receiver::start(&tmp.path().join("data"), &[flag("http.config", &web)]);
    let client = tls_client(&ca.cert, None);
    let url = format!("https://127.0.0.1:{}/-/ready", recv.http_port);
    let ready = eventually(Duration::from_secs(30), "ready over TLS", || async {
        let r = client
            .get(&url)
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(ready.headers()["x-frame-options"], "deny");
    let denied = client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["www-authenticate"], "Basic");
    let wrong = client
        .get(&url)
        .basic_auth("alice", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/-/ready", recv.http_port))
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status() == 200),
        "plain HTTP answered"
    );
}
