//! The figures of one run: printed as they are measured, and rendered at the end as the
//! Markdown block `docs/benchmarks.md` keeps, with the machine, the date and the load.

use std::process::Command;

use super::Which;

struct Section {
    title: &'static str,
    load: String,
    rows: Vec<[String; 4]>,
    notes: Vec<String>,
}

pub struct Report {
    quick: bool,
    machine: Vec<String>,
    sections: Vec<Section>,
    general: Vec<String>,
}

/// The 1/5/15-minute load averages: other work on the machine skews every figure.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn cmd(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            machine: Vec::new(),
            sections: Vec::new(),
            general: Vec::new(),
        }
    }

    pub fn machine(&mut self) {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "?".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
            .map_or("?".into(), |kb| format!("{:.1} GiB", kb as f64 / 1048576.0));
        let rev = cmd("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = if cmd("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            ""
        } else {
            " (with uncommitted changes)"
        };
        self.machine = vec![
            format!("- date: {}", cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
            format!(
                "- machine: {cpus} × {model}, {mem} RAM, kernel {}",
                cmd("uname", &["-r"])
            ),
            format!("- commit: {rev}{dirty}"),
            format!("- load at start (1/5/15 min): {}", load()),
            format!(
                "- mode: {}",
                if self.quick {
                    "--quick (rough figures)"
                } else {
                    "full"
                }
            ),
        ];
        for l in &self.machine {
            eprintln!("{l}");
        }
    }

    pub fn load_at_end(&mut self) {
        let l = format!("- load at end (1/5/15 min): {}", load());
        eprintln!("{l}");
        self.machine.push(l);
    }

    pub fn section(&mut self, which: Which) {
        let title = match which {
            Which::Decode => "Decode throughput (offline)",
            Which::Overhead => "Overhead on the traced workload",
            Which::Ceiling => "Lossless ceiling",
            Which::Startup => "Start-up and memory",
            Which::Profile => "Where the time goes (perf)",
        };
        eprintln!("\n== {title} (load {}) ==", load());
        self.sections.push(Section {
            title,
            load: load(),
            rows: Vec::new(),
            notes: Vec::new(),
        });
    }

    /// One measured figure; `met` is None where there is no target.
    pub fn figure(&mut self, what: &str, value: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        eprintln!("  {what}: {value}  {target} {verdict}");
        let row = [
            what.to_string(),
            value,
            target.to_string(),
            verdict.to_string(),
        ];
        match self.sections.last_mut() {
            Some(s) => s.rows.push(row),
            None => self.general.push(row.join(" ")),
        }
    }

    pub fn note(&mut self, text: &str) {
        eprintln!("  note: {text}");
        match self.sections.last_mut() {
            Some(s) => s.notes.push(text.to_string()),
            None => self.general.push(text.to_string()),
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for l in &self.machine {
            out.push_str(l);
            out.push('\n');
        }
        for g in &self.general {
            out.push_str(&format!("- {g}\n"));
        }
        for s in &self.sections {
            out.push_str(&format!("\n#### {} (load {})\n\n", s.title, s.load));
            if !s.rows.is_empty() {
                out.push_str("| figure | value | target | |\n|---|---|---|---|\n");
                for r in &s.rows {
                    out.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
                }
            }
            if !s.notes.is_empty() {
                out.push('\n');
                for n in &s.notes {
                    out.push_str(&format!("- {n}\n"));
                }
            }
        }
        out
    }
}
