//! The kmsd binary: everything lives in the library so tests can build it.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kmsd::cli::main()
}
