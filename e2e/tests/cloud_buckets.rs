//! `type: GCS` and `type: AZURE` buckets from the same `objstore.yml` keys Thanos reads, against
//! emulators that install here: gcp-storage-emulator (PyPI) and Azurite (npm). A
//! receiver's head is uploaded on shutdown and every block lands in the bucket, `meta.json` last.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::tools::tool;
use e2e::{Receiver, eventually, free_port, load_request, now_ms, post_v1};
use http_body_util::BodyExt as _;

/// Serves `upstream` on a new loopback port, adding the `ETag` header that real GCS sends on
/// every upload and gcp-storage-emulator leaves out (object_store requires it). Nothing else of
/// a request or an answer is changed.
async fn with_etags(upstream: String) -> u16 {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let url = format!("{upstream}{}", parts.uri);
                        let mut forwarded =
                            client.request(parts.method.clone(), url).body(body.clone());
                        for (name, value) in &parts.headers {
                            if name != http::header::HOST {
                                forwarded = forwarded.header(name, value);
                            }
                        }
                        let answer = forwarded.send().await.unwrap();
                        let mut response = http::Response::builder().status(answer.status());
                        let has_etag = answer.headers().contains_key(http::header::ETAG);
                        for (name, value) in answer.headers() {
                            response = response.header(name, value);
                        }
                        if parts.method == http::Method::PUT && !has_etag {
                            let tag = xxhash_rust::xxh64::xxh64(&body, 0);
                            response = response.header(http::header::ETAG, format!("\"{tag:x}\""));
                        }
                        let bytes = answer.bytes().await.unwrap();
                        Ok::<_, std::convert::Infallible>(
                            response.body(http_body_util::Full::new(bytes)).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// An emulator process, killed on drop.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a receiver with `objstore`, writes, stops it (the head is cut and uploaded) and returns
/// the ULIDs of the blocks it wrote.
async fn upload_on_shutdown(dir: &Path, objstore: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let file = dir.join("objstore.yml");
    std::fs::write(&file, objstore).unwrap();
    let mut recv = Receiver::start(
        &dir.join("data"),
        &[format!("--objstore.config-file={}", file.display())],
    );
    recv.wait_ready(&client).await;
    for i in 0..3 {
        let (s, b) = post_v1(
            &client,
            &recv.write_url(),
            load_request("cloud", 20, now_ms() + i),
            None,
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let exited = recv.terminate();
    let text = recv.log_text();
    assert!(exited.success(), "{text}");
    assert!(text.contains("block uploaded"), "{text}");
    e2e::block_dirs(&dir.join("data/default-tenant"))
        .iter()
        .map(|b| b.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_upload_to_a_gcs_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let _server = Emulator(
        Command::new(tool("gcp-storage-emulator"))
            .args([
                "start",
                "--host",
                "127.0.0.1",
                "--in-memory",
                "--default-bucket",
                "thanos",
            ])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gcp-storage-emulator (scripts/setup.sh test installs it)"),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "the emulator's bucket", || async {
        let r = client
            .get(format!("{base}/storage/v1/b/thanos/o"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // A service account key as Thanos takes it (`service_account`, the JSON itself); the two last
    // fields point object_store's client at the emulator without OAuth.
    let key = serde_json::json!({
        "type": "service_account", "project_id": "e2e", "private_key_id": "k",
        "private_key": "", "client_email": "e2e@e2e.iam.gserviceaccount.com",
        "gcs_base_url": format!("http://127.0.0.1:{}", with_etags(base.clone()).await),
        "disable_oauth": true,
    });
    let objstore = format!(
        "type: GCS\nconfig:\n  bucket: thanos\n  service_account: '{}'\n",
        key
    );
    let blocks = upload_on_shutdown(tmp.path(), &objstore).await;
    assert_eq!(blocks.len(), 1);
    let listing: serde_json::Value = client
        .get(format!("{base}/storage/v1/b/thanos/o"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for file in ["meta.json", "index", "chunks/000001"] {
        let want = format!("{}/{file}", blocks[0]);
        assert!(names.contains(&want.as_str()), "{want} not in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_upload_to_an_azure_container() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let _server = Emulator(
        Command::new(tool("azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--skipApiVersionCheck",
                "--inMemoryPersistence",
                "--silent",
                "--disableTelemetry",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob (scripts/setup.sh test installs it)"),
    );
    // Azurite's well-known development account, as Thanos users point it at Azurite.
    let account = "devstoreaccount1";
    let key =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let endpoint = format!("http://127.0.0.1:{port}/{account}");
    eventually(Duration::from_secs(60), "Azurite to answer", || async {
        client
            .get(format!("{endpoint}?comp=list"))
            .send()
            .await
            .ok()
            .map(drop)
    })
    .await;
    let objstore = format!(
        "type: AZURE\nconfig:\n  storage_account: {account}\n  storage_account_key: {key}\n  container: thanos\n  endpoint: {endpoint}\n"
    );
    // The container must exist: create it with Azure's own Python SDK (signed requests).
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};"
    );
    let sdk = |code: String| {
        let out = Command::new(tool("python3"))
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    sdk(format!(
        "from azure.storage.blob import BlobServiceClient\nBlobServiceClient.from_connection_string({connection:?}).create_container('thanos')"
    ));
    let blocks = upload_on_shutdown(tmp.path(), &objstore).await;
    assert_eq!(blocks.len(), 1);
    let names = sdk(format!(
        "from azure.storage.blob import BlobServiceClient\nc = BlobServiceClient.from_connection_string({connection:?}).get_container_client('thanos')\nprint('\\n'.join(b.name for b in c.list_blobs()))"
    ));
    for file in ["meta.json", "index", "chunks/000001"] {
        let want = format!("{}/{file}", blocks[0]);
        assert!(names.lines().any(|l| l == want), "{want} not in {names}");
    }
}
