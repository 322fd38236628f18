//! Writes the seed corpora: `seeds FIXTURES_DIR CORPUS_DIR TARGET...` (run by `cargo xtask fuzz`).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fixtures, corpus, targets @ ..] = args.as_slice() else {
        eprintln!("usage: seeds FIXTURES_DIR CORPUS_DIR TARGET...");
        return ExitCode::FAILURE;
    };
    let seeds = match containerdsnoop_fuzz::seeds::from_fixtures(&PathBuf::from(fixtures)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("seeds: reading {fixtures}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match containerdsnoop_fuzz::seeds::write(&seeds, &PathBuf::from(corpus), targets) {
        Ok(n) => {
            eprintln!("seeds: {n} seed files under {corpus}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seeds: writing {corpus}: {e}");
            ExitCode::FAILURE
        }
    }
}
