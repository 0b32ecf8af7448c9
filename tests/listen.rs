//! `listen`: payments as they happen. The sandbox posts its events to a real `linkbatch listen` over
//! loopback, signed; the listener reads each named link again from the API and records it. Signatures are
//! made here with an HMAC written from RFC 2104 over `sha2`, not with the crate either side signs with.

use std::time::{Duration, Instant};

use linkbatch::sandbox::SandboxConfig;
use linkbatch::sandbox::webhook::{Scheme, Webhooks};
use reqwest::Method;
use serde_json::Value;
use sha2::Digest as _;

use crate::support::{JobFile, Running, World, requests};

/// HMAC-SHA256 (RFC 2104), hex: the block-sized key padded, inner and outer hashes.
fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    outer.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[test]
fn the_tests_hmac_is_rfc_4231s() {
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert_eq!(hmac_hex(b"Jefe", b"what do ya want for nothing?"), expected);
}

/// A secret as a dashboard gives one: random bytes in base64.
fn secret() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A world whose sandbox posts every event to `port`, signed with `secret` (none when `None`).
fn world_posting_to(port: Option<u16>, secret: &str, scheme: Scheme) -> World {
    let webhooks = Webhooks {
        urls: port.map(|p| format!("http://127.0.0.1:{p}/omise")).into_iter().collect(),
        secret: Some(secret.to_owned()),
        scheme,
        first_retry: Duration::from_millis(100),
    };
    World::with(SandboxConfig { webhooks, ..SandboxConfig::default() })
}

/// `tiers` tiers of one event, each with `capacity`.
fn tickets(world: &World, tiers: usize, capacity: u64) -> (String, String) {
    let input = world.path("tickets.csv");
    let rows = (0..tiers).map(|tier| format!("Gala,Tier {tier:03},{}.00,thb,{capacity}\n", 100 + tier));
    let csv: String = std::iter::once("event,tier,price,currency,capacity\n".to_owned()).chain(rows).collect();
    std::fs::write(&input, csv).unwrap();
    let job = JobFile::sample("event-tickets").add("listen.secret_env", "WEBHOOK_SECRET").write(world, "tickets.toml");
    (job, input.to_str().unwrap().to_owned())
}

/// `linkbatch listen` on `port`, once it takes connections.
fn listen(world: &World, job: &str, input: &str, port: u16, secret: &str) -> Running {
    let addr = format!("127.0.0.1:{port}");
    let running = world
        .job("listen", job, &["--input", input, "--addr", &addr, "--limit", "100/s"])
        .env("WEBHOOK_SECRET", secret)
        .spawn_capturing();
    wait_for("listen to take connections", Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok());
    running
}

/// A sandbox posting every event to a running `listen`, on a job of `tiers` tiers each of `capacity`
/// whose links are made: the world, the job and its input, the listener's port and secret, and the listener.
fn listening(tiers: usize, capacity: u64, scheme: Scheme) -> (World, String, String, u16, String, Running) {
    let (port, secret) = (free_port(), secret());
    let world = world_posting_to(Some(port), &secret, scheme);
    let (job, input) = tickets(&world, tiers, capacity);
    world.run_job(&job, &["--input", &input, "--limit", "500/s"]).code(0);
    let running = listen(&world, &job, &input, port, &secret);
    (world, job, input, port, secret, running)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pay(world: &World, link: &str) -> u16 {
    let http = world.http();
    http.send(http.request(Method::POST, &format!("/__sandbox/links/{link}/pay"))).status
}

fn links(world: &World) -> Vec<String> {
    world.output().into_iter().map(|r| r["link_id"].clone()).collect()
}

/// The `heard` lines of the ledger, as (event, link, charges).
fn heard(world: &World) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(world.path("ledger.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "heard")
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["link_id"].as_str().unwrap().to_owned(),
                e["charges"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The done-when: 25 links paid through the sandbox, its webhooks pointed at `listen`: every payment is in
/// the ledger and in `status` with no `refresh`, and the sandbox served one read per paid link.
#[test]
fn twenty_five_payments_reach_the_ledger_with_one_read_each() {
    let (world, job, input, _, _, listening) = listening(25, 100, Scheme::Body);
    let before = requests(&world.stats());
    for link in links(&world) {
        assert_eq!(pay(&world, &link), 200);
    }
    // Each payment is two events (charge.create, charge.complete), both acted on.
    wait_for("50 events heard", Duration::from_secs(30), || heard(&world).len() == 50);
    let reads = requests(&world.stats()) - before;
    let heard = heard(&world);
    let paid: std::collections::BTreeSet<&String> = heard.iter().map(|(_, link, _)| link).collect();
    assert_eq!((paid.len(), reads), (25, 25), "every link recorded, each read once");
    assert!(heard.iter().all(|(_, _, charges)| *charges == 1));
    listening.signal("TERM");
    let stopped = listening.finish();
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let ledger = world.path("ledger.jsonl");
    let status = world.linkbatch(&["status", &job, "--input", &input, "--ledger", ledger.to_str().unwrap()]).code(0);
    assert!(
        status.stdout.lines().any(|l| l == "  payments:  25 paid, 0 unpaid; collected 2,800.00 THB"),
        "{}",
        status.stdout
    );
}

/// A post to the listener, signed as `sign` says, and its status.
fn post(world: &World, port: u16, body: Vec<u8>, headers: &[(&str, String)]) -> u16 {
    world.rt.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/omise"))
            .header("Content-Type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap().status().as_u16()
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The done-when: a forged signature, a stale timestamp, a body of 1 MiB and an event replayed ten times
/// are answered 401, 401, 413 and (ten times) 200 with one reading; the ledger holds nothing from the
/// refused ones.
#[test]
fn forged_stale_oversized_and_replayed_posts() {
    use base64::Engine as _;
    let (port, secret) = (free_port(), secret());
    // The sandbox posts nowhere: the events are posted here, by hand.
    let world = world_posting_to(None, &secret, Scheme::Body);
    let (job, input) = tickets(&world, 2, 100);
    world.run_job(&job, &["--input", &input, "--limit", "200/s"]).code(0);
    let link = links(&world)[0].clone();
    assert_eq!(pay(&world, &link), 200);
    let http = world.http();
    let events = http.send(http.classic(Method::GET, "/events?order=reverse_chronological&limit=1"));
    let event = events.body["data"][0].clone();
    assert_eq!(event["key"], "charge.complete");
    let body = serde_json::to_vec(&event).unwrap();
    let listening = listen(&world, &job, &input, port, &secret);
    let before = requests(&world.stats());
    let key = base64::engine::general_purpose::STANDARD.decode(&secret).unwrap();
    let stamped = |at: u64| {
        let message = [at.to_string().as_bytes(), b".", &body].concat();
        vec![("Omise-Signature-Timestamp", at.to_string()), ("Omise-Signature", hmac_hex(&key, &message))]
    };

    let forged = vec![("Omise-Signature", hmac_hex(b"another secret", &body))];
    assert_eq!(post(&world, port, body.clone(), &forged), 401, "forged");
    assert_eq!(post(&world, port, body.clone(), &stamped(now() - 600)), 401, "ten minutes old");
    assert_eq!(post(&world, port, vec![b' '; 1 << 20], &[]), 413, "1 MiB");
    assert_eq!(post(&world, port, body.clone(), &[]), 401, "unsigned");
    assert!(heard(&world).is_empty(), "nothing recorded from a refused post");
    assert_eq!(requests(&world.stats()), before, "nothing read for a refused post");

    let signed = vec![("Omise-Signature", hmac_hex(secret.as_bytes(), &body))];
    let answers: Vec<u16> = (0..10)
        .map(|n| {
            let headers = if n % 2 == 0 { signed.clone() } else { stamped(now()) };
            post(&world, port, body.clone(), &headers)
        })
        .collect();
    assert_eq!(answers, [200; 10], "both schemes verify");
    assert_eq!(heard(&world).len(), 1, "an event replayed ten times is acted on once");
    assert_eq!(requests(&world.stats()) - before, 1, "one reading");
    listening.signal("TERM");
    assert_eq!(listening.finish().code, 0);
}

/// The ledger's `retired` event's time, as the host's clock (the sandbox's runs on it).
fn retired_at(world: &World) -> Option<std::time::SystemTime> {
    let retired = world.ledger_events("retired");
    retired.first().and_then(|e| humantime::parse_rfc3339_weak(e["at"].as_str()?).ok())
}

/// The done-when: a tier of capacity 30 paid 40 times at about 2 payments a second with `listen` running:
/// the link is retired within a second of the 30th payment, and the sandbox refuses the payments after.
#[test]
fn a_tier_sells_out_within_a_second_of_its_last_ticket() {
    let (world, _, _, _, _, listening) = listening(1, 30, Scheme::Timestamped);
    let link = links(&world)[0].clone();
    let (started, mut landed, mut thirtieth) = (Instant::now(), 0, None);
    for n in 0..40 {
        let due = started + Duration::from_millis(500 * n);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if pay(&world, &link) == 200 {
            landed += 1;
            if landed == 30 {
                thirtieth = Some(std::time::SystemTime::now());
            }
        }
    }
    wait_for("the tier retired", Duration::from_secs(10), || retired_at(&world).is_some());
    let after = retired_at(&world).unwrap().duration_since(thirtieth.unwrap()).unwrap_or_default();
    eprintln!("sold out: {landed} payments landed of 40 (capacity 30), retired {after:?} after the 30th");
    assert!(after <= Duration::from_secs(1), "retired {after:?} after the 30th payment");
    // At 2 a second, a retirement within a second lets at most two more through.
    assert!((30..=32).contains(&landed), "{landed} payments landed");
    assert_eq!(world.ledger_events("retired")[0]["reason"], "sold_out");
    listening.signal("TERM");
    assert_eq!(listening.finish().code, 0);
}

/// The done-when: `listen` killed with SIGKILL at random moments while the sandbox posts 200 charge events
/// (100 links paid once each): restarted, it takes the sandbox's retries, and every payment is recorded
/// exactly once (no event acted on twice, every link read as paid once).
#[test]
fn kill_nine_while_events_arrive_records_every_payment_once() {
    let (world, job, input, port, secret, mut listening) = listening(100, 1000, Scheme::Body);
    let links = links(&world);
    let listening = std::thread::scope(|scope| {
        let payer = scope.spawn(|| {
            for link in &links {
                assert_eq!(pay(&world, link), 200);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(rand::random_range(100..700)));
            listening.signal("KILL");
            let _ = listening.finish();
            listening = listen(&world, &job, &input, port, &secret);
        }
        payer.join().unwrap();
        listening
    });
    let paid = |heard: &[(String, String, u64)]| {
        heard
            .iter()
            .filter(|(_, _, charges)| *charges == 1)
            .map(|(_, link, _)| link.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    wait_for("every link recorded paid", Duration::from_mins(1), || paid(&heard(&world)).len() == 100);
    listening.signal("TERM");
    assert_eq!(listening.finish().code, 0);
    let heard = heard(&world);
    let events: std::collections::BTreeSet<&String> = heard.iter().map(|(event, ..)| event).collect();
    assert_eq!(events.len(), heard.len(), "an event recorded twice");
    assert!(heard.iter().all(|(_, _, charges)| *charges == 1), "a link read with more than its one payment");
    let ledger = world.path("ledger.jsonl");
    let status = world.linkbatch(&["status", &job, "--input", &input, "--ledger", ledger.to_str().unwrap()]).code(0);
    assert!(status.stdout.contains("  payments:  100 paid, 0 unpaid;"), "{}", status.stdout);
}
