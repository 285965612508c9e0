//! `rediss://` and `valkeys://`: TLS is configured from the URL, and the lock works through
//! a real TLS connection. The test Valkey speaks plain TCP (the installed server is built
//! without TLS), so a rustls front with a throwaway CA terminates TLS in front of it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use dev_services::{unique_name, urls_for_test};
use idenfy_core::{Environment, RecreateLock, RowId};
use lock_valkey::{ValkeyLock, ValkeyOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};

fn options() -> ValkeyOptions {
    ValkeyOptions {
        connect_wait: Duration::ZERO,
        ..ValkeyOptions::default()
    }
}

/// A port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Needs no server: the scheme alone decides whether the connections use TLS.
#[tokio::test]
async fn the_url_scheme_decides_tls() {
    let port = closed_port();
    for (scheme, tls) in [
        ("redis", false),
        ("valkey", false),
        ("rediss", true),
        ("valkeys", true),
    ] {
        let lock = ValkeyLock::connect(
            &format!("{scheme}://127.0.0.1:{port}"),
            Environment::Live,
            options(),
        )
        .await
        .expect("a valid URL");
        assert_eq!(lock.uses_tls(), tls, "{scheme}://");
        lock.shutdown().await;
    }
}

/// Custom roots that hold no certificate are a configuration error, not a silent fallback
/// to the system's roots.
#[tokio::test]
async fn tls_roots_without_a_certificate_are_refused() {
    let options = ValkeyOptions {
        tls_root_certs_pem: Some(b"not a certificate".to_vec()),
        ..options()
    };
    let result = ValkeyLock::connect(
        &format!("rediss://127.0.0.1:{}", closed_port()),
        Environment::Live,
        options,
    )
    .await;
    assert!(
        matches!(result, Err(lock_valkey::Error::TlsRoots(_))),
        "{result:?}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, server chain, key).
fn certificates() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    (
        ca_cert.pem(),
        vec![server_cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    )
}

/// Terminates TLS on a loopback port and forwards the plaintext to `upstream`; counts the
/// handshakes that completed.
async fn tls_front(
    upstream: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, upstream, counted) =
                (acceptor.clone(), upstream.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return; // a client that refused our certificate
                };
                counted.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut plain) = TcpStream::connect(upstream.as_str()).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, handshakes, task)
}

#[tokio::test]
async fn rediss_reaches_valkey_through_tls_and_verifies_the_server() {
    let Some(urls) =
        urls_for_test("lock-valkey tls::rediss_reaches_valkey_through_tls_and_verifies_the_server")
    else {
        return;
    };
    // redis://[credentials@]host:port[/db] → the same behind the TLS front.
    let rest = urls
        .valkey_url
        .strip_prefix("redis://")
        .expect("the test Valkey has a redis:// URL");
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, upstream) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let (ca_pem, chain, key) = certificates();
    let (port, handshakes, front) = tls_front(upstream, chain, key).await;
    let url = format!("rediss://{credentials}127.0.0.1:{port}/{db}");

    let lock = ValkeyLock::connect(
        &url,
        Environment::Live,
        ValkeyOptions {
            tls_root_certs_pem: Some(ca_pem.into_bytes()),
            ..ValkeyOptions::default()
        },
    )
    .await
    .expect("connect")
    .with_key_prefix(format!("{}:", unique_name("tls")));
    assert!(lock.uses_tls());
    lock.ping().await.expect("PING over TLS");
    let row = RowId::generate(idenfy_core::conformance::fixtures::now());
    let guard = lock
        .acquire(&row, Duration::from_secs(10))
        .await
        .expect("reachable over TLS")
        .expect("free");
    assert!(
        lock.acquire(&row, Duration::from_secs(10))
            .await
            .expect("reachable over TLS")
            .is_none(),
        "held"
    );
    assert!(lock.release(&guard).await.expect("reachable over TLS"));
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "the commands went through the TLS front"
    );
    lock.shutdown().await;

    // The system's roots do not know the throwaway CA: the server is verified, so the lock
    // stays unavailable instead of talking to an unknown server.
    let before = handshakes.load(Ordering::SeqCst);
    let untrusting = ValkeyLock::connect(&url, Environment::Live, options())
        .await
        .expect("a valid URL");
    assert!(untrusting.uses_tls());
    let refused = untrusting.ping().await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        before,
        "no handshake completed with an untrusted certificate"
    );
    untrusting.shutdown().await;
    front.abort();
}
