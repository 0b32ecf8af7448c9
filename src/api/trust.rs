//! What the host trusts, and how it reaches the server: the OS trust store and `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` (as curl, git, pip and OpenSSL read them) beside the roots compiled in, and the proxy the
//! environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, which reqwest honours itself). Also tells a
//! certificate the client refused from a server it could not reach.
//!
//! Owns reading the host's certificates once per process; never trusts more than the host does, and never
//! logs a proxy's credentials.

use std::sync::OnceLock;

/// The host's roots, read once: the platform's store, or the files `SSL_CERT_FILE`/`SSL_CERT_DIR` name.
pub(super) fn host_roots() -> &'static [reqwest::Certificate] {
    static ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("a certificate of the host's trust store could not be read: {error}");
        }
        let roots: Vec<reqwest::Certificate> =
            found.certs.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok()).collect();
        let from = match (std::env::var_os("SSL_CERT_FILE"), std::env::var_os("SSL_CERT_DIR")) {
            (None, None) => "the system's trust store".to_owned(),
            (file, dir) => [
                file.map(|f| format!("SSL_CERT_FILE={}", f.to_string_lossy())),
                dir.map(|d| format!("SSL_CERT_DIR={}", d.to_string_lossy())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        };
        tracing::debug!("trusting {} certificates from {from}, beside the roots built in", roots.len());
        roots
    })
}

/// The proxy a request to `base` goes through, as the environment names it, for `-v` (credentials cut):
/// `None` when it goes direct.
pub(super) fn proxy_for(base: &url::Url) -> Option<String> {
    let host = base.host_str()?;
    let var = |name: &str| {
        std::env::var(name).ok().or_else(|| std::env::var(name.to_ascii_lowercase()).ok()).filter(|v| !v.is_empty())
    };
    if let Some(skip) = var("NO_PROXY") {
        let skipped = skip.split(',').map(str::trim).filter(|s| !s.is_empty()).any(|entry| {
            entry == "*"
                || host == entry.trim_start_matches('.')
                || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))
        });
        if skipped {
            return None;
        }
    }
    let proxy =
        if base.scheme() == "https" { var("HTTPS_PROXY") } else { var("HTTP_PROXY") }.or_else(|| var("ALL_PROXY"))?;
    Some(match url::Url::parse(&proxy) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "a proxy whose address is not a URL".to_owned(),
    })
}

/// What the certificate check refused, in words, when `error`'s causes hold such a refusal: the run cannot
/// go on until the host trusts the server's CA (or the address is fixed).
pub(crate) fn refused_certificate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(why)) = e.downcast_ref::<rustls::Error>() {
            return Some(certificate_words(why));
        }
        // An `io::Error` wrapping another error names, as its source, that error's source: step into the
        // wrapped error itself (hyper wraps rustls' refusal in two of them).
        cause = match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn certificate_words(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match why {
        C::UnknownIssuer => "the server's certificate is issued by a CA this host does not trust".to_owned(),
        C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".to_owned(),
        C::NotValidYet | C::NotValidYetContext { .. } => "the server's certificate is not valid yet".to_owned(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for the address the job names".to_owned()
        }
        C::Revoked => "the server's certificate was revoked".to_owned(),
        other => format!("the server's certificate was refused ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_refusal_is_found_among_the_causes() {
        // As hyper hands it over: the refusal in an `io::Error` in another `io::Error`.
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let wrapped = anyhow::Error::new(std::io::Error::other(io)).context("client error (Connect)");
        let found = refused_certificate(wrapped.as_ref());
        assert_eq!(found.as_deref(), Some("the server's certificate is issued by a CA this host does not trust"));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(refused_certificate(&refused), None);
    }
}
