//! One integration-test binary. Every test talks to a real sandbox over loopback (127.0.0.1, an ephemeral
//! port) and, where it tests the product, runs the real `linkbatch` binary; assertions are on what a user
//! sees: exit codes, the output CSV, and what the sandbox holds and served.

mod after;
mod architecture;
mod clock;
mod compat;
mod deliver;
mod disk;
mod documented;
mod fuzz;
mod guards;
mod guide;
mod hands;
mod host;
mod hostile;
mod lifecycle;
mod listen;
mod outages;
mod papercuts;
mod rates;
mod real_api;
mod run;
mod sandbox_api;
mod snapshots;
mod spreadsheets;
mod support;
mod torture;
