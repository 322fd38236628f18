//! `--load-only`: every program of [`PROGRAMS`](super::programs::PROGRAMS) this kernel can run
//! is loaded (verified), none attached.

use super::{
    CaptureConfig,
    backend::Backend,
    load::load_object,
    programs::{PROGRAMS, Part, Program, has_bpf_loop},
};

/// What `--load-only` verified.
pub struct Verified {
    /// The programs the verifier accepted.
    pub programs: Vec<String>,
    /// Why some were not loaded at all, if so.
    pub skipped: Option<&'static str>,
}

/// Why the tracepoint backend's programs are not loaded without `bpf_loop`.
const NO_BPF_LOOP: &str = "the tracepoint backend's, which need bpf_loop (Linux >= 5.17)";

/// Verifies (loads) every program this kernel can run without attaching anything: `--load-only`,
/// used by tests to prove the kprobe programs pass the verifier on kernels where they cannot
/// attach.
pub fn verify_all(config: &CaptureConfig) -> anyhow::Result<Verified> {
    let (mut ebpf, _selection) = load_object(config)?;
    let bpf_loop = has_bpf_loop();
    let close_fields = config.layout.close_fields_present();
    let mut verified = Verified {
        programs: Vec::new(),
        skipped: None,
    };
    for program in to_verify(bpf_loop, close_fields) {
        program.load(&mut ebpf)?;
        verified.programs.push(program.name.to_string());
    }
    if !bpf_loop {
        verified.skipped = Some(NO_BPF_LOOP);
    }
    Ok(verified)
}

/// The programs `--load-only` loads, each once, in table order: every program whose build
/// fits, except, without `bpf_loop`, the tracepoint backend's (its programs use bpf_loop;
/// kernels without it, < 5.17, also lack sock_send_length, 6.3, so they could not run it
/// anyway), and the tracepoint backend's close programs where the kernel's BTF lacks what they
/// read.
fn to_verify(bpf_loop: bool, close_fields: bool) -> Vec<&'static Program> {
    let mut rows: Vec<&'static Program> = Vec::new();
    for p in &PROGRAMS {
        let tracepoint = p.backend == Backend::Tracepoint;
        let unreadable_close = p.part == Part::Close && !close_fields;
        let runs = p.build.fits(&|| bpf_loop) && !(tracepoint && (!bpf_loop || unreadable_close));
        if runs && !rows.iter().any(|q| q.name == p.name) {
            rows.push(p);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::to_verify;

    fn names(bpf_loop: bool, close_fields: bool) -> Vec<&'static str> {
        to_verify(bpf_loop, close_fields)
            .iter()
            .map(|p| p.name)
            .collect()
    }

    /// The lists `--load-only` printed before the program table.
    #[test]
    fn load_only_verifies_what_it_always_did() {
        let kprobe = ["unix_release_entry", "unix_shutdown_entry"];
        let tracepoint = [
            "sys_enter_buf",
            "sys_enter_writev",
            "sys_enter_sendmsg",
            "sys_exit_send",
            "sock_send_length",
        ];
        let close = [
            "sys_enter_close",
            "sys_enter_shutdown",
            "sched_process_exit",
        ];
        let sends = ["unix_sendmsg_entry", "unix_sendmsg_return"];
        assert_eq!(
            names(true, true),
            [&sends[..], &kprobe, &tracepoint, &close].concat()
        );
        assert_eq!(
            names(true, false),
            [&sends[..], &kprobe, &tracepoint].concat()
        );
        let bounded = ["unix_sendmsg_entry", "unix_sendmsg_return_bounded"];
        for close_fields in [true, false] {
            assert_eq!(names(false, close_fields), [&bounded[..], &kprobe].concat());
        }
    }
}
