//! The bad-input corpus (`tests/bad_input/cases.txt`): every case exits 2,
//! names the problem, never panics and sends no mutating request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ade2eah::journal::{Journal, RunMeta, SCHEMA_VERSION};
use ade2eah::model::ResourceId;
use serde_json::json;

use crate::support::*;

/// Cases run at once.
const PARALLEL: usize = 6;

/// One parsed line of the corpus.
#[derive(Debug, Clone)]
struct Case {
    line: usize,
    env: Vec<(String, String)>,
    args: Vec<String>,
    expect: String,
}

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input/cases.txt")
}

fn parse_corpus(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (lhs, expect) = l
            .rsplit_once(" => ")
            .unwrap_or_else(|| panic!("cases.txt:{}: no ` => ` in {l:?}", i + 1));
        let mut lhs = lhs.trim();
        let mut env = Vec::new();
        if let Some(rest) = lhs.strip_prefix("env:") {
            let (spec, tail) = rest.split_once(' ').expect("env: then args");
            for kv in spec.split(';') {
                let (k, v) = kv.split_once('=').expect("K=V");
                env.push((k.to_string(), v.to_string()));
            }
            lhs = tail;
        }
        out.push(Case {
            line: i + 1,
            env,
            args: lhs.split_whitespace().map(str::to_string).collect(),
            expect: expect.trim().to_string(),
        });
    }
    out
}

fn meta_json(sub: &str, base: &str, vms: &[ResourceId], schema: u32) -> serde_json::Value {
    json!({
        "schema_version": schema, "run_id": "corpus-run", "created_at": "2026-09-01T00:00:00Z",
        "tool_version": "corpus", "arm_endpoint": base, "cloud": "public", "subscription": sub,
        "auth": "none", "poll_interval_secs": 0.05, "max_parallel": 2, "vms": vms,
    })
}

/// Builds a journal of `kind` in a fresh directory under `root`.
fn prepare_journal(kind: &str, root: &Path, sub: &str, base: &str, vm: &ResourceId) -> PathBuf {
    let dir = root.join(format!("journal-{kind}"));
    let valid = |schema: u32| {
        let j = Journal::open(&dir).unwrap();
        let meta: RunMeta =
            serde_json::from_value(meta_json(sub, base, std::slice::from_ref(vm), schema)).unwrap();
        j.init_run(&meta, &[ade2eah::step::VmRecord::new(vm.clone())])
            .unwrap();
    };
    let raw_meta = |bytes: &[u8]| {
        let db = open_db(&dir);
        db.open_tree("meta").unwrap().insert("run", bytes).unwrap();
        db.flush().unwrap();
    };
    match kind {
        "newer" => valid(99),
        "running-run" => valid(SCHEMA_VERSION),
        "corrupt-meta" => {
            valid(SCHEMA_VERSION);
            raw_meta(b"{\"schema_version\": 2, \"run_id\": ");
        }
        "no-schema" => {
            valid(SCHEMA_VERSION);
            raw_meta(b"{\"run_id\": \"x\"}");
        }
        "empty-meta" => {
            valid(SCHEMA_VERSION);
            raw_meta(b"");
        }
        "bad-record" => {
            valid(SCHEMA_VERSION);
            let db = open_db(&dir);
            db.open_tree("vms")
                .unwrap()
                .insert(
                    vm.key().as_bytes(),
                    &b"{\"id\": 42, \"step\": \"nope\"}"[..],
                )
                .unwrap();
            db.flush().unwrap();
        }
        "truncated" => {
            valid(SCHEMA_VERSION);
            for f in walk_files(&dir.join("db")) {
                let len = std::fs::metadata(&f).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.set_len(len / 3).unwrap();
            }
        }
        "garbage-db" => {
            valid(SCHEMA_VERSION);
            for (i, f) in walk_files(&dir.join("db")).into_iter().enumerate() {
                let len = std::fs::metadata(&f).unwrap().len().max(64) as usize;
                std::fs::write(&f, noise(len, 0x5EED + i as u64)).unwrap();
            }
        }
        "garbage-log" => {
            // sled's settings file stays valid; its log is random bytes
            // (sled would "recover" an empty database over it).
            valid(SCHEMA_VERSION);
            let log = dir.join("db").join("db");
            let len = std::fs::metadata(&log).unwrap().len().max(4096) as usize;
            std::fs::write(&log, noise(len, 0xBAD)).unwrap();
        }
        "db-file" => {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("db"), noise(5000, 0xF11E)).unwrap();
        }
        "junk-dir" => {
            std::fs::create_dir_all(dir.join("photos")).unwrap();
            std::fs::write(dir.join("notes.txt"), b"not a journal").unwrap();
            std::fs::write(dir.join("photos").join("a.jpg"), noise(3000, 0x1BE6)).unwrap();
        }
        "not-a-dir" => {
            std::fs::write(&dir, b"a file, not a journal directory").unwrap();
        }
        other => panic!("unknown journal kind {other}"),
    }
    dir
}

/// `n` bytes of xorshift noise from `seed`.
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Journal kinds that are not journals at all: refused without a change on
/// disk, with the path named.
const NOT_JOURNALS: [&str; 5] = [
    "not-a-dir",
    "db-file",
    "garbage-db",
    "garbage-log",
    "junk-dir",
];

/// Every file and directory under `path` (or `path` itself), with its bytes.
fn snapshot(path: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    if path.is_file() {
        return vec![(path.to_path_buf(), std::fs::read(path).ok())];
    }
    let mut out = vec![(path.to_path_buf(), None)];
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        out.extend(snapshot(&p));
    }
    out
}

/// sled releases its lock a moment after the last handle drops.
fn open_db(dir: &Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::open(dir.join("db")) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sled::open(dir.join("db")).unwrap()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn run_case(case: Case) -> Result<(), String> {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("corpus-vm", 0));
    let sub = rig.emu.subscription().to_string();
    let base = rig.emu.base_url();
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg-test");
    let state = rig.state_dir().join("state");
    let long = "n".repeat(300);
    let mut untouched = Vec::new();
    let mut args = Vec::new();
    for a in &case.args {
        let mut a = a
            .replace("{base}", &base)
            .replace("{sub}", &sub)
            .replace("{vm}", vm.as_str())
            .replace("{rg}", &rg)
            .replace("{state}", &state.display().to_string())
            .replace("{sp}", " ")
            .replace("{long}", &long);
        if let Some(start) = a.find("{journal:") {
            let end = a[start..].find('}').unwrap() + start;
            let kind = &a[start + 9..end];
            let dir = prepare_journal(kind, rig.state_dir(), &sub, &base, &vm);
            if NOT_JOURNALS.contains(&kind) {
                untouched.push((dir.clone(), snapshot(&dir)));
            }
            a = format!("{}{}{}", &a[..start], dir.display(), &a[end + 1..]);
        }
        args.push(a);
    }
    let env: Vec<(&str, &str)> = case
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = bin(&args, &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("cases.txt:{} ({})", case.line, case.args.join(" "));
    if stderr.contains("panicked") || out.status.code().is_none() {
        return Err(format!("{at}: crashed: {}", text(&out)));
    }
    if out.status.code() != Some(2) {
        return Err(format!("{at}: want exit 2: {}", text(&out)));
    }
    if !stderr
        .to_ascii_lowercase()
        .contains(&case.expect.to_ascii_lowercase())
    {
        return Err(format!(
            "{at}: stderr does not name the problem ({:?}): {}",
            case.expect,
            text(&out)
        ));
    }
    for (dir, before) in &untouched {
        if snapshot(dir) != *before {
            return Err(format!("{at}: {} was changed on disk", dir.display()));
        }
        if !stderr.contains(&dir.display().to_string()) {
            return Err(format!(
                "{at}: stderr does not name {}: {}",
                dir.display(),
                text(&out)
            ));
        }
    }
    let mutating: Vec<_> = rig
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.mutating)
        .collect();
    if !mutating.is_empty() {
        return Err(format!("{at}: mutating requests sent: {mutating:?}"));
    }
    let secret = case
        .env
        .iter()
        .find(|(k, v)| k == "AZURE_CLIENT_SECRET" && !v.is_empty());
    if let Some((_, v)) = secret
        && (String::from_utf8_lossy(&out.stdout).contains(v.as_str())
            || stderr.contains(v.as_str()))
    {
        return Err(format!("{at}: the client secret was printed"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_corpus_exits_2_names_the_problem_and_changes_nothing() {
    let text = std::fs::read_to_string(corpus_path()).unwrap();
    let cases = parse_corpus(&text);
    assert!(cases.len() >= 40, "corpus has {} cases", cases.len());
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for c in cases.clone() {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            run_case(c).await
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    println!(
        "bad-input corpus: {} cases, all refused cleanly",
        cases.len()
    );
}
