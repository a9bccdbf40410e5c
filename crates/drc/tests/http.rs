//! The daemon's HTTP listener locked down (issue #17 item 3): HTTPS with a certificate from a
//! test CA, a bearer token on every endpoint but `/livez` and `/readyz`, and `drc status`
//! reading the daemons through both.

use std::time::Duration;

use drc_route::client::HttpClient;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::cluster::{Cluster, CONVERGE};

const TOKEN: &str = "a-test-token-0123456789abcdef";

/// A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem).
fn pki(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "drc http test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = p.signed_by(&key, &issuer).expect("cert").pem();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("pem");
        path.display().to_string()
    };
    (
        write("ca.pem", &ca_pem),
        write("http.pem", &cert),
        write("http-key.pem", &key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_a_bearer_token_guard_every_endpoint_but_liveness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = pki(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let extra = format!(
        "[http]\ntoken_file = \"{}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\ntls_ca = \"{ca}\"\n",
        token_file.display()
    );
    let mut cl = Cluster::new(
        "https",
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "auto",
        &extra,
    )
    .await;
    cl.start_all();
    let config = drc_config::Config::load(&cl.config).expect("config");
    let with_token = HttpClient::new(&config.http).expect("client");
    let mut no_token_http = config.http.clone();
    no_token_http.token = None;
    let no_token = HttpClient::new(&no_token_http).expect("client");
    let addr = format!("127.0.0.1:{}", cl.ports[0]);
    // Ready once every link runs; /readyz needs no token.
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if let Ok((200, v)) = no_token.get_json(&addr, "/readyz").await {
            assert_eq!(v["ready"], true);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready\n{}",
            cl.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = no_token.get_json(&addr, "/livez").await.expect("livez");
    assert_eq!((code, v["live"].as_bool()), (200, Some(true)));
    // Everything else needs the token.
    for path in ["/health", "/v1/routes"] {
        let (code, v) = no_token.get_json(&addr, path).await.expect("answer");
        assert_eq!(code, 401, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("Bearer")),
            "{v}"
        );
    }
    let (code, v) = with_token.get_json(&addr, "/health").await.expect("health");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ok"], true);
    // A wrong token is refused like none.
    let mut wrong_http = config.http.clone();
    wrong_http.token = Some(drc_config::Secret::new("a-test-token-0123456789abcdeX"));
    let wrong = HttpClient::new(&wrong_http).expect("client");
    assert_eq!(
        wrong.get_json(&addr, "/health").await.expect("answer").0,
        401
    );
    // Plain HTTP to the HTTPS port gets nothing.
    assert!(drc_route::centers::http_get_json(&addr, "/livez")
        .await
        .is_err());
    // drc status reads every daemon over HTTPS with the token. Only a's readiness was waited
    // for above: b's and c's links may still be starting, so ask until all six run.
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let (code, out) = loop {
        let (code, out) = cl.drc(&["status"]);
        if out.matches("running").count() == 6 || tokio::time::Instant::now() > deadline {
            break (code, out);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("unknown"), "{out}");
    assert_eq!(out.matches("running").count(), 6, "{out}");
}
