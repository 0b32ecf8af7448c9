//! `completions` and `man`: shell completions and manual pages made from the command line's own
//! definition (clap), and a section-5 page for the job file made from [`JOB_FIELDS`], which a unit test
//! holds against the job file's parser. Writes only the pages it names, never over a file it did not make.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::{Cli, Ended, usage};
use crate::outcome::Outcome;

/// One field of the job file: its table, its name, an example value, and what it does.
pub(crate) struct JobField {
    pub(crate) table: &'static str,
    pub(crate) name: &'static str,
    pub(crate) example: &'static str,
    pub(crate) meaning: &'static str,
}

const fn field(table: &'static str, name: &'static str, example: &'static str, meaning: &'static str) -> JobField {
    JobField { table, name, example, meaning }
}

/// Every field the job file takes, as `crate::job` reads it (a unit test parses a job made of them all).
pub(crate) const JOB_FIELDS: &[JobField] = &[
    field("", "name", "\"monthly-subscriptions\"", "The job's name, in logs, monitors and default paths."),
    field("api", "kind", "\"links\"", "\"links\" (the classic Links API) or \"links_plus\" (Payment Links+)."),
    field(
        "api",
        "key_env",
        "\"OMISE_SECRET_KEY\"",
        "The variable holding the key; also read from the file named by <key_env>_FILE or from $CREDENTIALS_DIRECTORY/<key_env>.",
    ),
    field("api", "base_url", "\"https://api.omise.co\"", "The API's address: https, or http on a loopback address."),
    field(
        "api",
        "timeout",
        "\"30s\"",
        "Per request; a timeout after sending is an uncertain outcome, reconciled before any resend.",
    ),
    field(
        "api",
        "auth",
        "\"auto\"",
        "Links+: how the key is sent: auto (found on a read and recorded), raw, bearer or basic.",
    ),
    field(
        "api",
        "mode",
        "\"test\"",
        "For a key that does not say (a Payment Links+ API key): test or live. Without it such a key needs --live.",
    ),
    field(
        "input",
        "path",
        "\"../samples/subscriptions.csv\"",
        "The rows: CSV with a header line, or JSONL. Like every path of the job, read beside the job file.",
    ),
    field("input", "format", "\"csv\"", "csv, jsonl, xlsx or ods; taken from the extension when absent."),
    field(
        "input",
        "key",
        "\"{subscription_id}:{billing_month}\"",
        "Each row's key, unique in the input: the ledger remembers links by it.",
    ),
    field("input", "delimiter", "\";\"", "CSV: the character between fields (\",\" when absent; \"\\t\" for TSV)."),
    field(
        "input",
        "sheet",
        "\"Products\"",
        "A spreadsheet's sheet (the first when absent); a number cell is money only when exactly a decimal with \
         its currency's places.",
    ),
    field("link", "amount", "\"{monthly_amount}\"", "The amount, from the row."),
    field("link", "amount_unit", "\"minor\"", "minor (satang, cents) or major (\"990.00\"); never rounded."),
    field("link", "currency", "\"thb\"", "thb, jpy, sgd, myr or usd (Links+: the template's when absent)."),
    field("link", "title", "\"{plan_name} - {billing_month}\"", "Classic: the link's title (200 characters at most)."),
    field(
        "link",
        "description",
        "\"Monthly payment for {plan_name}\"",
        "Classic: the description (1000 characters at most).",
    ),
    field("link", "multiple", "false", "Classic: a link that can be paid more than once."),
    field("link", "key_in_metadata", "true", "Classic: send the row's key as metadata linkbatch_key."),
    field(
        "link",
        "metadata",
        "{ invoice_id = \"{invoice}\" }",
        "Classic: metadata, a template per name (also written as a [link.metadata] table).",
    ),
    field("link", "team_id", "456", "Links+: the team."),
    field("link", "template_id", "123", "Links+: the template."),
    field("link", "name", "\"{event} - {tier}\"", "Links+: the link's name (45 characters at most)."),
    field("link", "multiple_usage", "true", "Links+: a link that can be paid more than once."),
    field("link", "custom_webhook", "\"https://example.com/hook\"", "Links+: a webhook for this link (https only)."),
    field("limits", "rates", "[\"60/min\", \"1000/h\"]", "Sliding windows COUNT/PERIOD the run keeps to."),
    field("limits", "concurrency", "4", "Requests in flight at once."),
    field(
        "limits",
        "active_links",
        "100",
        "The account's cap on active links: a job that would pass it is refused before anything is sent.",
    ),
    field("retry", "attempts", "6", "Attempts per request, the first included."),
    field("retry", "base_delay", "\"1s\"", "The first backoff delay."),
    field("retry", "max_delay", "\"60s\"", "The longest backoff delay."),
    field(
        "retry",
        "outage",
        "\"15m\"",
        "How long a run waits for a server it cannot reach (every worker together, one probe at a time), then \
         exit 3 with unsent rows pending.",
    ),
    field(
        "retry",
        "breaker",
        "10",
        "Refusals with one code in a row that stop dispatch (at most this many reach the server).",
    ),
    field(
        "output",
        "path",
        "\"../out/monthly-subscriptions-{billing_month}.csv\"",
        "The output CSV, written atomically. {job} and --var names fill in.",
    ),
    field(
        "output",
        "ledger",
        "\"../out/monthly-subscriptions.ledger.jsonl\"",
        "The ledger; beside the output when absent (named when the output's path has a --var in it).",
    ),
    field("output", "columns", "[\"subscription_id\"]", "Input columns copied into the output."),
    field(
        "monitor",
        "ping",
        "\"https://hc-ping.com/UUID\"",
        "Healthchecks' protocol: <ping>/start when a command that sends begins, <ping> on exit 0, <ping>/<code> otherwise. Never changes the outcome.",
    ),
    field(
        "monitor",
        "textfile",
        "\"/var/lib/node_exporter/linkbatch.prom\"",
        "Prometheus text format for node_exporter's textfile collector, written atomically at the end: rows by status, requests by HTTP status, 429s, duration, exit code, last success.",
    ),
    field(
        "listen",
        "secret_env",
        "\"OMISE_WEBHOOK_SECRET\"",
        "The variable holding the webhook secret (or <name>_FILE, or a systemd credential): `linkbatch listen` refuses (401) a post whose Omise-Signature does not verify. Without it, listen serves loopback only.",
    ),
    field(
        "deliver",
        "to",
        "\"{customer_email}\"",
        "The recipient's address, a template. A row whose address is not one is rejected.",
    ),
    field("deliver", "to_name", "\"{customer_name}\"", "The recipient's name, a template."),
    field("deliver", "from", "\"Billing <billing@example.com>\"", "The sender; its domain ends every Message-ID."),
    field("deliver", "reply_to", "\"help@example.com\"", "Where replies go."),
    field(
        "deliver",
        "subject",
        "\"Your plan for {billing_month}: {amount_display}\"",
        "The subject, a template. Templates also see {payment_uri}, {link_id} and {amount_display} (990.00 THB). A line break in a value used in a header rejects the row.",
    ),
    field("deliver", "text", "\"Pay here: {payment_uri}\"", "The plain-text body, a template (or text_file)."),
    field("deliver", "text_file", "\"mail/monthly.txt\"", "A file holding the plain-text body."),
    field("deliver", "html", "\"<a href='{payment_uri}'>Pay</a>\"", "An HTML body, a template (or html_file)."),
    field("deliver", "html_file", "\"mail/monthly.html\"", "A file holding the HTML body."),
    field(
        "deliver",
        "smtp",
        "\"smtps://smtp.example.com:465\"",
        "The mail server: smtps:// (TLS), smtp:// (STARTTLS required); plain only on a loopback address.",
    ),
    field(
        "deliver",
        "user_env",
        "\"SMTP_USER\"",
        "The variable holding the login's user (or <NAME>_FILE, or a credential).",
    ),
    field(
        "deliver",
        "password_env",
        "\"SMTP_PASSWORD\"",
        "The variable holding its password, read like the key and never printed.",
    ),
    field("deliver", "rates", "[\"14/s\"]", "Sliding windows for messages (default 14/s)."),
    field(
        "deliver.reminder",
        "after",
        "\"3d\"",
        "How long after a row's last message a reminder goes, if a refresh shows the link unpaid.",
    ),
    field(
        "deliver.reminder",
        "subject",
        "\"Reminder: {billing_month} is unpaid\"",
        "The reminder's subject, a template.",
    ),
    field("deliver.reminder", "text", "\"Pay here: {payment_uri}\"", "Its plain-text body (or text_file)."),
    field("deliver.reminder", "text_file", "\"mail/reminder.txt\"", "A file holding it."),
    field("deliver.reminder", "html", "\"<a href='{payment_uri}'>Pay</a>\"", "Its HTML body (or html_file)."),
    field("deliver.reminder", "html_file", "\"mail/reminder.html\"", "A file holding it."),
    field("deliver.reminder", "at_most", "2", "Reminders per row at most (default 2)."),
];

/// `linkbatch completions SHELL`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> Ended {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "linkbatch", &mut out);
    out.flush().map_err(|e| usage(format!("cannot write the completions: {e}")))?;
    Ok(Outcome::Complete)
}

/// `linkbatch man DIR`: `linkbatch.1`, a page per command (`linkbatch-run.1` …) and `linkbatch-job.5`.
pub(super) fn man(dir: &Path) -> Ended {
    let fail = |e: std::io::Error| usage(format!("cannot write the manual pages in {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = vec![page(&command)?];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(page(sub)?);
    }
    pages.push(("linkbatch-job.5".to_owned(), job_page().into_bytes()));
    for (name, _) in &pages {
        refuse_foreign(&dir.join(name))?;
    }
    for (name, bytes) in &pages {
        std::fs::write(dir.join(name), bytes).map_err(fail)?;
    }
    println!("wrote {} manual pages in {}", pages.len(), dir.display());
    Ok(Outcome::Complete)
}

/// One command's page, as clap describes it (a built command's display name: `linkbatch-run`).
/// The text after the options (the examples and the exit codes) gets sections of their own, EXAMPLES and EXIT
/// STATUS, where a reader of manual pages looks, rather than clap's EXTRA.
fn page(command: &clap::Command) -> Result<(String, Vec<u8>), Outcome> {
    let after = command.get_after_help().map(ToString::to_string);
    let man = clap_mangen::Man::new(command.clone().after_help(None::<&str>));
    let mut bytes = Vec::new();
    man.render(&mut bytes).map_err(|e| usage(format!("cannot render a manual page: {e}")))?;
    if let Some(after) = after {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let at = text.find(".SH VERSION").unwrap_or(text.len());
        bytes = format!("{}{}{}", &text[..at], after_sections(&after), &text[at..]).into_bytes();
    }
    Ok((man.get_filename(), bytes))
}

/// `Examples:` (a command, then what it does, three spaces apart) and `Exit codes:` as manual sections.
fn after_sections(after: &str) -> String {
    let mut roff = Roff::new();
    for part in after.split("\n\n") {
        if let Some(examples) = part.strip_prefix("Examples:") {
            roff.control("SH", ["EXAMPLES"]);
            for line in examples.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let (command, what) = line.split_once("   ").map_or((line, ""), |(c, w)| (c.trim(), w.trim()));
                roff.control("TP", []);
                roff.text([bold(command)]);
                roff.text([roman(what)]);
            }
        } else if let Some(codes) = part.strip_prefix("Exit codes:") {
            roff.control("SH", ["EXIT STATUS"]);
            roff.text([roman(codes.split_whitespace().collect::<Vec<_>>().join(" "))]);
        } else {
            roff.control("SH", ["NOTES"]);
            roff.text([roman(part.trim())]);
        }
    }
    roff.render()
}

/// A file where a page goes that is not one of ours (a page of another program, a user's notes): left alone.
fn refuse_foreign(path: &Path) -> Result<(), Outcome> {
    match std::fs::read(path) {
        Ok(bytes) if !String::from_utf8_lossy(&bytes).contains(".TH linkbatch") => {
            Err(usage(format!("{} exists and is not a linkbatch manual page: nothing was written", path.display())))
        }
        _ => Ok(()),
    }
}

/// `linkbatch-job(5)`: the job file, table by table.
pub(crate) fn job_page() -> String {
    let mut roff = Roff::new();
    roff.control("TH", ["linkbatch-job", "5"]);
    roff.control("SH", ["NAME"]);
    roff.text([roman("linkbatch-job - the job file of linkbatch(1)")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "A job is a TOML file: what to read, how a row becomes a payment link, how fast, and where the results go. \
         Text fields are templates: {column} takes the row's value, {name} a --var, and {{ and }} write braces. \
         Unknown fields are errors, with their line. The key never sits in a job file.",
    )]);
    let mut table = None;
    for f in JOB_FIELDS {
        if table != Some(f.table) {
            let heading = if f.table.is_empty() { "TOP LEVEL".to_owned() } else { format!("[{}]", f.table) };
            roff.control("SH", [heading.as_str()]);
            table = Some(f.table);
        }
        roff.control("TP", []);
        roff.text([bold(f.name), roman(" = "), italic(f.example)]);
        roff.text([roman(f.meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("linkbatch(1), linkbatch-run(1), linkbatch-validate(1)")]);
    roff.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page names every field the parser takes, and only those: a job made of every listed field
    /// parses (unknown fields are errors), per API kind.
    use std::fmt::Write as _;

    #[test]
    fn the_job_page_lists_the_fields_the_parser_reads() {
        let classic_only: &[&str] = &["title", "description", "multiple", "key_in_metadata", "metadata"];
        let plus_only: &[&str] = &["team_id", "template_id", "name", "multiple_usage", "custom_webhook"];
        for (kind, foreign) in [("links", plus_only), ("links_plus", classic_only)] {
            let mut text = String::new();
            let mut table = "";
            for f in JOB_FIELDS.iter().filter(|f| !(f.table == "link" && foreign.contains(&f.name))) {
                if f.table != table {
                    let _ = writeln!(text, "[{}]", f.table);
                    table = f.table;
                }
                let value = if f.name == "kind" { format!("\"{kind}\"") } else { f.example.to_owned() };
                let _ = writeln!(text, "{} = {value}", f.name);
            }
            crate::job::JobSpec::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}\n{text}"));
        }
        let page = job_page();
        assert!(page.contains("\n.TH linkbatch-job 5\n"), "{page}");
        assert_eq!(page.matches(".TP").count(), JOB_FIELDS.len());
    }
}
