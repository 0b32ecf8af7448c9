//! Delivery against the sandbox's mail catcher, a real SMTP server over loopback (STARTTLS with a private
//! CA, AUTH), spoken to by lettre: each row's link mailed once, what the server did not acknowledge never
//! sent again, a value never a header, a refused login the run's problem, and reminders by the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use linkbatch::sandbox::FaultKind;
use linkbatch::sandbox::SandboxConfig;
use linkbatch::sandbox::mail::Caught;

use crate::outages::Authority;
use crate::support::{JobFile, World, faults};

const MONTH: [&str; 2] = ["--var", "billing_month=2026-12"];

/// The monthly job mailing through this world's catcher (`host`: how the job names it), at 1000 messages
/// a second, retrying quickly, with a login from `SMTP_USER` and `SMTP_PASSWORD`.
fn mail_job(world: &World, host: &str) -> JobFile {
    JobFile::sample("monthly-subscriptions")
        .set("deliver.smtp", format!("smtp://{host}:{}", world.sandbox.smtp_port()))
        .set("deliver.rates", toml::Value::Array(vec!["1000/s".into()]))
        .set("retry.base_delay", "10ms")
        .set("retry.max_delay", "50ms")
}

/// `linkbatch COMMAND JOB` with the month, the API limit lifted and the catcher's login.
fn command(world: &World, name: &str, job: &str, extra: &[&str]) -> crate::support::Cmd {
    let mut args = MONTH.to_vec();
    args.extend(["--limit", "none"]);
    args.extend(extra);
    world.job(name, job, &args).env("SMTP_USER", "billing").env("SMTP_PASSWORD", "right")
}

fn caught(world: &World) -> Vec<Caught> {
    world.sandbox.mail()
}

fn header<'m>(message: &'m Caught, name: &str) -> Option<&'m str> {
    message.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn deliveries(world: &World) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in world.output() {
        *counts.entry(row["delivery"].clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn each_row_gets_one_message_and_a_rerun_sends_none() {
    let world = World::new();
    let job = mail_job(&world, "127.0.0.1").write(&world, "job.toml");
    command(&world, "run", &job, &["--deliver"]).code(0);
    let mail = caught(&world);
    let rows = world.output();
    assert_eq!((mail.len(), rows.len()), (24, 24));
    assert_eq!(deliveries(&world), BTreeMap::from([("delivered".to_owned(), 24)]));
    for (row, message) in rows.iter().zip(&mail) {
        assert_eq!(message.to, [row["customer_email"].clone()]);
        assert_eq!(message.from, "billing@example.co.th");
        assert!(message.body.contains(&row["payment_uri"]), "{}", message.body);
        assert!(row["delivery_reply"].starts_with("250 2.0.0 OK: queued as Q"), "{row:?}");
    }
    assert_eq!(header(&mail[0], "Subject"), Some("Your Standard plan for 2026-12: 599.00 THB"));
    // The body ends at its last line: no blank lines after it (there were two, one from the template's closing
    // newline and one from a CRLF before the end of data).
    assert!(mail[0].body.ends_with("\r\n\r\nThank you.\r\n"), "{:?}", mail[0].body);
    let ids: BTreeSet<&str> = mail.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), 24, "one Message-ID per row");

    let again = command(&world, "deliver", &job, &[]).code(0);
    assert_eq!(
        again.stderr.lines().last(),
        Some("deliver: 0 delivered, 0 uncertain, 0 failed, 0 rejected, 0 deferred")
    );
    command(&world, "run", &job, &["--deliver", "-q"]).says(0, "");
    assert_eq!(caught(&world).len(), 24, "a re-run mails no one");
    let ledger = world.path("ledger.jsonl");
    let status = world.linkbatch(&["status", &job, "--ledger", ledger.to_str().unwrap(), MONTH[0], MONTH[1]]).code(0);
    assert_eq!(
        status.stdout.lines().last(),
        Some("  messages:  24 delivered, 0 pending, 0 uncertain, 0 failed, 0 rejected")
    );
}

#[test]
fn a_line_break_in_a_subjects_value_is_a_rejected_row_never_a_header() {
    let world = World::new();
    let input = std::fs::read_to_string("samples/subscriptions.csv").unwrap();
    let input = crate::support::edited(
        &input,
        "Wongsakul, Nattaya\",Standard,",
        "Wongsakul, Nattaya\",\"Standard\r\nBcc: someone@example.com\",",
    );
    let path = world.path("subscriptions.csv");
    std::fs::write(&path, input).unwrap();
    let job = mail_job(&world, "127.0.0.1").set("input.path", path.to_str().unwrap()).write(&world, "job.toml");
    command(&world, "run", &job, &["--deliver"]).code(1);
    let rows = world.output();
    let rejected: Vec<&BTreeMap<String, String>> = rows.iter().filter(|r| r["delivery"] == "rejected").collect();
    assert_eq!(
        rejected.len(),
        1,
        "{:?}",
        rejected.iter().map(|r| (&r["line"], &r["delivery_reply"])).collect::<Vec<_>>()
    );
    assert_eq!(rejected[0]["line"], "2");
    assert_eq!(
        rejected[0]["delivery_reply"],
        "[deliver] subject: holds a line break, which would start a header of its own"
    );
    let mail = caught(&world);
    assert_eq!(mail.len(), 23);
    assert!(mail.iter().all(|m| header(m, "Bcc").is_none() && m.to.len() == 1), "no message carries the header");
    assert!(!mail.iter().any(|m| m.to.contains(&"someone@example.com".to_owned())));
}

#[test]
fn an_end_of_data_never_answered_is_uncertain_and_never_sent_again() {
    // 4xx replies name the recipient, as real servers' do: the -v log below must not repeat them.
    let pairs = [(FaultKind::SmtpDropAfterData, 0.3), (FaultKind::Smtp4xx, 0.2)];
    let config = SandboxConfig { faults: faults(&pairs), seed: 11, ..Default::default() };
    let world = World::with(config);
    let job = mail_job(&world, "127.0.0.1").write(&world, "job.toml");
    let logged = command(&world, "run", &job, &["--deliver", "-v"]).code(1);
    // The customers' data never reaches a log short of -vv: no address, no name, no word of a body.
    let input = std::fs::read_to_string("samples/subscriptions.csv").unwrap();
    for row in input.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        assert!(!logged.stderr.contains(cells[1]), "an address in the log:\n{}", logged.stderr);
        assert!(!logged.stderr.contains(cells[2].trim_matches('"')), "a name in the log:\n{}", logged.stderr);
    }
    assert!(!logged.stderr.contains("Pay here") && !logged.stderr.contains("Dear"), "{}", logged.stderr);
    let dropped = world.stats().faults["smtp-drop-after-data"] as usize;
    assert!(dropped > 0);
    let rows = world.output();
    let uncertain: BTreeSet<String> =
        rows.iter().filter(|r| r["delivery"] == "uncertain").map(|r| r["customer_email"].clone()).collect();
    assert_eq!(uncertain.len(), dropped, "exactly the messages the catcher kept unanswered");
    assert_eq!(caught(&world).len(), 24, "every row's message reached the catcher once");
    assert_eq!(world.ledger_events("delivered").len(), 24 - dropped);

    let again = command(&world, "deliver", &job, &[]).code(1);
    assert_eq!(
        again.stderr.lines().last().unwrap(),
        format!(
            "deliver: 0 delivered, 0 uncertain, 0 failed, 0 rejected, 0 deferred; from earlier runs: {dropped} \
             uncertain, 0 failed (deliver --resend-uncertain sends the uncertain again)"
        )
    );
    assert_eq!(caught(&world).len(), 24, "an uncertain delivery is not sent again on linkbatch's own judgement");
    command(&world, "deliver", &job, &["--resend-uncertain"]).run();
    let mail = caught(&world);
    let again: BTreeSet<String> = mail[24..].iter().map(|m| m.to[0].clone()).collect();
    assert_eq!(again, uncertain, "--resend-uncertain sends exactly the uncertain rows again");
}

#[test]
fn a_refused_mailbox_fails_its_row_and_a_4xx_is_tried_again() {
    let pairs = [(FaultKind::SmtpRejectRcpt, 0.2), (FaultKind::Smtp4xx, 0.3)];
    let world = World::with(SandboxConfig { faults: faults(&pairs), seed: 9, ..Default::default() });
    let job = mail_job(&world, "127.0.0.1").write(&world, "job.toml");
    command(&world, "run", &job, &["--deliver"]).code(1);
    let stats = world.stats();
    let (refused, deferred) = (stats.faults["smtp-reject-rcpt"] as usize, stats.faults["smtp-4xx"] as usize);
    assert!(refused > 0 && deferred > 0, "{stats:?}");
    let counts = deliveries(&world);
    assert_eq!(counts, BTreeMap::from([("delivered".to_owned(), 24 - refused), ("failed".to_owned(), refused)]));
    assert_eq!(caught(&world).len(), 24 - refused);
    let failed = world.output().into_iter().find(|r| r["delivery"] == "failed").unwrap();
    assert_eq!(failed["delivery_reply"], "550 5.1.1 mailbox unavailable (injected fault)");
    assert_eq!(world.ledger_events("deliver_deferred").len(), deferred);
}

#[test]
fn a_refused_login_stops_the_run_and_fails_no_row() {
    let config = SandboxConfig { smtp_login: Some(("billing".into(), "right".into())), ..Default::default() };
    let world = World::with(config);
    let job = mail_job(&world, "127.0.0.1").write(&world, "job.toml");
    let refused = command(&world, "run", &job, &["--deliver"]).env("SMTP_PASSWORD", "wrong").code(3);
    let port = world.sandbox.smtp_port();
    assert_eq!(
        refused.stderr.lines().last().unwrap(),
        format!(
            "error: mail server 127.0.0.1:{port}: the login was refused: 5.7.8 authentication credentials invalid; \
             unsent messages stay pending, and the next run sends them"
        )
    );
    assert!(!refused.stderr.contains("wrong"), "the password is never printed");
    assert!(!world.path("ledger.jsonl").exists(), "checked before the first link was made");
    assert_eq!(world.stats().links_held, 0);
    command(&world, "run", &job, &[]).code(0);
    command(&world, "deliver", &job, &[]).env("SMTP_PASSWORD", "wrong").code(3);
    assert_eq!(deliveries(&world), BTreeMap::from([("pending".to_owned(), 24)]));
    assert!(world.ledger_events("deliver_failed").is_empty() && caught(&world).is_empty());
    let ledger = world.path("ledger.jsonl");
    let validate = ["validate", &job, "--ledger", ledger.to_str().unwrap(), MONTH[0], MONTH[1]];
    // A dry run needs no mail credentials: every message is checked, no server contacted.
    let checked = world.linkbatch(&validate).env_remove("SMTP_USER").env_remove("SMTP_PASSWORD").code(0);
    let mail_lines: Vec<&str> = checked.stdout.lines().rev().take(2).collect();
    let not_contacted = "  mail server:      not contacted (validate --login logs in, sending nothing)";
    assert_eq!(mail_lines, [not_contacted, "  messages that cannot be written: 0"]);
    // `--login` logs in: a wrong password is refused as run's is, the right one accepted.
    let login = [&validate[..], &["--login"]].concat();
    world.linkbatch(&login).env("SMTP_USER", "billing").env("SMTP_PASSWORD", "wrong").code(3);
    let validated = world.linkbatch(&login).env("SMTP_USER", "billing").env("SMTP_PASSWORD", "right").code(0);
    let mail_lines: Vec<&str> = validated.stdout.lines().rev().take(2).collect();
    let reached = format!("  mail server:      127.0.0.1:{port} reached, login accepted");
    assert_eq!(mail_lines, [reached.as_str(), "  messages that cannot be written: 0"]);
    command(&world, "deliver", &job, &[]).code(0);
    assert_eq!(caught(&world).len(), 24);
}

#[test]
fn starttls_with_a_private_ca_the_host_trusts() {
    let authority = Authority::new("linkbatch mail CA");
    let world =
        authority.sandbox(SandboxConfig { smtp_login: Some(("billing".into(), "right".into())), ..Default::default() });
    let job = mail_job(&world, "localhost").write(&world, "job.toml");
    let ca = authority.ca_file(&world, "ca.pem");
    // The API is served over HTTPS by the same CA: links first, then mail with and without the CA.
    command(&world, "run", &job, &[]).env("SSL_CERT_FILE", &ca).code(0);
    let untrusted = world.path("empty.pem");
    std::fs::write(&untrusted, "").unwrap();
    let refused = command(&world, "deliver", &job, &[]).env("SSL_CERT_FILE", untrusted.to_str().unwrap()).code(3);
    let port = world.sandbox.smtp_port();
    assert_eq!(
        refused.error(),
        format!(
            "error: mail server localhost:{port}: STARTTLS: the server's certificate is issued by a CA this host does \
             not trust; name the CA with SSL_CERT_FILE or SSL_CERT_DIR, or add it to the system's trust store; unsent \
             messages stay pending, and the next run sends them"
        )
    );
    assert!(caught(&world).is_empty() && world.ledger_events("deliver_failed").is_empty());
    command(&world, "deliver", &job, &[]).env("SSL_CERT_FILE", &ca).code(0);
    assert_eq!(caught(&world).len(), 24);
}

#[test]
fn smtps_with_a_private_ca_the_host_trusts() {
    let authority = Authority::new("linkbatch mail CA");
    let world = authority.sandbox(SandboxConfig { smtps: true, ..Default::default() });
    let job = mail_job(&world, "localhost")
        .set("deliver.smtp", format!("smtps://localhost:{}", world.sandbox.smtp_port()))
        .write(&world, "job.toml");
    let ca = authority.ca_file(&world, "ca.pem");
    command(&world, "run", &job, &["--deliver"]).env("SSL_CERT_FILE", &ca).code(0);
    assert_eq!(caught(&world).len(), 24);
    assert_eq!(deliveries(&world), BTreeMap::from([("delivered".to_owned(), 24)]));
}

#[test]
fn reminders_go_to_the_unpaid_after_their_interval_at_most_twice() {
    let world = World::new();
    let input = std::fs::read_to_string("samples/subscriptions.csv").unwrap();
    let twenty: Vec<&str> = input.lines().take(21).collect();
    let path = world.path("twenty.csv");
    std::fs::write(&path, twenty.join("\n") + "\n").unwrap();
    let job = mail_job(&world, "127.0.0.1")
        .set("input.path", path.to_str().unwrap())
        .set("deliver.reminder.after", "3s")
        .write(&world, "job.toml");
    command(&world, "run", &job, &["--deliver"]).code(0);
    let links: Vec<String> = world.output().iter().map(|r| r["link_id"].clone()).collect();
    for id in &links[..5] {
        let answer =
            world.http().send(world.http().request(reqwest::Method::POST, &format!("/__sandbox/links/{id}/pay")));
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let reminders =
        |world: &World| caught(world).iter().filter(|m| header(m, "Subject").unwrap().starts_with("Reminder")).count();
    // Right after the first messages, nothing is due yet.
    command(&world, "deliver", &job, &["--remind"]).code(0);
    assert_eq!(reminders(&world), 0);
    std::thread::sleep(std::time::Duration::from_secs(3));
    command(&world, "deliver", &job, &["--remind"]).code(0);
    assert_eq!(reminders(&world), 15);
    command(&world, "deliver", &job, &["--remind"]).code(0);
    assert_eq!(reminders(&world), 15, "again at once: none");
    std::thread::sleep(std::time::Duration::from_secs(3));
    command(&world, "deliver", &job, &["--remind"]).code(0);
    assert_eq!(reminders(&world), 30);
    std::thread::sleep(std::time::Duration::from_secs(3));
    command(&world, "deliver", &job, &["--remind"]).code(0);
    assert_eq!(reminders(&world), 30, "at_most = 2");
    let paid: BTreeSet<String> = world.output()[..5].iter().map(|r| r["customer_email"].clone()).collect();
    assert!(
        caught(&world)
            .iter()
            .filter(|m| header(m, "Subject").unwrap().starts_with("Reminder"))
            .all(|m| !paid.contains(&m.to[0]))
    );
}

/// 300 rows, each with its own address, and a job that links them with no limit and mails them at 150/s (two
/// seconds of mail, so that kills land while messages are in flight), retrying quickly.
fn torture_job(world: &World) -> String {
    let mut text = String::from("id,email,amount\n");
    for i in 0..300 {
        let _ = writeln!(text, "R{i:04},r{i:04}@example.com,{}", 1000 + i);
    }
    let input = world.path("rows.csv");
    std::fs::write(&input, text).unwrap();
    let job = format!(
        "name = \"mail-torture\"\n[api]\nkind = \"links\"\ntimeout = \"400ms\"\n[input]\npath = \"{}\"\nkey = \"{{id}}\"\n\
         [link]\namount = \"{{amount}}\"\namount_unit = \"minor\"\ncurrency = \"thb\"\ntitle = \"Item {{id}}\"\ndescription = \"d\"\n\
         [limits]\nrates = []\nconcurrency = 8\n[retry]\nattempts = 30\nbase_delay = \"20ms\"\nmax_delay = \"200ms\"\n\
         [deliver]\nto = \"{{email}}\"\nfrom = \"shop@example.com\"\nsubject = \"Your link {{id}}\"\n\
         text = \"{{payment_uri}}\"\nsmtp = \"smtp://127.0.0.1:{}\"\nrates = [\"150/s\"]\n",
        input.display(),
        world.sandbox.smtp_port()
    );
    let path = world.path("job.toml");
    std::fs::write(&path, job).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn kill_nine_through_a_run_that_delivers() {
    use rand::{Rng, SeedableRng};
    let pairs = [
        (FaultKind::DropAfterCommit, 0.05),
        (FaultKind::ServerErrorAfter, 0.03),
        (FaultKind::SmtpDropAfterData, 0.04),
        (FaultKind::Smtp4xx, 0.05),
    ];
    let world = World::with(SandboxConfig { faults: faults(&pairs), seed: 2026, ..Default::default() });
    let job = torture_job(&world);
    let run = || world.job("run", &job, &["--deliver", "-q"]).command_for_spawn();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut kills = 0;
    while kills < 24 {
        let mut child = run().spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(30..400)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let mut ended = None;
    for _ in 0..5 {
        ended = run().status().unwrap().code();
        let rows = world.output();
        if rows.iter().all(|r| r["delivery"] == "delivered" || r["delivery"] == "uncertain") {
            break;
        }
    }
    assert!(matches!(ended, Some(0 | 1)), "{ended:?}");
    let stats = world.stats();
    assert_eq!(stats.links_held, 300, "one link per row");
    let rows = world.output();
    assert!(
        rows.iter().all(|r| r["delivery"] == "delivered" || r["delivery"] == "uncertain"),
        "every row delivered or uncertain"
    );

    let mail = caught(&world);
    let mut per_address: BTreeMap<&str, usize> = BTreeMap::new();
    for message in &mail {
        *per_address.entry(message.to[0].as_str()).or_default() += 1;
    }
    assert!(per_address.values().all(|&n| n == 1), "no address received two messages");
    let delivered: BTreeSet<&str> =
        rows.iter().filter(|r| r["delivery"] == "delivered").map(|r| r["key"].as_str()).collect();
    let uncertain: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["delivery"] == "uncertain")
        .map(|r| format!("r{}@example.com", &r["key"][1..]).to_ascii_lowercase())
        .collect();
    let received_unanswered: BTreeSet<String> = per_address
        .keys()
        .filter(|a| !delivered.contains(format!("R{}", &a[1..5]).as_str()))
        .map(|a| (*a).to_owned())
        .collect();
    assert!(received_unanswered.is_subset(&uncertain), "a message received with no reply recorded is uncertain");
    let never_received = uncertain.difference(&received_unanswered).count();
    assert!(never_received <= kills, "{never_received} uncertain rows the catcher never got, after {kills} kills");
    eprintln!(
        "{kills} kills; {} messages, {} uncertain ({} of them never received); faults {:?}",
        mail.len(),
        uncertain.len(),
        never_received,
        stats.faults
    );

    run().status().unwrap();
    assert_eq!(caught(&world).len(), mail.len(), "a re-run sends nothing");
}
