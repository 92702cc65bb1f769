//! `tickraft-kv`: see `tickraft-kv --help`, and the crate docs of the library beside this file.

use std::process::ExitCode;

use clap::Parser;
use tickraft_kv::cli::{init_logging, run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_level.as_deref()) {
        eprintln!("tickraft-kv: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickraft-kv: {e}");
            ExitCode::FAILURE
        }
    }
}
