//! Harness: an in-process emulator on port 0, the real binary as a child
//! process against it, a temp journal, and checks shared by the tests.

use std::path::{Path, PathBuf};
use std::process::Output;

use ade2eah::emulator::{self, Emulator, EmulatorConfig, FaultConfig, VmSpec};
use ade2eah::model::ResourceId;
use serde_json::Value;

/// Simulated seconds per real second in tests: hours of simulated
/// decryption and copying finish in well under a second.
pub const TIME_SCALE: f64 = 5000.0;
/// Poll interval passed to the binary (seconds).
pub const POLL: &str = "0.05";

/// A started emulator plus a temp state dir.
pub struct Rig {
    pub emu: Emulator,
    pub state: tempfile::TempDir,
}

impl Rig {
    /// Emulator with no faults.
    pub async fn new() -> Rig {
        Self::with_config(EmulatorConfig {
            time_scale: TIME_SCALE,
            ..Default::default()
        })
        .await
    }

    /// Emulator with this config.
    pub async fn with_config(cfg: EmulatorConfig) -> Rig {
        let emu = emulator::start(cfg).await.expect("emulator starts");
        Rig {
            emu,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Emulator injecting faults into `rate` of ARM requests.
    pub async fn with_faults(rate: f64, seed: u64) -> Rig {
        let faults = FaultConfig {
            rate,
            ..Default::default()
        };
        Self::with_config(EmulatorConfig {
            time_scale: TIME_SCALE,
            seed,
            faults,
            ..Default::default()
        })
        .await
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// `ade2eah run ... --vm ID...` exactly as the scripting contract writes it.
    pub async fn run(&self, vms: &[ResourceId], env: &[(&str, &str)]) -> Output {
        self.run_with(vms, &[], env).await
    }

    /// [`Rig::run`] with `extra` flags after the contract's (`--no-auto-rollback`).
    pub async fn run_with(
        &self,
        vms: &[ResourceId],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--arm-endpoint".into(),
            self.emu.base_url(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            self.emu.subscription().to_string(),
        ];
        for vm in vms {
            args.push("--vm".into());
            args.push(vm.to_string());
        }
        args.extend([
            "--state".into(),
            self.state_dir().display().to_string(),
            "--yes".into(),
            "--poll-interval".into(),
            POLL.into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        bin(&args, env).await
    }

    /// `ade2eah rollback --arm-endpoint URL --auth none --state DIR --vm ID... --yes
    /// --poll-interval P` exactly as the scripting contract writes it, then `extra`.
    pub async fn rollback(
        &self,
        vms: &[ResourceId],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut args: Vec<String> = vec![
            "rollback".into(),
            "--arm-endpoint".into(),
            self.emu.base_url(),
            "--auth".into(),
            "none".into(),
            "--state".into(),
            self.state_dir().display().to_string(),
        ];
        for vm in vms {
            args.push("--vm".into());
            args.push(vm.to_string());
        }
        args.extend(["--yes".into(), "--poll-interval".into(), POLL.into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        bin(&args, env).await
    }

    /// `ade2eah resume --state DIR --auth none --arm-endpoint URL --poll-interval P`.
    pub async fn resume(&self, env: &[(&str, &str)]) -> Output {
        self.resume_with(&[], env).await
    }

    /// [`Rig::resume`] with extra arguments (`--break-lease`...).
    pub async fn resume_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args: Vec<String> = vec![
            "resume".into(),
            "--state".into(),
            self.state_dir().display().to_string(),
            "--auth".into(),
            "none".into(),
            "--arm-endpoint".into(),
            self.emu.base_url(),
            "--poll-interval".into(),
            POLL.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        bin(&args, env).await
    }

    /// `ade2eah status --state DIR --output json`, parsed.
    /// `ade2eah <command> --state DIR --output json` (`status`, `report`).
    pub async fn state_json(&self, command: &str) -> Output {
        bin(
            &[
                command.into(),
                "--state".into(),
                self.state_dir().display().to_string(),
                "--output".into(),
                "json".into(),
            ],
            &[],
        )
        .await
    }

    pub async fn status(&self) -> Value {
        let out = self.state_json("status").await;
        assert_eq!(out.status.code(), Some(0), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }

    /// Number of mutating requests the emulator has seen so far.
    pub fn mutating_requests(&self) -> usize {
        self.emu.requests().iter().filter(|r| r.mutating).count()
    }
}

/// `COMMAND --arm-endpoint URL --auth none --poll-interval P` for `rig`'s emulator.
pub fn arm_args(rig: &Rig, command: &str) -> Vec<String> {
    [
        command,
        "--arm-endpoint",
        &rig.emu.base_url(),
        "--auth",
        "none",
        "--poll-interval",
        POLL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the real binary with `args` and extra environment.
pub async fn bin(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ade2eah"));
    // A timed-out binary must not outlive its test.
    cmd.kill_on_drop(true);
    cmd.args(args)
        .env_remove("ADE2EAH_FAILPOINTS")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }

    let limit = bin_time_limit();
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`ade2eah {}` did not finish within {} s (a hang; the limit is \
                 ADE2EAH_TEST_BIN_TIMEOUT_SECS or derived from the core count)",
                args.join(" "),
                limit.as_secs()
            )
        })
        .expect("binary runs");
    // Secrets audit of every scenario: no run may print a SAS signature or
    // a token, whatever it is testing.
    let hits = secret_hits("stdout", &out.stdout)
        .into_iter()
        .chain(secret_hits("stderr", &out.stderr))
        .collect::<Vec<_>>();
    assert!(
        hits.is_empty(),
        "secrets printed by `ade2eah {}`: {hits:#?}",
        args.join(" ")
    );
    out
}

/// Wall-clock limit of one run of the binary: a backstop against a hang,
/// not a performance bound (nextest's `slow-timeout`/`terminate-after` in
/// `.config/nextest.toml` is the outer one and kills the test's whole process
/// group). `$ADE2EAH_TEST_BIN_TIMEOUT_SECS` when set, else 300 s scaled by
/// how far the machine is below 8 cores (2 cores: 1200 s), since a debug
/// binary's wall time on a shared small machine is dominated by waiting for
/// a core (issue 11: the fixed 120 s failed on 2 cores).
pub fn bin_time_limit() -> std::time::Duration {
    if let Some(secs) = std::env::var("ADE2EAH_TEST_BIN_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
    {
        return std::time::Duration::from_secs(secs);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    std::time::Duration::from_secs(300 * (8 / cores.clamp(1, 8)).max(1))
}

/// Every journal directory is audited when its rig goes away.
impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let hits = journal_dir_secret_hits(self.state.path());
        assert!(
            hits.is_empty(),
            "secrets persisted in the journal directory: {hits:#?}"
        );
    }
}

/// SAS signatures and bearer tokens in `bytes` (redacted `sig=REDACTED` is fine).
pub fn secret_hits(name: &str, bytes: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(bytes);
    let mut hits = Vec::new();
    for needle in [
        "sig=",
        "Bearer ",
        "bearer ",
        "eyJ",
        "ade2eah-emulator-token",
    ] {
        for (i, _) in s.match_indices(needle) {
            let tail: String = s[i + needle.len()..].chars().take(12).collect();
            if needle == "sig=" && (tail.starts_with("REDACTED") || tail.is_empty()) {
                continue;
            }
            hits.push(format!("{name}: {needle}{tail}"));
        }
    }
    hits
}

/// stdout + stderr as text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Digest of every disk a VM had before the run, by disk id.
pub fn source_digests(emu: &Emulator, vm: &ResourceId) -> Vec<(ResourceId, String)> {
    let state = serde_json::to_value(emu.state()).unwrap();
    disks_of_vm_model(&state, vm)
        .into_iter()
        .map(|d| {
            let digest = emu.disk_digest(&d).expect("source disk has content");
            (d, digest)
        })
        .collect()
}

/// The managed disk ids attached to `vm` in the emulator's state view.
pub fn disks_of_vm_model(state: &Value, vm: &ResourceId) -> Vec<ResourceId> {
    let vms = state.get("vms").expect("state has vms");
    let model = find_by_id(vms, vm).unwrap_or_else(|| panic!("VM {vm} in state"));
    let model = model.get("model").unwrap_or(model);
    let sp = &model["properties"]["storageProfile"];
    let mut out =
        vec![ResourceId::parse(sp["osDisk"]["managedDisk"]["id"].as_str().unwrap()).unwrap()];
    for d in sp["dataDisks"].as_array().into_iter().flatten() {
        out.push(ResourceId::parse(d["managedDisk"]["id"].as_str().unwrap()).unwrap());
    }
    out
}

/// Finds an entry by `id` in an array or map of resources.
pub fn find_by_id<'a>(coll: &'a Value, id: &ResourceId) -> Option<&'a Value> {
    let matches = |v: &Value| {
        let own = v
            .get("id")
            .or_else(|| v.get("model").and_then(|m| m.get("id")));
        own.and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case(id.as_str()))
    };
    match coll {
        Value::Array(a) => a.iter().find(|v| matches(v)),
        Value::Object(m) => m
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(id.as_str()) || matches(v))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Checks a migrated VM in the emulator: every original disk still exists
/// with its original content, and the new disk at the same role has exactly
/// the same bytes (footer included).
pub fn assert_migrated(emu: &Emulator, vm: &ResourceId, before: &[(ResourceId, String)]) {
    let state = serde_json::to_value(emu.state()).unwrap();
    let now = disks_of_vm_model(&state, vm);
    assert_eq!(now.len(), before.len(), "same number of disks on {vm}");
    for ((orig, digest), new) in before.iter().zip(&now) {
        assert_ne!(orig, new, "{vm} now runs on a new disk, not {orig}");
        assert_eq!(
            emu.disk_digest(orig).as_deref(),
            Some(digest.as_str()),
            "original disk {orig} kept, unchanged"
        );
        assert_eq!(
            emu.disk_digest(new).as_deref(),
            Some(digest.as_str()),
            "new disk {new} holds the same bytes as {orig}"
        );
    }
    assert!(
        emu.active_sas().is_empty(),
        "no SAS left open: {:?}",
        emu.active_sas()
    );
}

/// Scans files and text for SAS signatures and bearer tokens.
pub fn assert_no_secrets(dir: &Path, outputs: &[&Output]) {
    let mut hits = Vec::new();
    for out in outputs {
        hits.extend(secret_hits("stdout", &out.stdout));
        hits.extend(secret_hits("stderr", &out.stderr));
    }
    hits.extend(journal_dir_secret_hits(dir));
    assert!(hits.is_empty(), "secrets found: {hits:#?}");
}

/// Secrets in a journal directory: every file raw, and the decoded journal
/// (records with their bulk parts, and events). sled pages hold deflated
/// values, where the short needles (`eyJ`, `sig=`) turn up by chance (a
/// 4-byte needle about once per 4 GiB of random bytes, a 3-byte one per
/// 16 MiB), so under `db/` only the long needles are checked raw and the
/// short ones are left to the decoded scan.
fn journal_dir_secret_hits(dir: &Path) -> Vec<String> {
    let db = dir.join("db");
    let mut hits = Vec::new();
    for path in walk(dir) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let found = secret_hits(&path.display().to_string(), &bytes);
        if path.starts_with(&db) {
            hits.extend(
                found
                    .into_iter()
                    .filter(|h| !h.contains(": eyJ") && !h.contains(": sig=")),
            );
        } else {
            hits.extend(found);
        }
    }
    // The log file (JSON lines): also every string value decoded, so a
    // secret cannot hide behind a JSON escape.
    for n in 0..=ade2eah::journal::log_file::KEEP {
        let path = ade2eah::journal::state_dir::log_path(dir, n);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut decoded = String::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", path.display()));
            strings_of(&v, &mut decoded);
        }
        hits.extend(secret_hits(
            &format!("decoded {}", path.display()),
            decoded.as_bytes(),
        ));
    }
    if db.exists()
        && let Ok(journal) = ade2eah::journal::Journal::open(dir)
    {
        let records = journal.records().expect("journal records decode");
        let events = journal.events().expect("journal events decode");
        let decoded =
            serde_json::to_string(&records).unwrap() + &serde_json::to_string(&events).unwrap();
        hits.extend(secret_hits("decoded journal", decoded.as_bytes()));
    }
    hits
}

/// Every string (keys and values) in `v`, one per line.
fn strings_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push_str(k);
            out.push('\n');
            strings_of(x, out);
        }),
        _ => {}
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

/// Small Windows VM with OS + data disks (sizes keep tests fast).
pub fn windows(name: &str, data_disks: usize) -> VmSpec {
    let mut s = VmSpec::windows(name, "rg-test");
    s.os_disk.size_gib = 4;
    s.os_disk.allocated_fraction = 0.6;
    s.data_disks = (0..data_disks)
        .map(|i| {
            let mut d = s.os_disk.clone();
            d.lun = Some(i as i32);
            d.size_gib = 2;
            d.allocated_fraction = 0.3;
            d
        })
        .collect();
    s.ade = if data_disks == 0 {
        emulator::AdeSpec::WindowsOs
    } else {
        emulator::AdeSpec::WindowsAll
    };
    s
}

/// Small Linux VM with ADE on its data disks only.
pub fn linux_data(name: &str) -> VmSpec {
    let mut s = VmSpec::linux(name, "rg-test");
    s.os_disk.size_gib = 4;
    s.os_disk.allocated_fraction = 0.5;
    let mut d = s.os_disk.clone();
    d.lun = Some(0);
    d.size_gib = 2;
    d.allocated_fraction = 0.4;
    s.data_disks = vec![d];
    s.ade = emulator::AdeSpec::LinuxData;
    s
}
