//! Real network parts between linkbatch and its sandbox, made by the tests over loopback: a TLS server whose
//! certificate comes from a private CA the test makes (rcgen), a CONNECT proxy, a port with nothing
//! listening, and a server that goes away mid-run and comes back. A refused certificate stops the run; an
//! absent server makes the whole run wait; no row spends an attempt or ends `failed` on either.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkbatch::sandbox::SandboxConfig;

use crate::support::{JobFile, World, count, statuses};

/// A CA and a server certificate for 127.0.0.1 and localhost that it signed, in PEM.
pub(crate) struct Authority {
    ca: String,
    cert: String,
    key: String,
}

impl Authority {
    pub(crate) fn new(name: &str) -> Authority {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut server = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &issuer).unwrap();
        Authority { ca: ca_cert.pem(), cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A sandbox that serves HTTPS with this authority's certificate.
    pub(crate) fn sandbox(&self, config: SandboxConfig) -> World {
        let tls = linkbatch::sandbox::tls::server_config(self.cert.as_bytes(), self.key.as_bytes()).unwrap();
        World::with(SandboxConfig { tls: Some(tls), ..config })
    }

    /// The CA's certificate in a file of the world's, for `SSL_CERT_FILE`.
    pub(crate) fn ca_file(&self, world: &World, name: &str) -> String {
        let path = world.path(name);
        std::fs::write(&path, &self.ca).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn rates(list: &[&str]) -> Vec<linkbatch::rate::Rate> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

#[test]
fn a_server_whose_ca_the_host_trusts_is_reached() {
    let authority = Authority::new("linkbatch staging CA");
    let world = authority.sandbox(SandboxConfig::default());
    assert!(world.base_url().starts_with("https://127.0.0.1:"));
    let ca = authority.ca_file(&world, "ca.pem");
    world.run_job("jobs/catalog-import.toml", &["--limit", "100/s"]).env("SSL_CERT_FILE", &ca).code(0);
    let rows = world.output();
    assert_eq!((count(&rows, "created"), rows.len()), (60, 60));
    assert_eq!(world.stats().creates, 60);
}

/// Regression: a certificate the client will never trust was retried like a passing fault (40 rows, 6
/// attempts each, 180 s, every row `failed`).
#[test]
fn a_certificate_no_trusted_ca_vouches_for_stops_the_run_at_once() {
    let authority = Authority::new("linkbatch staging CA");
    let world = authority.sandbox(SandboxConfig::default());
    let stranger = Authority::new("some other CA").ca_file(&world, "other.pem");
    for trust in [None, Some(stranger.as_str())] {
        let mut run = world.run_job("jobs/catalog-import.toml", &["--limit", "100/s", "--concurrency", "8"]);
        if let Some(file) = trust {
            run = run.env("SSL_CERT_FILE", file);
        }
        let started = Instant::now();
        let outcome = run.code(3);
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        let rows = world.output();
        assert_eq!(statuses(&rows), [("pending".to_owned(), 60)].into(), "{trust:?}: {}", outcome.stderr);
        let last = outcome.stderr.lines().last().unwrap();
        assert_eq!(
            last,
            "error: aborted: the server's certificate is issued by a CA this host does not trust: nothing was sent. If \
             the server is right (a staging host with an internal CA, a proxy that inspects TLS), trust its CA: name \
             its PEM file in SSL_CERT_FILE (or a directory in SSL_CERT_DIR), or add it to the system's trust store"
        );
        assert_eq!(world.stats().creates, 0);
    }
    // Once the host trusts the CA, the same ledger goes on: nothing was uncertain, nothing is reconciled.
    let ca = authority.ca_file(&world, "ca.pem");
    world.run_job("jobs/catalog-import.toml", &["--limit", "100/s"]).env("SSL_CERT_FILE", &ca).code(0);
    assert_eq!(world.stats().creates, 60);
}

/// Regression: with nothing listening, 40 rows were still being tried after 120 s, each spending its own
/// attempts, a dozen already `failed`.
#[test]
fn nothing_listening_stops_the_run_after_the_outage() {
    let world = World::new();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let job = JobFile::sample("catalog-import").add("retry.outage", "2s").write(&world, "outage.toml");
    let (output, ledger) = (world.path("out.csv"), world.path("ledger.jsonl"));
    let started = Instant::now();
    let outcome = world
        .linkbatch(&["run", &job, "--base-url", &format!("http://{dead}"), "--limit", "100/s", "--concurrency", "8"])
        .args(&["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .code(3);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let rows = world.output();
    assert_eq!(statuses(&rows), [("pending".to_owned(), 60)].into(), "{}", outcome.stderr);
    let last = outcome.stderr.lines().last().unwrap();
    assert!(last.starts_with("error: aborted: the server could not be reached since "), "{last}");
    assert!(last.ends_with("waited [retry] outage = 2s, then stopped. The rows not sent are pending: run the same command again once the server is back"), "{last}");
}

/// A TCP forwarder in front of a server that can be switched off (every connection cut, the port closed, so
/// new connections are refused) and on again, on the same port.
struct Switch {
    addr: SocketAddr,
    target: SocketAddr,
    listening: Mutex<Option<tokio::task::JoinHandle<()>>>,
    cut: Arc<tokio::sync::Notify>,
    rt: tokio::runtime::Runtime,
}

impl Switch {
    fn new(target: SocketAddr) -> Switch {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let switch =
            Switch { addr, target, listening: Mutex::new(None), cut: Arc::new(tokio::sync::Notify::new()), rt };
        switch.set(true);
        switch
    }

    fn set(&self, up: bool) {
        let mut listening = self.listening.lock().unwrap();
        if let Some(task) = listening.take() {
            // Dropping the listener closes the port.
            task.abort();
            let _ = self.rt.block_on(task);
        }
        if !up {
            self.cut.notify_waiters();
            return;
        }
        let listener = self.rt.block_on(tokio::net::TcpListener::bind(self.addr)).unwrap();
        let (target, cut) = (self.target, self.cut.clone());
        *listening = Some(self.rt.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let cut = cut.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        }));
    }
}

#[test]
fn a_server_gone_mid_run_is_waited_for_and_every_row_made_once() {
    let world = World::with(SandboxConfig { limits: rates(&["40/s"]), ..SandboxConfig::default() });
    let sandbox: SocketAddr = world.base_url().trim_start_matches("http://").parse().unwrap();
    let switch = Switch::new(sandbox);
    let job = JobFile::sample("catalog-import").add("retry.outage", "30s").write(&world, "blip.toml");
    let (output, ledger) = (world.path("out.csv"), world.path("ledger.jsonl"));
    let base = format!("http://{}", switch.addr);
    let run = world
        .linkbatch(&["run", &job, "--base-url", &base, "--limit", "20/s", "--concurrency", "4"])
        .args(&["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .spawn_capturing();
    std::thread::sleep(Duration::from_secs(1));
    let before = world.stats().creates;
    switch.set(false);
    std::thread::sleep(Duration::from_secs(3));
    let during = world.stats().creates;
    switch.set(true);
    let outcome = run.finish();
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(before > 0 && before < 60, "the server went away mid-run: {before} links made before");
    assert!(during - before <= 4, "at most the requests in flight land while away: {}", during - before);
    let stats = world.stats();
    assert_eq!((stats.creates, stats.links_held, stats.identical_extra), (60, 60, 0), "{stats:?}");
    let rows = world.output();
    assert_eq!(count(&rows, "created"), 60, "{}", outcome.stderr);
    let warnings = outcome.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        warnings[0],
        "the server cannot be reached (could not connect: Connection refused (os error 111)): every worker waits for it, one \
         probe at a time, for at most 30s ([retry] outage)"
    );
    assert!(warnings[1].starts_with("the server answers again, after "), "{warnings:?}");
}

/// A CONNECT proxy that tunnels to where it is asked and keeps each target it was asked for.
struct Proxy {
    url: String,
    targets: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start() -> Proxy {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut client = tokio::io::BufReader::new(client);
                    let mut line = String::new();
                    if client.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else { return };
                    let target = target.to_owned();
                    // The rest of the request's head.
                    loop {
                        let mut header = String::new();
                        if client.read_line(&mut header).await.is_err() || header.trim().is_empty() {
                            break;
                        }
                    }
                    seen.lock().unwrap().push(target.clone());
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    let mut client = client.into_inner();
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { url, targets, _rt: rt }
    }
}

#[test]
fn through_an_https_proxy_with_the_ca_the_host_trusts() {
    let authority = Authority::new("corporate CA");
    let world = authority.sandbox(SandboxConfig::default());
    let ca = authority.ca_file(&world, "ca.pem");
    let proxy = Proxy::start();
    let outcome = world
        .run_job("jobs/catalog-import.toml", &["--limit", "100/s", "-v"])
        .env("SSL_CERT_FILE", &ca)
        .env("HTTPS_PROXY", &proxy.url)
        .env_remove("NO_PROXY")
        .code(0);
    assert_eq!(count(&world.output(), "created"), 60);
    let sandbox = world.base_url().trim_start_matches("https://").to_owned();
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(!targets.is_empty() && targets.iter().all(|t| *t == sandbox), "{targets:?}");
    assert!(
        outcome.stderr.contains(&format!("requests to 127.0.0.1 go through the proxy {}/", proxy.url)),
        "{}",
        outcome.stderr
    );
}
