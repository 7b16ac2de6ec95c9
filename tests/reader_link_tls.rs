//! The reader transports Verifone's harness settles (vipa-protocol.md §0) beyond plain TCP:
//! TLS on TCP (`tls://HOST[:PORT]?ca=FILE`, the reader's certificate checked) and listen
//! mode (`tcp-listen://`: the bridge is the server and the reader connects out). The reader
//! is the real `vipa-sim` binary over TCP; a TLS front (rustls) or a connecting-out relay
//! stands between it and `emvbridge device info`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

/// `vipa-sim --tcp 127.0.0.1:0`, killed on drop.
struct Sim {
    child: Child,
    addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim() -> Sim {
    let mut child = Command::new(common::vipa_sim())
        .args(["--tcp", "127.0.0.1:0", "--device", "ux301"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vipa-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    Sim {
        child,
        addr: v["tcp"].as_str().unwrap().to_owned(),
    }
}

async fn device_info(device: &str) -> (i32, String, String) {
    let device = device.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_emvbridge"))
            .args([
                "device",
                "info",
                "--json",
                "--timeout",
                "5",
                "--device",
                &device,
            ])
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("device info finishes")
        .unwrap()
        .expect("run emvbridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(tls_file(name))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A TLS front of `upstream` (the simulated reader) on loopback, presenting `reader.pem`;
/// with `client_ca`, it asks for the client's certificate and requires it to chain there.
async fn tls_front(upstream: String, client_ca: Option<&str>) -> u16 {
    let key = PrivateKeyDer::from_pem_file(tls_file("reader-key.pem")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in pem_certs(ca) {
                roots.add(c).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(pem_certs("reader.pem"), key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = front.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = front.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A handshake refused by the client simply ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_info_over_tls_checks_the_readers_certificate() {
    let sim = sim();
    let port = tls_front(sim.addr.clone(), None).await;
    let ca = tls_file("reader.pem");
    let (code, out, err) =
        device_info(&format!("tls://localhost:{port}?ca={}", ca.display())).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("UX301") && out.contains("6.8.2.24"), "{out}");
    // The same front with a certificate the bridge was not told to trust: refused.
    let other = tls_file("other.pem");
    let (code, out, err) =
        device_info(&format!("tls://localhost:{port}?ca={}", other.display())).await;
    assert_eq!(code, 2, "{out}\n{err}");
    // No CA named: a usage error before any connection.
    let (code, _, err) = device_info(&format!("tls://localhost:{port}")).await;
    assert_ne!(code, 0);
    assert!(err.contains("ca="), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_asks_for_the_bridges_certificate_gets_it() {
    let sim = sim();
    let port = tls_front(sim.addr.clone(), Some("client.pem")).await;
    let ca = tls_file("reader.pem").display().to_string();
    let (cert, key) = (tls_file("client.pem"), tls_file("client-key.pem"));
    let with = |cert: &Path, key: &Path| {
        format!(
            "tls://localhost:{port}?ca={ca}&cert={}&key={}",
            cert.display(),
            key.display()
        )
    };
    let (code, out, err) = device_info(&with(&cert, &key)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("UX301"), "{out}");
    // Without a certificate, or with one the reader does not trust: no link.
    let (code, out, err) = device_info(&format!("tls://localhost:{port}?ca={ca}")).await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(!out.contains("UX301"), "{out}");
    let (code, out, err) =
        device_info(&with(&tls_file("reader.pem"), &tls_file("reader-key.pem"))).await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(!out.contains("UX301"), "{out}");
    // A key file that holds no key: refused naming the file, not quoting it.
    let (code, out, err) = device_info(&with(&cert, &cert)).await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("client.pem") && err.contains("no usable private key"),
        "{err}"
    );
    assert!(!err.contains("BEGIN"), "{err}");
    // Half a client certificate is a usage error before any connection.
    let (code, _, err) = device_info(&format!(
        "tls://localhost:{port}?ca={ca}&cert={}",
        cert.display()
    ))
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("cert=FILE and key=FILE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_mode_takes_the_reader_that_connects_out() {
    let sim = sim();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    // The "reader": connects out to the bridge and relays to the simulator.
    let upstream = sim.addr.clone();
    let relay = tokio::spawn(async move {
        for _ in 0..500 {
            if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let mut plain = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut out, &mut plain).await;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    let (code, out, err) = device_info(&format!("tcp-listen://127.0.0.1:{port}")).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("UX301"), "{out}");
    assert!(relay.await.unwrap(), "the reader connected out");
}
