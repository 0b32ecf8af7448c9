//! The sandbox as a new user meets it: Omise's objects, errors, windows and faults, over real HTTP.

use std::time::Duration;

use linkbatch::sandbox::{FaultKind, SandboxConfig};
use reqwest::Method;
use serde_json::json;

use crate::support::{World, faults};

fn latte() -> Vec<(&'static str, &'static str)> {
    vec![
        ("amount", "100000"),
        ("currency", "thb"),
        ("title", "Hot Latte"),
        ("description", "A warm cup"),
        ("multiple", "true"),
    ]
}

#[test]
fn classic_link_round_trip_like_omise() {
    let world = World::new();
    let http = world.http();
    let created = http.create(&latte());
    assert_eq!(created.status, 200, "{:?}", created.body);
    let link = &created.body;
    let id = link["id"].as_str().unwrap();
    assert!(id.starts_with("link_test_") && id.len() == "link_test_".len() + 19, "{id}");
    assert_eq!(link["object"], "link");
    assert_eq!(link["livemode"], false);
    assert_eq!(link["location"], format!("/links/{id}"));
    assert_eq!(
        (link["amount"].as_u64(), link["multiple"].as_bool(), link["used"].as_bool()),
        (Some(100000), Some(true), Some(false))
    );
    assert_eq!(link["charges"]["object"], "list");
    assert!(link["payment_uri"].as_str().unwrap().starts_with(&world.base_url()));
    assert!(link["created_at"].as_str().unwrap().ends_with('Z'));

    // The same link as JSON body, then retrieve, list, delete.
    let json_body = http.send(http.classic(Method::POST, "/links").json(&json!({
        "amount": 5000, "currency": "USD", "title": "JSON", "description": "d"
    })));
    assert_eq!(json_body.status, 200, "{:?}", json_body.body);
    assert_eq!(json_body.body["currency"], "usd");
    assert_eq!(http.send(http.classic(Method::GET, &format!("/links/{id}"))).body["title"], "Hot Latte");
    let list = http.send(http.classic(Method::GET, "/links?limit=1&offset=1&order=reverse_chronological"));
    assert_eq!((list.body["object"].as_str(), list.body["total"].as_u64()), (Some("list"), Some(2)));
    assert_eq!(list.body["data"][0]["id"], id);
    assert_eq!(http.send(http.classic(Method::GET, "/links?limit=500")).body["limit"], 100);
    let deleted = http.send(http.classic(Method::DELETE, &format!("/links/{id}")));
    assert_eq!(deleted.body["deleted"], true);
    assert_eq!(http.send(http.classic(Method::GET, "/links")).body["total"], 1);
    assert_eq!(world.stats().links_held, 1);
    // An older API version gets `created`, as Omise answers it.
    let legacy = http.send(http.classic(Method::POST, "/links").header("Omise-Version", "2015-11-17").form(&latte()));
    assert!(legacy.body["created"].is_string() && legacy.body.get("created_at").is_none());
}

#[test]
fn live_keys_make_live_links() {
    let mut world = World::new();
    world.key = "skey_live_sandbox_check".into();
    let link = world.http().create(&latte()).body;
    assert!(link["id"].as_str().unwrap().starts_with("link_") && !link["id"].as_str().unwrap().contains("test"));
    assert_eq!(link["livemode"], true);
}

#[test]
fn validation_names_each_field_and_never_answers_500() {
    let world = World::new();
    let http = world.http();
    let missing = http.create(&[("currency", "thb")]);
    assert_eq!((missing.status, missing.body["code"].as_str()), (400, Some("bad_request")));
    for field in ["amount", "title", "description"] {
        assert!(missing.body["message"].as_str().unwrap().contains(field), "{:?}", missing.body);
    }
    let with = |name: &'static str, value: &'static str| {
        let mut form = latte();
        form.retain(|(k, _)| *k != name);
        form.push((name, value));
        http.create(&form)
    };
    assert_eq!(with("amount", "-5").body["code"], "invalid_amount");
    assert_eq!(with("amount", "12.5").body["code"], "invalid_amount");
    assert_eq!(with("currency", "eur").body["code"], "invalid_currency");
    let long_title: &'static str = "t".repeat(201).leak();
    assert_eq!(with("title", long_title).status, 400);
    let long_description: &'static str = "d".repeat(1001).leak();
    assert_eq!(with("description", long_description).status, 400);
    assert_eq!(with("multiple", "perhaps").status, 400);
    let malformed = http
        .send(http.classic(Method::POST, "/links").header("content-type", "application/json").body("{\"amount\": "));
    assert_eq!((malformed.status, malformed.body["code"].as_str()), (400, Some("bad_request")));
    let array = http.send(http.classic(Method::POST, "/links").header("content-type", "application/json").body("[1]"));
    assert_eq!(array.status, 400);
    assert_eq!(http.send(http.classic(Method::GET, "/links?from=yesterday")).status, 400);
    assert_eq!(http.send(http.classic(Method::GET, "/links/link_test_nope")).status, 404);
    assert!(!world.stats().requests.contains_key("500"), "{:?}", world.stats().requests);
}

#[test]
fn authentication_as_omise_does_it() {
    let world = World::new();
    let http = world.http();
    let code = |a: crate::support::Answer| (a.status, a.body["code"].as_str().map(str::to_owned));
    let unauthorized = (401, Some("authentication_failure".to_owned()));
    assert_eq!(code(http.send(http.request(Method::GET, "/links"))), unauthorized);
    assert_eq!(
        code(http.send(http.request(Method::GET, "/links").basic_auth("pkey_test_abc", Some("")))),
        unauthorized
    );
    assert_eq!(code(http.send(http.request(Method::GET, "/links").basic_auth("not-a-key", Some("")))), unauthorized);
    // Classic takes Basic only; Links+ also takes Bearer and the raw key.
    assert_eq!(code(http.send(http.request(Method::GET, "/links").bearer_auth(&world.key))), unauthorized);
    for request in [
        http.request(Method::GET, "/external/456/templates").bearer_auth(&world.key),
        http.request(Method::GET, "/external/456/templates").header("Authorization", world.key.clone()),
        http.request(Method::GET, "/external/456/templates").basic_auth(&world.key, Some("")),
    ] {
        assert_eq!(http.send(request).status, 200);
    }
}

#[test]
fn links_plus_templates_teams_and_webhooks() {
    let world = World::new();
    let http = world.http();
    let plus = |body: serde_json::Value| {
        http.send(http.request(Method::POST, "/external/links").bearer_auth(&world.key).json(&body))
    };
    let created =
        plus(json!({"template_id": 124, "team_id": 456, "name": "VIP", "amount": 450000, "multiple_usage": true,
        "custom_webhook": "https://hooks.example.com/x"}));
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert!(created.body["id"].is_u64());
    assert_eq!(created.body["currency"], "usd", "the template's currency is the default");
    assert!(created.body["payment_url"].as_str().unwrap().starts_with(&world.base_url()));
    assert_eq!(created.body["status"], "active");
    let http_hook = plus(
        json!({"template_id": 123, "team_id": 456, "name": "x", "amount": 1, "custom_webhook": "http://insecure.example.com"}),
    );
    assert_eq!(http_hook.status, 400);
    assert_eq!(plus(json!({"template_id": 999, "team_id": 456, "name": "x", "amount": 100})).status, 404);
    assert_eq!(plus(json!({"template_id": 123, "team_id": 456, "name": "x", "amount": 99})).status, 400);
    assert_eq!(
        plus(json!({"template_id": 321, "team_id": 456, "name": "x", "amount": 100})).status,
        404,
        "template of another team"
    );
    assert_eq!(plus(json!({"template_id": 123, "team_id": 1, "name": "x", "amount": 100})).status, 404);
    let missing = plus(json!({"team_id": 456}));
    assert_eq!(missing.body["message"], "template_id is required, name is required, amount is required");
    let id = created.body["id"].as_u64().unwrap();
    let get = |path: String| http.send(http.request(Method::GET, &path).bearer_auth(&world.key));
    assert_eq!(get(format!("/external/links/{id}")).body["name"], "VIP");
    assert_eq!(get("/external/456/links".into()).body["total"], 1);
    assert_eq!(get("/external/789/links".into()).body["total"], 0);
    assert_eq!(get("/external/templates/321".into()).body["team_id"], 789);
    assert_eq!(get("/external/456/templates".into()).body["data"].as_array().unwrap().len(), 2);
}

#[test]
fn sliding_windows_refuse_with_retry_after_then_readmit() {
    let world = World::with(SandboxConfig {
        limits: vec!["3/1s".parse().unwrap(), "5/1min".parse().unwrap()],
        ..Default::default()
    });
    let http = world.http();
    for _ in 0..3 {
        assert_eq!(http.send(http.classic(Method::GET, "/links")).status, 200);
    }
    let limited = http.send(http.classic(Method::GET, "/links"));
    assert_eq!((limited.status, limited.body["object"].as_str()), (429, Some("error")));
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(http.send(http.classic(Method::GET, "/links")).status, 200);
    assert_eq!(http.send(http.classic(Method::GET, "/links")).status, 200);
    // Five in the minute now: the long window refuses, and says how long until its oldest leaves.
    let minute = http.send(http.classic(Method::GET, "/links"));
    assert_eq!(minute.status, 429);
    assert!(minute.retry_after.unwrap().parse::<u64>().unwrap() >= 58);
    let stats = world.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.windows[0].limit, "3/s");
    assert_eq!(stats.windows[0].max_in_window, 4, "the refused request counts as seen");
    // Another key has its own windows.
    let mut other = World::with(SandboxConfig { limits: vec!["1/1min".parse().unwrap()], ..Default::default() });
    assert_eq!(other.http().send(other.http().classic(Method::GET, "/links")).status, 200);
    other.key = linkbatch::sandbox::Sandbox::test_key(rand::random());
    assert_eq!(other.http().send(other.http().classic(Method::GET, "/links")).status, 200);
}

#[test]
fn faults_follow_their_seed_and_are_counted() {
    let statuses = |seed| {
        let world = World::with(SandboxConfig {
            faults: faults(&[(FaultKind::ServerErrorBefore, 0.3), (FaultKind::RateLimited, 0.2)]),
            seed,
            ..Default::default()
        });
        let http = world.http();
        let seen: Vec<u16> = (0..40).map(|_| http.create(&latte()).status).collect();
        (seen, world.stats())
    };
    let (first, stats) = statuses(7);
    assert_eq!(first, statuses(7).0, "same seed, same sequence");
    assert_ne!(first, statuses(8).0);
    let fives = first.iter().filter(|&&s| s == 500).count() as u64;
    assert!(fives > 0 && stats.faults["500-before"] == fives);
    assert_eq!(stats.faults["429"], first.iter().filter(|&&s| s == 429).count() as u64);
    assert_eq!(
        stats.links_held as u64,
        first.iter().filter(|&&s| s == 200).count() as u64,
        "500-before stores nothing"
    );
}

#[test]
fn after_commit_faults_store_the_link() {
    for (kind, expect) in [
        (FaultKind::ServerErrorAfter, "500"),
        (FaultKind::DropAfterCommit, "dropped"),
        (FaultKind::SlowAfter, "timeout"),
    ] {
        let world = World::with(SandboxConfig {
            faults: faults(&[(kind, 1.0)]),
            slow_delay: Duration::from_secs(3),
            ..Default::default()
        });
        let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
        let request =
            client.post(format!("{}/links", world.base_url())).basic_auth(&world.key, Some("")).form(&latte());
        let result = world.rt.block_on(async { request.send().await });
        match (expect, result) {
            ("500", Ok(response)) => assert_eq!(response.status(), 500),
            ("dropped", Err(e)) => assert!(!e.is_timeout(), "closed at once, not timed out: {e}"),
            ("timeout", Err(e)) => assert!(e.is_timeout(), "{e}"),
            (expect, other) => panic!("{kind}: expected {expect}, got {other:?}"),
        }
        let stats = world.stats();
        assert_eq!(stats.links_held, 1, "{kind}: the link was stored before the fault");
        assert_eq!(stats.faults[kind.name()], 1);
        // Reads are never hit by after-commit faults.
        assert_eq!(world.http().send(world.http().classic(Method::GET, "/links")).status, 200);
    }
}

#[test]
fn payments_use_single_links_and_show_as_charges() {
    let world = World::new();
    let http = world.http();
    let mut single = latte();
    single.retain(|(k, _)| *k != "multiple");
    let id = http.create(&single).body["id"].as_str().unwrap().to_owned();
    let pay = |id: &str| http.send(http.request(Method::POST, &format!("/__sandbox/links/{id}/pay")));
    let paid = pay(&id);
    assert_eq!((paid.body["used"].as_bool(), paid.body["charges"]["total"].as_u64()), (Some(true), Some(1)));
    assert_eq!(paid.body["charges"]["data"][0]["amount"], 100000);
    assert_eq!(pay(&id).body["code"], "used_link");
    let multi = http.create(&latte()).body["id"].as_str().unwrap().to_owned();
    pay(&multi);
    assert_eq!(pay(&multi).body["charges"]["total"], 2);
    assert_eq!(http.send(http.classic(Method::GET, &format!("/links/{id}"))).body["used"], true);
    assert_eq!(world.stats().payments, 3);
    assert_eq!(pay("link_test_missing").status, 404);
}

#[test]
fn stats_count_identical_links() {
    let world = World::new();
    let http = world.http();
    http.create(&latte());
    http.create(&latte());
    http.create(&latte());
    http.create(&[("amount", "1"), ("currency", "jpy"), ("title", "Other"), ("description", "d")]);
    let stats = world.stats();
    assert_eq!((stats.identical_groups, stats.identical_extra, stats.links_held), (1, 2, 4));
    assert_eq!(stats.links_per_title["Hot Latte"], 3);
    // The stats endpoint serves the same figures as JSON.
    let served = http.send(http.request(Method::GET, "/__sandbox/stats"));
    assert_eq!(served.body["identical_extra"], 2);
}

#[test]
fn latency_slows_the_answer_not_the_commit() {
    let world = World::with(SandboxConfig { latency: Duration::from_millis(800), ..Default::default() });
    let client = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let request = client.post(format!("{}/links", world.base_url())).basic_auth(&world.key, Some("")).form(&latte());
    let started = std::time::Instant::now();
    let timed_out = world.rt.block_on(async { request.send().await }).unwrap_err().is_timeout();
    assert!(timed_out && started.elapsed() < Duration::from_millis(700));
    // The client gave up, but the link was stored when the request arrived.
    assert_eq!(world.stats().links_held, 1);
    let slow = std::time::Instant::now();
    assert_eq!(world.http().send(world.http().classic(Method::GET, "/links")).status, 200);
    assert!(slow.elapsed() >= Duration::from_millis(800));
}
