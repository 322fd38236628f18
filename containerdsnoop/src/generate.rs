//! `--generate KIND`: the man page and the bash, zsh and fish completions, made from the clap
//! definition in `cli.rs` (as ripgrep's `--generate` does), so that they always match the flags
//! of the binary that prints them. `cargo xtask dist` ships their output.

use std::io::Write;

use anyhow::Context as _;
use clap_complete::Shell;
use containerdsnoop::cli::{self, Generate};

/// The man page's OVERHEAD section (as bcc's man pages state theirs): the figures of
/// `cargo xtask bench`, kept with the date in docs/benchmarks.md and the README.
const OVERHEAD_SECTION: &str = r#".SH OVERHEAD
Measured by cargo xtask bench on 2026\-12\-03 (two shared AMD EPYC cores, load 1.4\-4),
tracepoint backend, one gRPC unary call at a time over a unix socket, table output:
calls per second traced/untraced 0.78\-0.83 (a socat \-v relay: 0.21\-0.22);
12\-15 us of tracer CPU per decoded call;
1.3\-1.5 us of BPF program time per traced send, none for other processes' writes below
Linux 7.0 (from 7.0 the syscall entry and exit programs cost every write about 0.6\-0.8 us);
52\-57 MB RSS with 1,000 open connections, 32 MB of it the 16 MiB ring buffer (mapped twice);
no loss up to about 500 MB/s of undecodable bulk writes with the default ring.
Lost records are counted in the exit summary, never dropped silently.
"#;

/// Writes what `kind` asks for to `out`.
pub fn write(kind: Generate, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = cli::command();
    match kind {
        Generate::Man => {
            clap_mangen::Man::new(command)
                .render(out)
                .context("rendering the man page")?;
            out.write_all(OVERHEAD_SECTION.as_bytes())
                .context("writing to stdout")?;
        }
        Generate::CompleteBash => complete(Shell::Bash, &mut command, out),
        Generate::CompleteZsh => complete(Shell::Zsh, &mut command, out),
        Generate::CompleteFish => complete(Shell::Fish, &mut command, out),
    }
    out.flush().context("writing to stdout")
}

fn complete(shell: Shell, command: &mut clap::Command, out: &mut dyn Write) {
    let name = command.get_name().to_string();
    clap_complete::generate(shell, command, name, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(kind: Generate) -> String {
        let mut out = Vec::new();
        write(kind, &mut out).expect("generate");
        String::from_utf8(out).expect("UTF-8")
    }

    /// Every visible long flag is documented and completed; hidden ones are not documented.
    #[test]
    fn every_flag_is_in_man_page_and_completions() {
        let command = cli::command();
        let flags: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .map(str::to_string)
            .collect();
        assert!(flags.len() > 15, "{flags:?}");
        let man = generated(Generate::Man);
        let bash = generated(Generate::CompleteBash);
        let zsh = generated(Generate::CompleteZsh);
        let fish = generated(Generate::CompleteFish);
        for flag in &flags {
            // roff escapes '-' as '\-'.
            let in_man = man.contains(&format!("\\-\\-{}", flag.replace('-', "\\-")));
            assert!(in_man, "--{flag} missing from the man page");
            assert!(
                bash.contains(&format!("--{flag}")),
                "--{flag} missing (bash)"
            );
            assert!(zsh.contains(&format!("--{flag}")), "--{flag} missing (zsh)");
            assert!(
                fish.contains(&format!("-l {flag}")),
                "--{flag} missing (fish)"
            );
        }
        // Internal flags stay out of the manual (clap_complete's bash script lists them all).
        assert!(!man.contains("load\\-only") && !man.contains("\\-\\-generate"));
        assert!(man.starts_with(".ie") || man.contains(".TH containerdsnoop"));
        assert!(
            man.contains(".SH OVERHEAD"),
            "the man page states the overhead"
        );
    }
}
