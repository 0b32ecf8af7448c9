//! The real Omise API, as its official libraries recorded it (`tests/fixtures/omise/`): every recording read
//! by the client's parsers and by the client itself over loopback; and what linkbatch does when an answer is
//! one it cannot read, when payments span pages, and when Links+ wants a scheme the job did not name.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use linkbatch::api::shape::{self, RemoteLink};
use linkbatch::api::{Client, SecretKey};
use linkbatch::sandbox::{FaultKind, Profile, SandboxConfig};
use linkbatch::terms::{ApiKind, AuthScheme};
use reqwest::Method;
use serde_json::Value;

use crate::support::{JobFile, Replay, World, faults, read_csv};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/omise")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What a recording holds: a link, a list of links, a DELETE answer or an error object.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Holds {
    Link,
    List,
    Deleted,
    Error,
}

/// Each recording as (name, HTTP status, body, what it holds): the plain files as they are, each cassette's
/// recorded answer (its request's method and URL say what it holds).
fn recordings() -> Vec<(String, u16, String, Holds)> {
    let mut all = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for name in names {
        let text = fixture(&name);
        if name.ends_with(".cassette.json") {
            let cassette: Value = serde_json::from_str(&text).unwrap();
            let exchange = &cassette[0];
            let status = exchange["response"]["status_code"].as_u64().unwrap() as u16;
            let body = exchange["response"]["body"].as_str().unwrap().to_owned();
            let url = exchange["request"]["url"].as_str().unwrap();
            let holds = match (status, exchange["request"]["method"].as_str().unwrap()) {
                (400.., _) => Holds::Error,
                (_, "get") if url.contains("/links?") || url.ends_with("/links") => Holds::List,
                _ => Holds::Link,
            };
            all.push((name, status, body, holds));
            continue;
        }
        let holds = if name.contains("404") {
            Holds::Error
        } else if name.contains("links-get") {
            Holds::List
        } else if name.contains("delete") {
            Holds::Deleted
        } else {
            Holds::Link
        };
        let status = if holds == Holds::Error { 404 } else { 200 };
        all.push((name, status, text, holds));
    }
    all
}

#[test]
fn every_recording_is_read_by_the_parsers() {
    let all = recordings();
    let files = std::fs::read_dir(fixtures())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"));
    assert_eq!(all.len(), files.count(), "every recording is read");
    assert_eq!(all.len(), 19, "the recordings PROVENANCE.tsv lists");
    for (name, _, body, holds) in &all {
        let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        match holds {
            Holds::Link => {
                let link = RemoteLink::read(ApiKind::Links, &json).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(link.id.starts_with("link_test_") && link.payment_uri.starts_with("https://"), "{name}");
                assert_eq!(link.currency, "thb", "{name}: currencies are read in lower case");
                let charges = shape::charges(&json["charges"]).unwrap_or_else(|e| panic!("{name}: {e}"));
                let payment = shape::Listed::read(ApiKind::Links, link.id.clone(), &json).unwrap().payment();
                let paid: u64 = charges.charges.iter().filter(|c| c.successful).map(|c| c.amount).sum();
                assert_eq!(payment.paid_amount, paid, "{name}");
            }
            Holds::List => {
                let page = shape::link_page(ApiKind::Links, &json).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(page.links.len(), json["data"].as_array().unwrap().len(), "{name}: no item skipped");
                assert!(page.total >= page.links.len(), "{name}");
            }
            Holds::Deleted => {
                assert_eq!(json["deleted"], true, "{name}");
                // The full answers (2018 and later) are links, deleted; the short one (2016) is not a link.
                if let Ok(link) = RemoteLink::read(ApiKind::Links, &json) {
                    assert!(link.deleted, "{name}");
                }
            }
            Holds::Error => {
                let (code, message) = shape::error_object(Some(&json)).unwrap_or_else(|| panic!("{name}"));
                assert!(["not_found", "bad_request"].contains(&code.as_str()) && !message.is_empty(), "{name}");
            }
        }
    }
}

/// The copies in the tree are the recordings byte for byte: `SHA256SUMS` beside them was written when they
/// were copied (and checked then against the originals), and every recording in the folder is in it.
#[test]
fn the_copies_are_the_recordings() {
    use sha2::Digest as _;
    let sums = fixture("SHA256SUMS");
    let mut listed = std::collections::BTreeSet::new();
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap_or_else(|| panic!("not a sha256sum line: {line}"));
        let bytes = std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let digest = linkbatch::digest::hex(&sha2::Sha256::digest(&bytes));
        assert_eq!(digest, sum, "{name} is not the recording it was copied from");
        listed.insert(name.to_owned());
    }
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(listed.contains(&name) || ["README.md", "SHA256SUMS"].contains(&name.as_str()), "{name} has no sum");
    }
}

fn client(base: &str) -> Client {
    let key = SecretKey::new("skey_test_contract".into(), "K", "secret key").unwrap();
    Client::new(ApiKind::Links, base, key, AuthScheme::Auto, Duration::from_secs(5)).unwrap()
}

#[test]
fn every_recording_is_read_by_the_client() {
    for (name, status, body, holds) in recordings() {
        let id = "link_test_55pcclmznvrv9lc7r9s";
        let answers = vec![
            ("POST", "/links".to_owned(), status, body.clone()),
            ("GET", "/links".to_owned(), status, body.clone()),
            ("GET", format!("/links/{id}"), status, body.clone()),
            ("DELETE", format!("/links/{id}"), status, body.clone()),
        ];
        let server = Replay::start(answers);
        let client = client(&server.base_url);
        server.rt.block_on(async {
            match holds {
                Holds::Link => {
                    let link = client.create(&linkbatch_request()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(link.id.starts_with("link_test_"), "{name}");
                    client.payment(id).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Holds::List => {
                    let page =
                        client.list(SystemTime::UNIX_EPOCH, 0, None).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(!page.links.is_empty(), "{name}");
                }
                Holds::Deleted => client.delete(id).await.unwrap_or_else(|e| panic!("{name}: {e}")),
                Holds::Error => {
                    let error = client.create(&linkbatch_request()).await.unwrap_err();
                    assert!(matches!(error, linkbatch::api::ApiError::Permanent { .. }), "{name}: {error:?}");
                }
            }
        });
    }
}

fn linkbatch_request() -> linkbatch::request::LinkRequest {
    linkbatch::request::LinkRequest::Classic(linkbatch::request::ClassicRequest {
        amount: 10000,
        currency: "thb".into(),
        title: "Lunch".into(),
        description: "Pay me back for lunch".into(),
        multiple: false,
        metadata: std::collections::BTreeMap::new(),
    })
}

/// A recorded link whose `charges.total` says 25 while it embeds 20: the client reads the other page, and
/// counts only successful charges, less refunds.
#[test]
fn charges_past_the_embedded_page_are_read() {
    let mut link: Value = serde_json::from_str(&fixture("ruby-link-get.json")).unwrap();
    let charge = link["charges"]["data"][0].clone();
    let mut all: Vec<Value> = (0..25).map(|_| charge.clone()).collect();
    all[3]["status"] = "failed".into();
    all[24]["refunded"] = 4000.into();
    link["charges"]["data"] = Value::Array(all[..20].to_vec());
    link["charges"]["total"] = 25.into();
    let rest = serde_json::json!({"object": "list", "offset": 20, "limit": 100, "total": 25, "data": all[20..]});
    let id = "link_test_55pcclmznvrv9lc7r9s";
    let server = Replay::start(vec![
        ("GET", format!("/links/{id}"), 200, link.to_string()),
        ("GET", format!("/links/{id}/charges"), 200, rest.to_string()),
    ]);
    let payment = server.rt.block_on(client(&server.base_url).payment(id)).unwrap();
    assert_eq!((payment.charges, payment.paid_amount, payment.refunded_amount), (24, 24 * 10000 - 4000, 4000));
}

/// The same recorded link read from a page of the list (as `refresh` reads it) and by id: the same payment.
#[test]
fn a_listed_link_reads_as_the_link_read_by_id() {
    for library in ["java", "php", "ruby"] {
        let (list, link) =
            (fixture(&format!("{library}-links-get.json")), fixture(&format!("{library}-link-get.json")));
        let id = serde_json::from_str::<Value>(&link).unwrap()["id"].as_str().unwrap().to_owned();
        let server =
            Replay::start(vec![("GET", "/links".to_owned(), 200, list), ("GET", format!("/links/{id}"), 200, link)]);
        let client = client(&server.base_url);
        let (listed, by_id) = server.rt.block_on(async {
            let (page, _) = client.payment_page(SystemTime::UNIX_EPOCH, 0, None).await.unwrap();
            (page, client.payment(&id).await.unwrap())
        });
        let item = listed.iter().find(|item| item.id == id).unwrap_or_else(|| panic!("{library}: {id} not listed"));
        assert!(item.complete(), "{library}");
        assert_eq!(item.payment(), by_id, "{library}");
    }
}

/// `refresh` of a link with 25 successful charges, one of them refunded, on every classic profile.
#[test]
fn refresh_counts_every_charge_and_takes_refunds_off() {
    for profile in [Profile::Current, Profile::Legacy, Profile::Recorded2025] {
        let world = World::with(SandboxConfig { profile, ..SandboxConfig::default() });
        world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
        let vip = world.output().into_iter().find(|r| r["tier"] == "VIP").unwrap();
        let http = world.http();
        let link = &vip["link_id"];
        for _ in 0..25 {
            assert_eq!(http.send(http.request(Method::POST, &format!("/__sandbox/links/{link}/pay"))).status, 200);
        }
        assert_eq!(http.send(http.request(Method::POST, &format!("/__sandbox/links/{link}/refund"))).status, 200);
        let outcome = world.job("refresh", "jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
        let row = world.output().into_iter().find(|r| r["tier"] == "VIP").unwrap();
        let amount: u64 = row["amount"].parse().unwrap();
        assert_eq!(
            (
                row["charges"].as_str(),
                row["paid_amount"].parse::<u64>().unwrap(),
                row["refunded_amount"].parse::<u64>().unwrap()
            ),
            ("25", 24 * amount, amount),
            "{}",
            profile.name()
        );
        assert!(outcome.stderr.contains("refunded 4,500.00 THB"), "{}", outcome.stderr);
    }
}

/// A 200 answer to a create that linkbatch cannot read: kept in the ledger, the run stopped (exit 3) naming
/// the row, and that row never sent again; `settle` then records the link the user found.
#[test]
fn an_unreadable_create_answer_is_never_sent_again() {
    let world =
        World::with(SandboxConfig { faults: faults(&[(FaultKind::UnreadableAfter, 1.0)]), ..SandboxConfig::default() });
    let first = world.run_job("jobs/event-tickets.toml", &["--limit", "100/s", "--concurrency", "1"]).code(3);
    assert_eq!(
        first.error(),
        "error: aborted: line 2 (key `Bangkok Jazz Night 2026/Early bird`): the server answered the create with HTTP 200 and no readable id. Nothing was sent again and the answer is in the ledger. The link may exist: look for it in the dashboard, then `linkbatch settle JOB --key KEY --link-id ID --payment-uri URI`, or `--no-link` if none was made"
    );
    assert_eq!(world.stats().creates, 1);
    let ledger = std::fs::read_to_string(world.path("ledger.jsonl")).unwrap();
    assert!(ledger.contains(r#""type":"unreadable""#) && ledger.contains("processing"), "the answer is kept");
    assert!(!ledger.contains(&world.key), "never the key");

    // Again: the first row is not sent again; the next row is, and stops the run the same way.
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s", "--concurrency", "1"]).code(3);
    let stats = world.stats();
    assert_eq!((stats.creates, stats.identical_extra), (2, 0), "one create per row, never a second");
    let rows = read_csv(&world.path("out.csv"));
    assert_eq!(rows.iter().filter(|r| r["error_code"] == "unreadable_answer").count(), 2);

    // The user finds the first row's link and settles it: the next run reports it as existing.
    let http = world.http();
    let list = http.send(http.classic(Method::GET, "/links?order=chronological"));
    let made = &list.body["data"][0];
    let key = &rows[0]["key"];
    let (id, uri) = (made["id"].as_str().unwrap(), made["payment_uri"].as_str().unwrap());
    let ledger_path = world.path("ledger.jsonl");
    let settle = ["settle", "jobs/event-tickets.toml", "--ledger", ledger_path.to_str().unwrap(), "--key", key];
    world.linkbatch(&[&settle[..], &["--link-id", id, "--payment-uri", uri]].concat()).code(0);
    let args = ["export", "jobs/event-tickets.toml", "--ledger", ledger_path.to_str().unwrap()];
    let out = world.path("export.csv");
    world.linkbatch(&[&args[..], &["--output", out.to_str().unwrap()]].concat()).code(0);
    let exported = read_csv(&out);
    assert_eq!((exported[0]["link_id"].as_str(), exported[0]["status"].as_str()), (id, "created"));
    assert_eq!(world.stats().creates, 2, "settling sends nothing");
}

/// A list item that cannot be read stops reconciliation (exit 3) instead of being skipped: against a server
/// that answers the create with a 500 (uncertain) and the list with a recorded page missing one item's URL.
#[test]
fn an_unreadable_list_item_stops_reconciliation() {
    let mut page: Value = serde_json::from_str(&fixture("java-links-get.json")).unwrap();
    page["data"][1].as_object_mut().unwrap().remove("payment_uri");
    assert_eq!(shape::link_page(ApiKind::Links, &page).unwrap_err().missing, "payment_uri of list item 1");
    let error = fixture("ruby-404.json").replace("not_found", "internal_error");
    let server = Replay::start(vec![
        ("POST", "/links".to_owned(), 500, error),
        ("GET", "/links".to_owned(), 200, page.to_string()),
    ]);
    let world = World::new();
    let input = world.path("one.csv");
    std::fs::write(
        &input,
        "tier,event,price,currency,capacity
VIP,Night,10.00,thb,1
",
    )
    .unwrap();
    let job = JobFile::sample("event-tickets").add("api.timeout", "1s").write(&world, "job.toml");
    let (out, ledger) = (world.path("out.csv"), world.path("ledger.jsonl"));
    let args = ["run", &job, "--base-url", &server.base_url, "--input", input.to_str().unwrap()];
    let outcome = world
        .linkbatch(&[&args[..], &["--output", out.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()]].concat())
        .code(3);
    assert_eq!(
        outcome.error(),
        "error: aborted: line 2 (key `Night/VIP`): the server answered the list with HTTP 200 and no readable payment_uri of list item 1. Nothing was sent again and the answer is in the ledger. The row stays uncertain: run again once the server answers as documented, or settle it by hand (`linkbatch settle`)"
    );
    assert_eq!(server.hits("POST"), 1, "no second create");
    let ledger = std::fs::read_to_string(&ledger).unwrap();
    assert!(ledger.contains(r#""answer_to":"list""#), "{ledger}");
}

/// `auth` left out: the scheme the server takes is found with one refused read per scheme tried before it,
/// recorded in the ledger, and not searched for again.
#[test]
fn links_plus_finds_the_scheme_the_server_takes() {
    for (scheme, refused) in [(AuthScheme::Raw, 0), (AuthScheme::Bearer, 1), (AuthScheme::Basic, 2)] {
        let world = World::with(SandboxConfig { plus_auth: Some(scheme), ..SandboxConfig::default() });
        world.run_job("jobs/event-tickets-plus.toml", &["--limit", "100/s"]).code(0);
        let stats = world.stats();
        assert_eq!(stats.plus_links, 3, "{}", scheme.name());
        assert_eq!(stats.requests.get("401").copied().unwrap_or(0), refused, "{}", scheme.name());
        let header = std::fs::read_to_string(world.path("ledger.jsonl")).unwrap();
        assert!(header.lines().next().unwrap().contains(&format!(r#""auth":"{}""#, scheme.name())));
        world.run_job("jobs/event-tickets-plus.toml", &["--limit", "100/s"]).code(0);
        assert_eq!(world.stats().requests.get("401").copied().unwrap_or(0), refused, "searched once only");
    }
}

/// Links+ limits from Omise's documentation are checked before anything is sent.
#[test]
fn links_plus_names_and_amounts_are_checked_before_sending() {
    let world = World::new();
    let input = world.path("tiers.csv");
    let long = "x".repeat(46);
    std::fs::write(&input, format!("event,tier,price,capacity\nE,{long},10.00,1\nE,Cheap,0.99,1\nE,Fine,1.00,1\n"))
        .unwrap();
    let ledger = world.path("ledger.jsonl");
    let args = ["validate", "jobs/event-tickets-plus.toml", "--input", input.to_str().unwrap()];
    let outcome = world.linkbatch(&[&args[..], &["--ledger", ledger.to_str().unwrap()]].concat()).code(1);
    assert!(outcome.stdout.contains("rejected:         2"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("at most 45 are allowed"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("below the Links+ minimum of 100"), "{}", outcome.stdout);
}

/// The sample jobs on every profile: created, then existing, then refreshed.
#[test]
fn sample_jobs_on_every_profile() {
    for profile in Profile::ALL {
        let world = World::with(SandboxConfig { profile, ..SandboxConfig::default() });
        let (job, rows) = match profile {
            Profile::PlusVariant => ("jobs/event-tickets-plus.toml", 3),
            _ => ("jobs/catalog-import.toml", 60),
        };
        world.run_job(job, &["--limit", "100/s"]).code(0);
        world.run_job(job, &["--limit", "100/s"]).code(0);
        let output = world.output();
        assert_eq!(output.iter().filter(|r| r["status"] == "existing").count(), rows, "{}", profile.name());
        assert_eq!(world.stats().links_held, rows, "{}", profile.name());
        world.job("refresh", job, &["--limit", "100/s"]).code(0);
    }
}

/// An answer kept as unreadable is read again by every later run: once a linkbatch can read it (here, the
/// kept body replaced by the link the server holds, as a newer reader would see it), the row adopts its
/// link and is never sent.
#[test]
fn a_kept_answer_is_read_again_by_a_later_run() {
    let world =
        World::with(SandboxConfig { faults: faults(&[(FaultKind::UnreadableAfter, 1.0)]), ..SandboxConfig::default() });
    let args = ["--limit", "100/s", "--concurrency", "1"];
    world.run_job("jobs/event-tickets.toml", &args).code(3);
    let http = world.http();
    let held = http.send(http.classic(Method::GET, "/links")).body["data"][0].clone();
    let path = world.path("ledger.jsonl");
    // Each line written again as the ledger writes it (with its checksum), the kept body replaced.
    let mut text = Vec::new();
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        let mut event: linkbatch::ledger::Event = serde_json::from_str(line).unwrap();
        if let linkbatch::ledger::Event::Unreadable { body, .. } = &mut event {
            *body = held.to_string();
        }
        text.extend(linkbatch::ledger::encode(&event).unwrap());
    }
    std::fs::write(&path, text).unwrap();
    world.run_job("jobs/event-tickets.toml", &args).code(3);
    let rows = world.output();
    // Made by the first run: reported as existing.
    assert_eq!(
        (rows[0]["status"].as_str(), &rows[0]["link_id"]),
        ("existing", &held["id"].as_str().unwrap().to_owned())
    );
    let stats = world.stats();
    assert_eq!((stats.creates, stats.identical_extra), (2, 0), "the first row was adopted, not sent again");
}
