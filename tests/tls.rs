//! TLS: a node serving gRPC over rustls with a certificate from a CA made in the test; a
//! client that trusts that CA connects, one that trusts another CA, or speaks plain text,
//! is refused.

use std::path::Path;
use std::time::Duration;

use fairtrail_client::proto;
use fairtrail_client::rpc::NodeClient;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::time::timeout;

use crate::util::{fairtrail, TestNode};

/// A certificate authority and a server certificate for 127.0.0.1 it signed, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

/// Connects trusting `ca`, and asks for the checkpoint.
async fn checkpoint_with_ca(url: &str, ca: &Path) -> Result<proto::GetCheckpointResponse, String> {
    let attempt = async {
        let mut client = NodeClient::connect_with_ca(url, Some(ca))
            .await
            .map_err(|e| format!("{e:#}"))?;
        client.checkpoint().await.map_err(|e| format!("{e:#}"))
    };
    timeout(Duration::from_secs(20), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// One HTTPS GET over a fresh connection trusting `ca_pem`: the raw response.
async fn https_get(addr: std::net::SocketAddr, ca_pem: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    timeout(Duration::from_secs(20), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_trusts_only_the_right_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = pki();
    let other = pki();
    let (ca, other_ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("other-ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca, &good.ca_pem).expect("write");
    std::fs::write(&other_ca, &other.ca_pem).expect("write");
    std::fs::write(&cert, &good.cert_pem).expect("write");
    write_private(&key, &good.key_pem);
    let args = vec![
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ];
    let node = TestNode::start_with_args(|_| {}, args).await;
    let url = node.url();
    assert!(url.starts_with("https://"), "{url}");

    let answer = checkpoint_with_ca(&url, &ca)
        .await
        .expect("a client trusting the CA connects");
    assert!(answer.checkpoint.contains("\n0\n"), "{}", answer.checkpoint);

    let refused = checkpoint_with_ca(&url, &other_ca).await;
    assert!(
        refused.is_err(),
        "a client trusting another CA must be refused"
    );

    let plain = url.replacen("https://", "http://", 1);
    let plain_result = timeout(Duration::from_secs(20), async {
        let mut client = NodeClient::connect(&plain)
            .await
            .map_err(|e| e.to_string())?;
        client.checkpoint().await.map_err(|e| e.to_string())
    })
    .await;
    assert!(
        !matches!(plain_result, Ok(Ok(_))),
        "plain text must not be served"
    );

    // The HTTP side serves the same certificate.
    let healthz = https_get(node.http_addr(), &good.ca_pem, "/healthz")
        .await
        .expect("HTTPS with the right CA");
    assert!(
        healthz.starts_with("HTTP/1.1 200") && healthz.ends_with("ok\n"),
        "{healthz}"
    );
    assert!(
        https_get(node.http_addr(), &other.ca_pem, "/healthz")
            .await
            .is_err(),
        "another CA must be refused"
    );

    // The CLI takes the CA with --ca-cert.
    let state = dir.path().join("state.json");
    let out = fairtrail(
        &[
            "--node",
            &url,
            "--ca-cert",
            &ca.display().to_string(),
            "--state",
            &state.display().to_string(),
            "checkpoint",
        ],
        &[],
    )
    .await;
    out.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_key_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &good.cert_pem).expect("write");
    std::fs::write(&key, &good.key_pem).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let output = tokio::process::Command::new(&crate::util::binaries().node)
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ])
        .output();
    let output = timeout(Duration::from_secs(30), output)
        .await
        .expect("the node exits")
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("can be read by other users"), "{stderr}");
}
