//! Checks of `deploy/kubernetes/daemonset.yaml`: valid against the Kubernetes API schemas
//! (PyPI's `kubernetes-validate`, which ships them), and granting exactly the privileges its
//! comments justify. The image test (containerdsnoop/tests/e2e_ship.rs) runs the container
//! with what this file grants, read from the same file.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, ensure};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{dist, setup};

pub const MANIFEST: &str = "deploy/kubernetes/daemonset.yaml";
const VALIDATOR_VERSION: &str = "1.37.0";
/// The oldest and the newest Kubernetes the manifest must be valid for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// The capabilities the tracer needs (see the manifest's comments): no more, no less.
const CAPABILITIES: [&str; 2] = ["BPF", "PERFMON"];
/// Host paths it may mount, all read-only: BTF, tracefs, and /run for the runtime sockets
/// (selected by file identity, so the tracer must see them).
const HOST_PATHS: [&str; 3] = ["/run", "/sys/kernel/btf", "/sys/kernel/tracing"];

/// The venv that holds `kubernetes-validate` (Debian 12's pip refuses system-wide installs).
fn venv() -> anyhow::Result<PathBuf> {
    Ok(dist::target_dir()?.join("tools/k8s-validate"))
}

/// Installs `kubernetes-validate` into its venv, unless it is there already.
pub fn setup_validator() -> anyhow::Result<()> {
    let venv = venv()?;
    let validator = venv.join("bin/kubernetes-validate");
    let installed = Command::new(&validator)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VALIDATOR_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!(
        "xtask setup: pip install kubernetes-validate=={VALIDATOR_VERSION} (in {})",
        venv.display()
    );
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    ensure!(ok, "python3 -m venv failed (apt-get install python3-venv)");
    let ok = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            &format!("kubernetes-validate=={VALIDATOR_VERSION}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    ensure!(ok, "pip install kubernetes-validate failed");
    Ok(())
}

/// Runs every check; returns (passed, failed).
pub fn check() -> (usize, usize) {
    let checks: [(&str, &dyn Fn() -> anyhow::Result<()>); 3] = [
        ("valid against the Kubernetes API schemas", &check_schema),
        (
            "the validator rejects a broken copy",
            &check_validator_rejects,
        ),
        (
            "grants only BPF, PERFMON, hostPID, read-only BTF and tracefs",
            &check_policy,
        ),
    ];
    let mut tally = (0, 0);
    for (name, check) in checks {
        match check() {
            Ok(()) => {
                println!("manifest: {name} ... ok");
                tally.0 += 1;
            }
            Err(e) => {
                println!("manifest: {name} ... FAILED: {e:#}");
                tally.1 += 1;
            }
        }
    }
    tally
}

fn validate(path: &std::path::Path, kubernetes: &str) -> anyhow::Result<(bool, String)> {
    setup_validator()?;
    let out = Command::new(venv()?.join("bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", kubernetes])
        .arg(path)
        .output()
        .context("running kubernetes-validate")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn check_schema() -> anyhow::Result<()> {
    let path = setup::workspace_root()?.join(MANIFEST);
    for version in KUBERNETES_VERSIONS {
        let (ok, text) = validate(&path, version)?;
        ensure!(ok, "Kubernetes {version}: {text}");
        // One line per document: Namespace, ServiceAccount, DaemonSet.
        ensure!(
            text.matches("INFO").count() >= 3,
            "not every document was checked: {text}"
        );
    }
    Ok(())
}

fn check_validator_rejects() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(setup::workspace_root()?.join(MANIFEST))?;
    let broken = text.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:");
    ensure!(broken != text, "nothing to break");
    let path = dist::target_dir()?.join("daemonset-broken.yaml");
    std::fs::write(&path, broken)?;
    let (ok, output) = validate(&path, KUBERNETES_VERSIONS[1])?;
    let _ = std::fs::remove_file(&path);
    ensure!(!ok, "a misspelt field passed --strict validation: {output}");
    Ok(())
}

/// The documents of the manifest.
pub fn load() -> anyhow::Result<Vec<Yaml>> {
    let text = std::fs::read_to_string(setup::workspace_root()?.join(MANIFEST))?;
    YamlLoader::load_from_str(&text).context("parsing the manifest")
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn check_policy() -> anyhow::Result<()> {
    policy(&load()?)
}

/// The grants the manifest's comments justify, and nothing more.
fn policy(docs: &[Yaml]) -> anyhow::Result<()> {
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    ensure!(
        kinds == ["Namespace", "ServiceAccount", "DaemonSet"],
        "documents: {kinds:?}"
    );
    let ds = &docs[2];
    let pod = &ds["spec"]["template"]["spec"];
    ensure!(
        pod["hostPID"].as_bool() == Some(true),
        "hostPID must be true"
    );
    for host in ["hostNetwork", "hostIPC"] {
        ensure!(pod[host].as_bool() != Some(true), "{host} is not needed");
    }
    ensure!(
        pod["automountServiceAccountToken"].as_bool() == Some(false),
        "API token mounted"
    );
    let tolerates_all = pod["tolerations"].as_vec().is_some_and(|t| {
        t.iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_badvalue())
    });
    ensure!(
        tolerates_all,
        "must tolerate every taint (operator: Exists)"
    );
    let containers = pod["containers"].as_vec().context("no containers")?;
    ensure!(containers.len() == 1, "one container");
    ensure!(pod["initContainers"].is_badvalue(), "no init containers");
    let c = &containers[0];
    let args = strings(&c["args"]);
    ensure!(
        args.windows(2).any(|w| w == ["-o", "json"]),
        "rows must be JSON: args {args:?}"
    );
    let sc = &c["securityContext"];
    ensure!(
        sc["privileged"].as_bool() == Some(false),
        "privileged must be false"
    );
    ensure!(
        sc["allowPrivilegeEscalation"].as_bool() == Some(false),
        "allowPrivilegeEscalation"
    );
    ensure!(
        sc["readOnlyRootFilesystem"].as_bool() == Some(true),
        "readOnlyRootFilesystem"
    );
    ensure!(
        strings(&sc["capabilities"]["drop"]) == ["ALL"],
        "must drop ALL capabilities"
    );
    let mut add = strings(&sc["capabilities"]["add"]);
    add.sort();
    ensure!(
        add == CAPABILITIES,
        "capabilities added: {add:?}, want {CAPABILITIES:?}"
    );
    ensure!(
        sc["seccompProfile"]["type"].as_str() == Some("RuntimeDefault"),
        "seccomp"
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            ensure!(
                !c["resources"][kind][resource].is_badvalue(),
                "resources.{kind}.{resource} missing"
            );
        }
    }
    let volumes = pod["volumes"].as_vec().context("no volumes")?;
    let mounts = c["volumeMounts"].as_vec().context("no volumeMounts")?;
    ensure!(volumes.len() == mounts.len(), "a volume is not mounted");
    for v in volumes {
        let name = v["name"].as_str().context("volume name")?;
        let host = v["hostPath"]["path"]
            .as_str()
            .context("only hostPath volumes")?;
        ensure!(HOST_PATHS.contains(&host), "host path {host} is not needed");
        let mount = mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .with_context(|| format!("volume {name} not mounted"))?;
        ensure!(
            mount["readOnly"].as_bool() == Some(true),
            "{host} must be read-only"
        );
        ensure!(
            mount["mountPath"].as_str() == Some(host),
            "{host} mounted elsewhere"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(edit: impl Fn(&str) -> String) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(setup::workspace_root()?.join(MANIFEST))?;
        let edited = edit(&text);
        policy(&YamlLoader::load_from_str(&edited)?)
    }

    #[test]
    fn the_manifest_passes_and_more_privilege_fails() {
        policy_of(str::to_string).expect("the manifest as it is");
        let more = [
            (
                "add: [\"BPF\", \"PERFMON\"]",
                "add: [\"BPF\", \"PERFMON\", \"SYS_ADMIN\"]",
            ),
            ("privileged: false", "privileged: true"),
            ("hostPID: true", "hostPID: true\n      hostNetwork: true"),
            ("readOnly: true", "readOnly: false"),
            ("path: /sys/kernel/btf", "path: /run/containerd"),
            ("args: [\"-o\", \"json\"]", "args: []"),
        ];
        for (from, to) in more {
            let result = policy_of(|t| {
                assert!(t.contains(from), "{from} not in the manifest");
                t.replacen(from, to, 1)
            });
            assert!(result.is_err(), "passed with {to}");
        }
    }
}
