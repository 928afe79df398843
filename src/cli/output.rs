//! Terminal output: live progress bars (indicatif, drawn only on a TTY) and
//! the result table / JSON status.

use std::collections::HashMap;
use std::sync::Mutex;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use std::io::Write;

use super::error::CliError;
use crate::engine::Progress;
use crate::journal::{Journal, RunMeta};
use crate::model::ResourceId;
use crate::step::{Outcome, RecordSummary, Step, VmEntry, VmRecord};

/// Progress bars: one per VM showing its step, and under it one per disk
/// while a copy round runs (bytes of the round, rate, ETA).
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    disks: Mutex<HashMap<(String, String), ProgressBar>>,
}

impl Bars {
    /// Creates an empty set of bars (hidden automatically when stderr is not a TTY).
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            disks: Mutex::new(HashMap::new()),
        }
    }

    fn disk_bar(&self, vm: &ResourceId, disk: &str) -> ProgressBar {
        let parent = self.bar(vm);
        let mut disks = self.disks.lock().unwrap_or_else(|p| p.into_inner());
        disks
            .entry((vm.key(), disk.to_string()))
            .or_insert_with(|| {
                let pb = self.multi.insert_after(&parent, ProgressBar::new(0));
                pb.set_style(copy_style());
                pb.set_prefix(format!("  {disk}"));
                pb
            })
            .clone()
    }

    /// Removes the disk bars of `vm` (its copy round ended).
    fn clear_disks(&self, vm: &ResourceId) {
        let mut disks = self.disks.lock().unwrap_or_else(|p| p.into_inner());
        let key = vm.key();
        disks.retain(|(v, _), pb| {
            if *v == key {
                pb.finish_and_clear();
                false
            } else {
                true
            }
        });
    }

    fn bar(&self, vm: &ResourceId) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(vm.key())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new(0));
                pb.set_style(step_style());
                pb.set_prefix(vm.name().to_string());
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            })
            .clone()
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

fn step_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:18.bold} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn copy_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix:40} [{bar:30.green/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn step(&self, vm: &ResourceId, step: Step) {
        self.clear_disks(vm);
        let pb = self.bar(vm);
        pb.set_message(step.name().to_string());
    }

    fn copy(&self, vm: &ResourceId, disk: &str, done: u64, total: u64) {
        let pb = self.disk_bar(vm, disk);
        if pb.length() != Some(total) || done < pb.position() {
            // A new round.
            pb.set_length(total);
            pb.set_position(0);
            pb.reset_eta();
            pb.reset_elapsed();
        }
        pb.set_position(done.min(total));
    }

    fn finished(&self, vm: &ResourceId, outcome: &Outcome) {
        self.clear_disks(vm);
        let pb = self.bar(vm);
        pb.set_style(step_style());
        pb.finish_with_message(outcome.label().to_string());
    }
}

/// One VM as shown by `status --output json` and the run summary.
pub fn vm_json(rec: &RecordSummary) -> Value {
    let (reason, next_action) = match &rec.outcome {
        Outcome::Skipped { reason } => (Some(reason.clone()), None),
        Outcome::Parked {
            reason,
            next_action,
        } => (Some(reason.clone()), Some(next_action.clone())),
        Outcome::RolledBack { reason } => (
            Some(reason.clone()),
            Some("the original VM runs on its original disks: fix the cause, then migrate it again with a new run; the resources under rollback.left_to_clean can then be deleted".to_string()),
        ),
        Outcome::InProgress | Outcome::Verified => (None, None),
    };
    json!({
        "id": rec.id,
        "name": rec.id.name(),
        "step": rec.step.name(),
        "outcome": rec.outcome.label(),
        "reason": reason,
        "next_action": next_action,
        "disks": rec.disks.iter().map(|d| json!({
            "role": d.role, "source": d.source, "target": d.target, "snapshot": d.snapshot,
            "size_bytes": d.source_size_bytes, "copied": d.copied, "bytes_copied": d.bytes_copied,
            "verified": d.verified,
            "rounds": d.rounds.iter().map(|r| json!({
                "number": r.number, "snapshot": r.snapshot, "offline": r.offline,
                "bytes": r.bytes, "done_upto": r.done_upto, "copied": r.copied,
                "percent": if d.source_size_bytes > 0 { (r.done_upto.min(d.source_size_bytes + 512) as f64 * 100.0 / (d.source_size_bytes + 512) as f64).round() } else { 0.0 },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "created": rec.created,
        "cleanup": {
            "left": rec.left_to_clean().iter().map(|o| json!({"kind": o.kind, "id": o.id})).collect::<Vec<_>>(),
            "done": rec.cleanup.iter().filter(|e| e.state.is_done()).map(|e| json!({"kind": e.kind, "id": e.id, "state": e.state, "at": e.at})).collect::<Vec<_>>(),
        },
        "open_sas": rec.open_sas,
        "history": rec.history.len,
        "carried": carried_json(&rec.carried),
        "operator_actions": rec.carried.operator_actions(),
        "rollback": rec.rollback_json(),
    })
}

/// What a VM gets back after the re-create (`status --output json`).
fn carried_json(c: &crate::step::reinstall::Carried) -> Value {
    json!({
        "extensions": c.extensions.iter().map(|e| json!({
            "name": e.name, "publisher": e.publisher, "type": e.handler_type,
            "properties": e.body["properties"],
        })).collect::<Vec<_>>(),
        "manual_extensions": c.manual,
        "old_principal": c.old_principal,
        "carry_role_assignments": c.carry_roles,
        "role_assignments": c.roles,
    })
}

/// The run-level part of `status --output json`, with `"vms": []`.
fn status_head(meta: &RunMeta, entries: &[VmEntry]) -> Value {
    let count = |label: &str| {
        entries
            .iter()
            .filter(|r| r.outcome.label() == label)
            .count()
    };
    json!({
        "run_id": meta.run_id,
        "arm_endpoint": meta.arm_endpoint,
        "created_at": meta.created_at,
        "summary": {
            "total": entries.len(),
            "verified": count("verified"),
            "skipped": count("skipped"),
            "parked": count("parked"),
            "rolled_back": count("rolled-back"),
            "in_progress": count("in-progress"),
        },
        "vms": [],
    })
}

/// The whole run as one JSON object (for runs held in memory; the commands
/// stream it with [`write_status_json`]).
pub fn status_json(meta: &RunMeta, records: &[VmRecord]) -> Value {
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    let mut v = status_head(meta, &entries);
    v["vms"] = records
        .iter()
        .map(|r| vm_json(&RecordSummary::of(r)))
        .collect::<Vec<_>>()
        .into();
    v
}

/// Writes `head` (a JSON object whose `"vms"` is `[]`) compactly, with the
/// `vms` list filled by `vm(i)` for `i` in `0..n`, one element at a time:
/// the same bytes as serializing the whole object, without holding it.
pub fn write_with_vms(
    out: &mut dyn Write,
    head: &Value,
    n: usize,
    mut vm: impl FnMut(usize) -> Result<Value, CliError>,
) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Failed(format!("cannot write the output: {e}"));
    let text = head.to_string();
    // Inside a JSON string every `"` is escaped, so this can only be the key.
    const MARK: &str = "\"vms\":[]";
    let at = text
        .find(MARK)
        .ok_or_else(|| CliError::Failed("internal: no vms list in the output".into()))?
        + MARK.len()
        - 1;
    out.write_all(&text.as_bytes()[..at]).map_err(io)?;
    for i in 0..n {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        serde_json::to_writer(&mut *out, &vm(i)?)
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
    }
    out.write_all(&text.as_bytes()[at..]).map_err(io)
}

/// `status --output json` (and the run summary), streamed from the journal:
/// one record summary at a time, never every full record.
pub fn write_status_json(
    out: &mut dyn Write,
    meta: &RunMeta,
    journal: &Journal,
) -> Result<(), CliError> {
    let entries = journal.index()?;
    let head = status_head(meta, &entries);
    write_with_vms(out, &head, entries.len(), |i| {
        Ok(vm_json(&journal.summary(&entries[i].id)?))
    })?;
    out.write_all(b"\n")
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
}

/// The terminal table of `status`, built one VM at a time.
pub struct StatusTable(Table);

impl Default for StatusTable {
    fn default() -> Self {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        crate::report::width::fit(&mut t);
        t.set_header([
            "VM",
            "outcome",
            "step",
            "disks",
            "copied",
            "reason / next action",
        ]);
        crate::report::width::keep_names(&mut t);
        StatusTable(t)
    }
}

impl StatusTable {
    /// Adds one VM's row.
    pub fn add(&mut self, r: &RecordSummary) {
        let note = match &r.outcome {
            Outcome::Skipped { reason } => reason.clone(),
            Outcome::Parked {
                reason,
                next_action,
            } => format!("{reason} → {next_action}"),
            Outcome::Verified => match r.left_to_clean().len() {
                0 => "EAH on, running, new disks".to_string(),
                n => format!("EAH on, running, new disks; {n} left to clean (`ade2eah cleanup`)"),
            },
            Outcome::RolledBack { .. } => r.rolled_back_note(),
            Outcome::InProgress => match &r.rollback {
                Some(rb) => format!("rolling back ({}): {}", rb.step.name(), rb.reason),
                None => String::new(),
            },
        };
        self.0.add_row([
            r.id.name().to_string(),
            r.outcome.label().to_string(),
            r.step.name().to_string(),
            r.disks.len().to_string(),
            human_bytes(r.bytes_copied()),
            note,
        ]);
    }

    /// The rendered table.
    pub fn render(&self) -> String {
        self.0.to_string()
    }
}

/// The run as a terminal table (records held in memory).
pub fn status_table(records: &[VmRecord]) -> String {
    let mut t = StatusTable::default();
    for r in records {
        t.add(&RecordSummary::of(r));
    }
    t.render()
}

/// The run as a terminal table, read from the journal one record at a time.
pub fn status_table_of(journal: &Journal) -> Result<String, CliError> {
    let mut t = StatusTable::default();
    for e in journal.index()? {
        t.add(&journal.summary(&e.id)?);
    }
    Ok(t.render())
}

/// Bytes in binary units.
pub fn human_bytes(b: u64) -> String {
    indicatif::BinaryBytes(b).to_string()
}

// --- az conventions (issue 14): `-o json|jsonc|tsv|yaml|markdown|table`
// and `--query` over every command's JSON.

use super::args::OutputArg;

static QUERY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the process's `--query` (once, by `cli::main`, after
/// [`check_query`] accepted it).
pub fn set_query(q: Option<String>) {
    let _ = QUERY.set(q);
}

fn query() -> Option<&'static str> {
    QUERY.get().and_then(|q| q.as_deref())
}

/// Compiles a JMESPath expression; the message for `--query` if it is not one.
pub fn check_query(q: &str) -> Result<(), CliError> {
    jmespath::compile(q)
        .map(|_| ())
        .map_err(|e| CliError::BadInput(format!("--query {q:?} is not a JMESPath expression: {e}")))
}

/// `value` filtered by `--query` (unchanged without one).
pub fn apply_query(value: Value) -> Result<Value, CliError> {
    let Some(q) = query() else {
        return Ok(value);
    };
    let expr = jmespath::compile(q).map_err(|e| CliError::BadInput(format!("--query: {e}")))?;
    let data = jmespath::Variable::from_json(&value.to_string())
        .map_err(|e| CliError::Failed(format!("--query: {e}")))?;
    let out = expr
        .search(data)
        .map_err(|e| CliError::BadInput(format!("--query {q:?}: {e}")))?;
    serde_json::to_value(&*out).map_err(|e| CliError::Failed(format!("--query: {e}")))
}

/// Whether a command prints its own rendering of `format` (its table or
/// Markdown), or the generic one of its JSON: with `--query` every format
/// renders the queried JSON.
pub fn own_rendering(format: OutputArg) -> bool {
    query().is_none() && matches!(format, OutputArg::Table | OutputArg::Markdown)
}

/// Writes a command's JSON output in `format` after `--query`. `produce`
/// writes the compact JSON; for `json` without a query it streams straight
/// to `out` (constant memory on large journals), otherwise it is read back
/// whole and rendered.
pub fn write_data(
    out: &mut dyn Write,
    format: OutputArg,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), CliError>,
) -> Result<(), CliError> {
    if format == OutputArg::Json && query().is_none() {
        return produce(out);
    }
    let mut buf: Vec<u8> = Vec::new();
    produce(&mut buf)?;
    let v: Value = serde_json::from_slice(&buf)
        .map_err(|e| CliError::Failed(format!("internal: output is not JSON: {e}")))?;
    let text = render(format, &apply_query(v)?);
    out.write_all(text.as_bytes())
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
}

/// Prints `value` in `format` (after `--query`) on stdout.
pub fn print_value(format: OutputArg, value: &Value) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_data(&mut out, format, |w| {
        serde_json::to_writer(&mut *w, value)
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?;
        w.write_all(b"\n")
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
    })
}

/// `value` rendered in `format`, generically (what `--query` results and
/// the formats a command has no own rendering for look like).
pub fn render(format: OutputArg, value: &Value) -> String {
    match format {
        OutputArg::Json => format!("{value}\n"),
        OutputArg::Jsonc => format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        OutputArg::Tsv => tsv(value),
        OutputArg::Yaml => {
            let mut s = String::new();
            yaml(value, 0, &mut s);
            s
        }
        OutputArg::Markdown => markdown(value),
        OutputArg::Table => table(value),
    }
}

/// The rows of a generic rendering: a list is one row per item, anything
/// else one row.
fn rows(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.replace(['\t', '\n', '\r'], " ")),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Columns of a generic table: the scalar fields of the rows, in first-seen order.
fn columns(rows: &[&Value]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for (k, v) in m {
                if scalar_text(v).is_some() && !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    cols
}

fn cells(row: &Value, cols: &[String]) -> Vec<String> {
    match row {
        Value::Object(m) => cols
            .iter()
            .map(|c| m.get(c).and_then(scalar_text).unwrap_or_default())
            .collect(),
        v => vec![scalar_text(v).unwrap_or_else(|| v.to_string())],
    }
}

/// az's `tsv`: one line per row, its scalar fields tab-separated (nested
/// values left out), no header.
fn tsv(value: &Value) -> String {
    let rows = rows(value);
    let cols = columns(&rows);
    let mut s = String::new();
    for r in rows {
        s.push_str(&cells(r, &cols).join("\t"));
        s.push('\n');
    }
    s
}

fn markdown(value: &Value) -> String {
    let rows = rows(value);
    let cols = columns(&rows);
    let esc = |c: String| c.replace('|', "\\|");
    let heads = if cols.is_empty() {
        vec!["value".to_string()]
    } else {
        cols.clone()
    };
    let mut s = format!(
        "| {} |\n|{}\n",
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for r in rows {
        let c: Vec<String> = cells(r, &cols).into_iter().map(esc).collect();
        s.push_str(&format!("| {} |\n", c.join(" | ")));
    }
    s
}

fn table(value: &Value) -> String {
    let rows = rows(value);
    let cols = columns(&rows);
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    crate::report::width::fit(&mut t);
    if cols.is_empty() {
        t.set_header(["value"]);
    } else {
        t.set_header(cols.clone());
    }
    for r in rows {
        t.add_row(cells(r, &cols));
    }
    format!("{t}\n")
}

/// A YAML key or string: plain when it cannot be read as anything else,
/// else JSON-quoted (a JSON string is a YAML double-quoted scalar).
fn yaml_str(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        );
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// Block-style YAML of `v` at `indent` spaces.
fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, item) in m {
                out.push_str(&format!("{pad}{}:", yaml_str(k)));
                yaml_child(item, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                let mut sub = String::new();
                yaml(item, indent + 2, &mut sub);
                // The item's first line starts after "- " in place of its indent.
                out.push_str(&format!("{pad}- {}", &sub[indent + 2..]));
            }
        }
        other => out.push_str(&format!("{pad}{}\n", yaml_scalar(other))),
    }
}

fn yaml_child(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml(v, indent + 2, out);
        }
        other => out.push_str(&format!(" {}\n", yaml_scalar(other))),
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => yaml_str(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn yaml_nests_lists_and_maps() {
        let v = serde_json::json!({"a": [1, {"b": "x y", "c": []}], "d": {"e": null}, "f": "true"});
        let mut s = String::new();
        yaml(&v, 0, &mut s);
        assert_eq!(
            s,
            "a:\n  - 1\n  - b: \"x y\"\n    c: []\nd:\n  e: null\nf: \"true\"\n"
        );
    }

    #[test]
    fn tsv_and_markdown_rows() {
        let v = serde_json::json!([{"n": "a", "k": 1, "x": {"deep": 1}}, {"n": "b|c", "k": 2}]);
        // (Keys in alphabetical order.)
        assert_eq!(tsv(&v), "1\ta\n2\tb|c\n");
        assert_eq!(
            markdown(&v),
            "| k | n |\n|---|---|\n| 1 | a |\n| 2 | b\\|c |\n"
        );
    }
}
