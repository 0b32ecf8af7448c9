//! What Omise enforces, as the sandbox keeps it: its own copy, not the client's, so that a wrong rule in
//! linkbatch's checks is a disagreement a test can see rather than a bug both sides share. The values are
//! pinned below to the documents they come from (docs/reference.md, "What Omise documents").

/// The longest classic title (the Links guide).
pub const MAX_TITLE: usize = 200;
/// The longest classic description (the Links guide).
pub const MAX_DESCRIPTION: usize = 1000;
/// The longest Links+ name (the Payment Links+ documentation).
pub const MAX_PLUS_NAME: usize = 45;
/// The smallest Links+ amount, in the smallest unit (the Payment Links+ documentation).
pub const MIN_PLUS_AMOUNT: u64 = 100;
/// The API version the sandbox answers in its current shape; an older `Omise-Version` gets the older shape.
pub const API_VERSION: &str = "2019-05-29";

/// A Links+ `custom_webhook` the server takes: `https://` with a host (an `http://` URL is refused).
pub fn webhook_accepted(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty() && !host.starts_with(':') && !host.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_numbers() {
        assert_eq!((MAX_TITLE, MAX_DESCRIPTION, MAX_PLUS_NAME, MIN_PLUS_AMOUNT), (200, 1000, 45, 100));
        assert_eq!(API_VERSION, "2019-05-29");
    }

    #[test]
    fn a_webhook_needs_https_and_a_host() {
        assert!(webhook_accepted("https://tickets.example.com/hooks/omise"));
        assert!(webhook_accepted("https://example.com"));
        for refused in ["http://example.com/hook", "https://", "https:///hook", "ftp://example.com", "https://:443/x"] {
            assert!(!webhook_accepted(refused), "{refused}");
        }
    }
}
