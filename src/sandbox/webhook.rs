//! The sandbox's webhooks: each event posted to every `--webhook` URL as Omise posts it (the body is the
//! event object as `GET /events` lists it), signed with `--webhook-secret` in the scheme asked, and sent
//! again with backoff until it is answered 2xx. The sandbox's own copy of the signing rule: linkbatch's
//! listener verifies with code that shares none of this.
//!
//! Two schemes, since Omise has not settled one in public: `body`, an HMAC-SHA256 hex digest of the raw
//! body in `Omise-Signature` keyed with the secret as written (the seed's example); `timestamped`, an
//! HMAC-SHA256 over `"<Omise-Signature-Timestamp>.<raw body>"` keyed with the base64-decoded secret (how
//! integrators verify today).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// How each post is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `Omise-Signature`: HMAC-SHA256 of the raw body, hex.
    #[default]
    Body,
    /// `Omise-Signature-Timestamp` and `Omise-Signature`: HMAC-SHA256 of `"<timestamp>.<body>"` keyed with
    /// the base64-decoded secret, hex.
    Timestamped,
}

impl Scheme {
    /// The name `--webhook-scheme` takes.
    pub fn parse(name: &str) -> Result<Scheme, String> {
        match name {
            "body" => Ok(Scheme::Body),
            "timestamped" => Ok(Scheme::Timestamped),
            _ => Err(format!("unknown webhook scheme `{name}` (body, timestamped)")),
        }
    }
}

/// Where the sandbox posts its events, and how it signs them.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// Each event goes to every one of these.
    pub urls: Vec<String>,
    /// Signs every post when set.
    pub secret: Option<String>,
    /// How.
    pub scheme: Scheme,
    /// The first wait before a post is sent again; it doubles up to 5 s.
    pub first_retry: Duration,
}

/// Attempts of one post before it is given up (about three minutes at the default waits).
const ATTEMPTS: u32 = 40;

/// The headers that sign `body` at `at` (unix seconds), as the scheme says; none without a secret.
pub fn sign(hooks: &Webhooks, body: &[u8], at: u64) -> Result<Vec<(&'static str, String)>, String> {
    let Some(secret) = &hooks.secret else { return Ok(Vec::new()) };
    let hex = |key: &[u8], parts: &[&[u8]]| -> Result<String, String> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
        for part in parts {
            mac.update(part);
        }
        Ok(crate::digest::hex(&mac.finalize().into_bytes()))
    };
    match hooks.scheme {
        Scheme::Body => Ok(vec![("Omise-Signature", hex(secret.as_bytes(), &[body])?)]),
        Scheme::Timestamped => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret)
                .map_err(|e| format!("--webhook-secret is not base64, as the timestamped scheme needs: {e}"))?;
            let stamp = at.to_string();
            let signature = hex(&key, &[stamp.as_bytes(), b".", body])?;
            Ok(vec![("Omise-Signature-Timestamp", stamp), ("Omise-Signature", signature)])
        }
    }
}

/// Posts every event that arrives on `events` to every URL, each post on its own until it is taken.
pub(super) async fn send_all(
    mut events: mpsc::UnboundedReceiver<Value>,
    hooks: Webhooks,
    stopped: watch::Receiver<bool>,
) {
    // Loopback in tests; never through a proxy, and never a redirect followed.
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    while let Some(event) = events.recv().await {
        let Ok(body) = serde_json::to_vec(&event) else { continue };
        for url in &hooks.urls {
            tokio::spawn(post(client.clone(), url.clone(), body.clone(), hooks.clone(), stopped.clone()));
        }
    }
}

/// One event to one URL, sent again (signed afresh) until a 2xx answers or the attempts run out.
async fn post(
    client: reqwest::Client,
    url: String,
    body: Vec<u8>,
    hooks: Webhooks,
    mut stopped: watch::Receiver<bool>,
) {
    let mut wait = hooks.first_retry.max(Duration::from_millis(10));
    for _ in 0..ATTEMPTS {
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let Ok(headers) = sign(&hooks, &body, at) else { return };
        let mut request = client.post(&url).header("Content-Type", "application/json").body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if request.send().await.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn the_body_scheme_is_hmac_sha256_as_rfc_4231_has_it() {
        let hooks = Webhooks { secret: Some("Jefe".into()), ..Webhooks::default() };
        let headers = sign(&hooks, b"what do ya want for nothing?", 0).unwrap();
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(headers, [("Omise-Signature", expected.to_owned())]);
    }

    #[test]
    fn the_timestamped_scheme_signs_the_stamp_and_the_body_with_the_decoded_secret() {
        // base64 of "Jefe"; the message is "<stamp>.<body>", split here so that it reads as RFC 4231's.
        let hooks = Webhooks { secret: Some("SmVmZQ==".into()), scheme: Scheme::Timestamped, ..Webhooks::default() };
        let headers = sign(&hooks, b"do ya want for nothing?", 0).unwrap();
        assert_eq!(headers[0], ("Omise-Signature-Timestamp", "0".to_owned()));
        let plain = Webhooks { secret: Some("Jefe".into()), ..Webhooks::default() };
        let same = sign(&plain, b"0.do ya want for nothing?", 0).unwrap();
        assert_eq!(headers[1].1, same[0].1);
        let bad = Webhooks { secret: Some("not base64!".into()), scheme: Scheme::Timestamped, ..Webhooks::default() };
        assert!(sign(&bad, b"{}", 0).is_err());
    }
}
