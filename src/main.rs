//! The `linkbatch` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    linkbatch::cli::main()
}
