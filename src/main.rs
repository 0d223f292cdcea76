//! The `gatehouse` binary: everything lives in the library; this only runs the CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    gatehouse::cli::main()
}
