//! The container images as a cluster runs them: built by `scripts/build-images.sh` (what
//! `make images` runs) from this build's binaries, unpacked with umoci, and run from the unpacked
//! root filesystem in a chroot as the image's user: `--version`, then a short ingest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::kube::workspace_root;
use e2e::tools::tool;
use e2e::{eventually, free_port, load_request, now_ms, post_v1, signal, wait_timeout};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the images into `out` and returns the OCI layout.
fn build_images(out: &Path) -> PathBuf {
    let bin_dir = e2e::bin("thanos-receiver").parent().unwrap().to_path_buf();
    let status = Command::new("bash")
        .arg(workspace_root().join("scripts/build-images.sh"))
        .arg(&bin_dir)
        .arg(out)
        .env("PATH", path_with(&tool("umoci")))
        .stdout(Stdio::null())
        .status()
        .expect("running build-images.sh");
    assert!(status.success(), "build-images.sh failed: {status}");
    out.join("oci")
}

/// `PATH` with the directory of `tool` in front.
fn path_with(tool: &Path) -> String {
    format!(
        "{}:{}",
        tool.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Unpacks `tag` of `layout` into `dir`; returns the image's process config (runtime spec).
fn unpack(layout: &Path, tag: &str, dir: &Path) -> serde_json::Value {
    let status = Command::new(tool("umoci"))
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("umoci unpack");
    assert!(status.success(), "umoci unpack {tag}: {status}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["process"].clone()
}

/// Runs `args` in `rootfs` as the image's user 65532.
fn in_image(rootfs: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg("--userspec=65532:65532").arg(rootfs).args(args);
    cmd
}

fn output(mut cmd: Command) -> String {
    let out = cmd.output().expect("running in the image");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn images_run_as_non_root_with_no_shell_and_the_thanos_entrypoints() {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_images(dir.path());
    for (tag, entrypoint) in [
        ("thanos-receiver", "/usr/bin/thanos-receiver"),
        (
            "thanos-receiver-operator",
            "/usr/bin/thanos-receiver-operator",
        ),
    ] {
        let bundle = dir.path().join(tag);
        let process = unpack(&layout, &format!("{tag}-{VERSION}"), &bundle);
        assert_eq!(process["user"]["uid"], 65532, "{tag}: {process}");
        assert_eq!(process["args"][0], entrypoint, "{tag}: {process}");
        let rootfs = bundle.join("rootfs");
        for shell in ["bin/sh", "bin/bash", "usr/bin/sh"] {
            assert!(!rootfs.join(shell).exists(), "{tag} has {shell}");
        }
        let version = output(in_image(&rootfs, &[entrypoint, "--version"]));
        assert_eq!(version.trim(), format!("{} {VERSION}", &entrypoint[9..]));
    }
    // A Thanos StatefulSet's `command: [/bin/thanos]` with `args: [receive, ...]` still starts.
    let rootfs = dir.path().join("thanos-receiver/rootfs");
    let version = output(in_image(&rootfs, &["/bin/thanos", "receive", "--version"]));
    assert!(version.starts_with("thanos-receiver "), "{version}");
}

#[tokio::test]
async fn the_receiver_image_ingests_and_cuts_blocks_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let layout = build_images(dir.path());
    let bundle = dir.path().join("receiver");
    let process = unpack(&layout, &format!("thanos-receiver-{VERSION}"), &bundle);
    let rootfs = bundle.join("rootfs");
    let (rw, grpc, http) = (free_port(), free_port(), free_port());
    // The image's default arguments, then the pod's: the data directory is the image's /data.
    let default_args: Vec<String> = process["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(default_args[1], "receive");
    let mut args: Vec<String> = default_args;
    args.extend([
        "--tsdb.path=/data/tsdb".to_owned(),
        format!("--remote-write.address=127.0.0.1:{rw}"),
        format!("--grpc-address=127.0.0.1:{grpc}"),
        format!("--http-address=127.0.0.1:{http}"),
        "--label=replica=\"image\"".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = std::fs::File::create(dir.path().join("receiver.log")).unwrap();
    let mut child = in_image(&rootfs, &args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the receiver in the image");

    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "receiver ready", || async {
        let r = client
            .get(format!("http://127.0.0.1:{http}/-/ready"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let url = format!("http://127.0.0.1:{rw}/api/v1/receive");
    let t0 = now_ms();
    for i in 0..5 {
        let (status, reason) = post_v1(
            &client,
            &url,
            load_request("image", 100, t0 + i * 1000),
            None,
        )
        .await;
        assert_eq!(status, 200, "{reason}");
    }
    let series = client
        .get(format!("http://127.0.0.1:{rw}/api/v1/series?match[]=load"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        series.matches("\"__name__\":\"load\"").count(),
        100,
        "{series}"
    );

    signal(&child, libc::SIGTERM);
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("exit after SIGTERM");
    let log = std::fs::read_to_string(dir.path().join("receiver.log")).unwrap();
    assert!(status.success(), "{status}: {log}");
    // The shutdown flush wrote a block into the image's /data, owned by the image's user.
    let tenant = rootfs.join("data/tsdb/default-tenant");
    let blocks = e2e::block_dirs(&tenant);
    assert_eq!(blocks.len(), 1, "{log}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&blocks[0]).unwrap().uid(), 65532);
}
