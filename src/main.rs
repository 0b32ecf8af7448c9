//! The `linkbatch` binary: everything lives in the library; this prints how the command ended and exits.

fn main() -> std::process::ExitCode {
    let outcome = linkbatch::run(std::env::args_os());
    if let Some(message) = outcome.message() {
        linkbatch::said::say(linkbatch::said::Kind::Error, &message);
    }
    std::process::ExitCode::from(outcome.code())
}
