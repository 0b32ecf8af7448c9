//! The rules a URL of the job meets: https anywhere, plain http only on this machine (the sandbox), no
//! credentials in it. Parses; never connects.

/// Whether `host` names this machine: plain http is allowed there only (the sandbox).
pub(super) fn is_loopback(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks a base URL: https anywhere, plain http only on a loopback address (the sandbox).
pub fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("base URL `{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(parsed.host()) => {}
        "http" => {
            return Err(format!("base URL `{url}` must use https:// (plain http is allowed on loopback only)"));
        }
        other => return Err(format!("base URL `{url}` has scheme `{other}`; use https://")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("base URL must not carry credentials; the key comes from the environment".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The https rule for a Links+ `custom_webhook` (the Payment Links+ documentation: an `http://` URL is rejected): a URL with the
/// scheme `https` and a host. One rule for a fixed URL in the job and one rendered per row.
pub fn check_webhook(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" && parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!("`{url}` must be an https:// URL with a host")),
    }
}
