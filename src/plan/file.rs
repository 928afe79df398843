//! Plan files (TOML). `plan --out FILE` writes one; `run --plan FILE` reads
//! it. Unknown keys, wrong types, bad ids and bad values are errors naming
//! `FILE:LINE:COLUMN`. See `migrations/example.toml` for every key.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::waves::{Budget, BudgetScope, WaveSpec, WaveTarget, parse_duration};
use super::{Plan, fingerprint};
use crate::model::ResourceId;
use crate::step::encryption::TargetEncryption;

/// Plan file format version.
pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<u32>,
    #[serde(default)]
    subscription: Option<Spanned<String>>,
    #[serde(default)]
    subscriptions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    selector: RawSelector,
    #[serde(default)]
    options: RawOptions,
    #[serde(default)]
    waves: Vec<RawWave>,
    #[serde(default)]
    vm: Vec<RawVm>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default)]
    resource_groups: Vec<Spanned<String>>,
    #[serde(default)]
    vms: Vec<Spanned<String>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(i64),
    Str(String),
}

impl NumOrStr {
    fn text(&self) -> String {
        match self {
            NumOrStr::Num(n) => n.to_string(),
            NumOrStr::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    #[serde(default)]
    max_parallel: Option<Spanned<i64>>,
    #[serde(default)]
    failure_budget: Option<Spanned<NumOrStr>>,
    #[serde(default)]
    failure_scope: Option<Spanned<String>>,
    #[serde(default)]
    soak: Option<Spanned<NumOrStr>>,
    #[serde(default)]
    snapshot_retention: Option<Spanned<String>>,
    #[serde(default)]
    verification: Option<Spanned<String>>,
    #[serde(default)]
    disk_encryption_set: Option<Spanned<String>>,
    #[serde(default)]
    platform_keys: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWave {
    #[serde(default)]
    name: Option<String>,
    target: Spanned<NumOrStr>,
    #[serde(default)]
    max_parallel: Option<Spanned<i64>>,
    #[serde(default)]
    approval: bool,
    #[serde(default)]
    soak: Option<Spanned<NumOrStr>>,
    #[serde(default)]
    disk_encryption_set: Option<Spanned<String>>,
    #[serde(default)]
    platform_keys: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    id: Spanned<String>,
    #[serde(default)]
    eligible: Option<bool>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    wave: Option<Spanned<i64>>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Run options of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Global cap on VMs in flight.
    pub max_parallel: usize,
    /// Failure budget (`None` = unlimited).
    pub failure_budget: Option<Budget>,
    /// What the budget counts over.
    pub failure_scope: BudgetScope,
    /// Default soak between waves, seconds.
    pub soak_secs: u64,
    /// `keep` (default) or `delete` the backup snapshots after verification.
    pub snapshot_retention: String,
    /// `full` (default) or `quick`.
    pub verification: String,
    /// Encryption of the new disks (`disk_encryption_set = "ID"` or
    /// `platform_keys = true`; `None`: carried from the sources). A wave's
    /// own setting overrides it; `run --disk-encryption-set/--platform-keys`
    /// overrides both.
    pub target_encryption: Option<TargetEncryption>,
    /// Re-create the system-assigned principal's role assignments for the
    /// new principal (`--carry-role-assignments`, default; not written to
    /// the plan file: `run --plan` takes it from its own flags).
    pub carry_role_assignments: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_parallel: 8,
            failure_budget: None,
            failure_scope: BudgetScope::Cumulative,
            soak_secs: 0,
            snapshot_retention: "keep".into(),
            verification: "full".into(),
            target_encryption: None,
            carry_role_assignments: true,
        }
    }
}

/// A VM entry of a plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct VmEntry {
    /// ARM id.
    pub id: ResourceId,
    /// Eligible when planned.
    pub eligible: bool,
    /// Path when planned.
    pub path: String,
    /// 1-based wave (eligible VMs).
    pub wave: Option<usize>,
    /// Fingerprint when planned (`None`: not bound; never stale).
    pub fingerprint: Option<String>,
}

/// A parsed, validated plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFile {
    /// Subscriptions (one or more; `subscription = "…"` or `subscriptions = [...]`).
    pub subscriptions: Vec<String>,
    /// Whole-inventory fingerprint when planned.
    pub fingerprint: Option<String>,
    /// Selector (used when there are no `[[vm]]` entries).
    pub selector: super::select::Selector,
    /// Options.
    pub options: PlanOptions,
    /// Waves.
    pub waves: Vec<WaveSpec>,
    /// VM entries (empty: select by `selector` at run time).
    pub vms: Vec<VmEntry>,
}

/// `FILE:LINE:COLUMN: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PlanFileError {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Parses plan-file text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<PlanFile, PlanFileError> {
    let err = |span: Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        PlanFileError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        err(e.span().unwrap_or(0..0), msg)
    })?;
    if *raw.version.get_ref() != VERSION {
        return Err(err(
            raw.version.span(),
            format!(
                "unsupported plan version {}; this tool reads version {VERSION}",
                raw.version.get_ref()
            ),
        ));
    }
    let given: Vec<&Spanned<String>> = match (&raw.subscription, &raw.subscriptions) {
        (Some(_), Some(list)) => {
            return Err(err(
                list.span(),
                "give either `subscription` or `subscriptions`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(err(
                0..0,
                "missing `subscriptions = [\"…\"]` (or `subscription = \"…\"`)".into(),
            ));
        }
        (Some(one), None) => vec![one],
        (None, Some(list)) if list.get_ref().is_empty() => {
            return Err(err(list.span(), "`subscriptions` is empty".into()));
        }
        (None, Some(list)) => list.get_ref().iter().collect(),
    };
    let mut subscriptions: Vec<String> = Vec::new();
    for s in given {
        let sub = s.get_ref().trim().to_string();
        if sub.is_empty() || sub.contains('/') {
            return Err(err(
                s.span(),
                format!("subscription {sub:?} is not a subscription id"),
            ));
        }
        if subscriptions.iter().any(|o| o.eq_ignore_ascii_case(&sub)) {
            return Err(err(s.span(), format!("subscription {sub} is listed twice")));
        }
        subscriptions.push(sub);
    }
    let parse_id = |s: &Spanned<String>| -> Result<ResourceId, PlanFileError> {
        let id = ResourceId::parse(s.get_ref())
            .map_err(|e| err(s.span(), format!("bad VM id {:?}: {e}", s.get_ref())))?;
        if !id.is_type("Microsoft.Compute", "virtualMachines") {
            return Err(err(
                s.span(),
                format!("{:?} is not a virtual machine id", s.get_ref()),
            ));
        }
        if !subscriptions
            .iter()
            .any(|sub| id.subscription().eq_ignore_ascii_case(sub))
        {
            return Err(err(
                s.span(),
                format!(
                    "VM {id} is not in subscription {}",
                    subscriptions.join(", ")
                ),
            ));
        }
        Ok(id)
    };
    let positive = |v: &Spanned<i64>, what: &str| -> Result<usize, PlanFileError> {
        let n = *v.get_ref();
        if n < 1 {
            return Err(err(v.span(), format!("{what} must be at least 1, got {n}")));
        }
        Ok(n as usize)
    };
    let dur =
        |v: &Spanned<NumOrStr>| parse_duration(&v.get_ref().text()).map_err(|m| err(v.span(), m));

    let mut options = PlanOptions::default();
    if let Some(m) = &raw.options.max_parallel {
        options.max_parallel = positive(m, "max_parallel")?;
    }
    if let Some(b) = &raw.options.failure_budget {
        options.failure_budget =
            Some(Budget::parse(&b.get_ref().text()).map_err(|m| err(b.span(), m))?);
    }
    if let Some(s) = &raw.options.failure_scope {
        options.failure_scope = match s.get_ref().as_str() {
            "cumulative" => BudgetScope::Cumulative,
            "per-wave" => BudgetScope::PerWave,
            other => {
                return Err(err(
                    s.span(),
                    format!("failure_scope must be \"cumulative\" or \"per-wave\", got {other:?}"),
                ));
            }
        };
    }
    if let Some(s) = &raw.options.soak {
        options.soak_secs = dur(s)?;
    }
    if let Some(s) = &raw.options.snapshot_retention {
        if !matches!(s.get_ref().as_str(), "keep" | "delete") {
            return Err(err(
                s.span(),
                format!(
                    "snapshot_retention must be \"keep\" or \"delete\", got {:?}",
                    s.get_ref()
                ),
            ));
        }
        options.snapshot_retention = s.get_ref().clone();
    }
    if let Some(s) = &raw.options.verification {
        if !matches!(s.get_ref().as_str(), "full" | "quick") {
            return Err(err(
                s.span(),
                format!(
                    "verification must be \"full\" or \"quick\", got {:?}",
                    s.get_ref()
                ),
            ));
        }
        options.verification = s.get_ref().clone();
    }
    options.target_encryption = target_of(
        &raw.options.disk_encryption_set,
        &raw.options.platform_keys,
        &err,
    )?;

    let mut waves = Vec::new();
    for w in &raw.waves {
        let target =
            WaveTarget::parse(&w.target.get_ref().text()).map_err(|m| err(w.target.span(), m))?;
        waves.push(WaveSpec {
            name: w.name.clone(),
            target,
            max_parallel: w
                .max_parallel
                .as_ref()
                .map(|m| positive(m, "max_parallel"))
                .transpose()?,
            approval: w.approval,
            soak_secs: match &w.soak {
                Some(s) => dur(s)?,
                None => options.soak_secs,
            },
            target_encryption: target_of(&w.disk_encryption_set, &w.platform_keys, &err)?,
        });
    }
    if waves.is_empty() {
        waves.push(WaveSpec::new(WaveTarget::Percent(100.0)));
    }

    let mut selector = super::select::Selector {
        subscriptions: subscriptions.clone(),
        resource_groups: Vec::new(),
        tags: raw.selector.tags.clone(),
        name: raw.selector.name.clone(),
        ..Default::default()
    };
    for g in &raw.selector.resource_groups {
        if let Some((sub, rg)) = g.get_ref().split_once('/')
            && (rg.is_empty()
                || rg.contains('/')
                || !subscriptions.iter().any(|s| s.eq_ignore_ascii_case(sub)))
        {
            return Err(err(
                g.span(),
                format!(
                    "resource group {:?}: expected \"RG\" or \"SUB/RG\" with SUB one of {}",
                    g.get_ref(),
                    subscriptions.join(", ")
                ),
            ));
        }
        selector.resource_groups.push(g.get_ref().clone());
    }
    for v in &raw.selector.vms {
        selector.vms.push(parse_id(v)?);
    }
    let mut vms = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for v in &raw.vm {
        let id = parse_id(&v.id)?;
        if !seen.insert(id.key()) {
            return Err(err(v.id.span(), format!("VM {id} is listed twice")));
        }
        let wave = match &v.wave {
            Some(w) => {
                let n = positive(w, "wave")?;
                if n > waves.len() {
                    return Err(err(
                        w.span(),
                        format!(
                            "wave {n} does not exist; the plan has {} wave(s)",
                            waves.len()
                        ),
                    ));
                }
                Some(n)
            }
            None => None,
        };
        let eligible = v.eligible.unwrap_or(true);
        if eligible && wave.is_none() && raw.vm.iter().any(|o| o.wave.is_some()) {
            return Err(err(v.id.span(), format!("eligible VM {id} has no wave")));
        }
        vms.push(VmEntry {
            id,
            eligible,
            path: v.path.clone().unwrap_or_default(),
            wave,
            fingerprint: v.fingerprint.clone(),
        });
    }
    Ok(PlanFile {
        subscriptions,
        fingerprint: raw.fingerprint.clone(),
        selector,
        options,
        waves,
        vms,
    })
    .inspect(|_| {
        let _ = &raw.created_at;
    })
}

/// `disk_encryption_set` / `platform_keys` of `[options]` or a wave.
fn target_of(
    des: &Option<Spanned<String>>,
    pk: &Option<Spanned<bool>>,
    err: &dyn Fn(Range<usize>, String) -> PlanFileError,
) -> Result<Option<TargetEncryption>, PlanFileError> {
    match (des, pk) {
        (Some(d), Some(p)) if *p.get_ref() => Err(err(
            d.span(),
            "disk_encryption_set and platform_keys = true conflict".into(),
        )),
        (Some(d), _) => {
            let id = ResourceId::parse(d.get_ref())
                .ok()
                .filter(|i| i.is_type("Microsoft.Compute", "diskEncryptionSets"))
                .ok_or_else(|| {
                    err(
                        d.span(),
                        format!(
                            "disk_encryption_set {:?} is not a Microsoft.Compute/diskEncryptionSets id",
                            d.get_ref()
                        ),
                    )
                })?;
            Ok(Some(TargetEncryption::DiskEncryptionSet {
                id: Box::new(id),
            }))
        }
        (None, Some(p)) if *p.get_ref() => Ok(Some(TargetEncryption::PlatformKeys)),
        _ => Ok(None),
    }
}

/// The plan-file lines of a target-encryption setting.
fn render_target(t: &Option<TargetEncryption>) -> String {
    match t {
        Some(TargetEncryption::DiskEncryptionSet { id }) => {
            format!("disk_encryption_set = {}\n", q(id.as_str()))
        }
        Some(TargetEncryption::PlatformKeys) => "platform_keys = true\n".into(),
        _ => String::new(),
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Renders `plan` as a plan file (commented TOML).
pub fn render(
    plan: &Plan,
    selector: &super::select::Selector,
    options: &PlanOptions,
    waves: &[WaveSpec],
) -> String {
    let mut o = String::new();
    o.push_str("# ade2eah migration plan (generated by `ade2eah plan --out`).\n");
    o.push_str(
        "# Review it, adjust waves/options, then: ade2eah run --plan THIS_FILE --state DIR\n",
    );
    o.push_str("# The [[vm]] fingerprints bind the plan to the inventory it saw: `run --plan`\n");
    o.push_str("# refuses to start (exit 2) if any listed VM changed since. See migrations/example.toml.\n\n");
    o.push_str(&format!("version = {VERSION}\n"));
    match plan.subscriptions.as_slice() {
        [one] => o.push_str(&format!("subscription = {}\n", q(one))),
        many => o.push_str(&format!(
            "subscriptions = [{}]\n",
            many.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )),
    }
    o.push_str(&format!("created_at = {}\n", q(&plan.created_at)));
    o.push_str(&format!("fingerprint = {}\n\n", q(&plan.fingerprint)));
    o.push_str("[selector]\n");
    let list = |v: Vec<String>| {
        format!(
            "[{}]",
            v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )
    };
    o.push_str(&format!(
        "resource_groups = {}\n",
        list(selector.resource_groups.clone())
    ));
    o.push_str(&format!(
        "vms = {}\n",
        list(selector.vms.iter().map(|v| v.to_string()).collect())
    ));
    if let Some(n) = &selector.name {
        o.push_str(&format!("name = {}\n", q(n)));
    }
    if !selector.tags.is_empty() {
        let t: Vec<String> = selector
            .tags
            .iter()
            .map(|(k, v)| format!("{} = {}", q(k), q(v)))
            .collect();
        o.push_str(&format!("tags = {{ {} }}\n", t.join(", ")));
    }
    o.push_str("\n[options]\n");
    o.push_str(&format!(
        "max_parallel = {}          # global cap on VMs in flight\n",
        options.max_parallel
    ));
    match options.failure_budget {
        Some(b) => o.push_str(&format!("failure_budget = {}       # halt when failures EXCEED this (count, or % rounded down)\n", q(&b.to_string()))),
        None => o.push_str("# failure_budget = \"10%\"   # halt when failures EXCEED this (count, or % rounded down)\n"),
    }
    o.push_str(&format!(
        "failure_scope = {}    # \"cumulative\" (all waves so far vs the whole plan) or \"per-wave\"\n",
        q(match options.failure_scope {
            BudgetScope::Cumulative => "cumulative",
            BudgetScope::PerWave => "per-wave",
        })
    ));
    o.push_str(&format!(
        "soak = \"{}s\"                # default wait between waves\n",
        options.soak_secs
    ));
    o.push_str(&format!(
        "snapshot_retention = {}\n",
        q(&options.snapshot_retention)
    ));
    o.push_str(&format!("verification = {}\n", q(&options.verification)));
    if options.target_encryption.is_none() {
        o.push_str("# disk_encryption_set = \"/subscriptions/.../diskEncryptionSets/NAME\"  # new disks on this DES (default: each keeps its source's encryption)\n# platform_keys = true        # or: new disks on platform-managed keys\n");
    }
    o.push_str(&render_target(&options.target_encryption));
    for (w, pw) in waves.iter().zip(&plan.waves) {
        o.push_str(&format!(
            "\n# wave {}: {} VM(s)\n[[waves]]\n",
            pw.index,
            pw.vms.len()
        ));
        o.push_str(&format!("name = {}\n", q(&pw.name)));
        o.push_str(&format!(
            "target = {}              # cumulative\n",
            q(&w.target.to_string())
        ));
        if let Some(m) = w.max_parallel {
            o.push_str(&format!("max_parallel = {m}\n"));
        }
        o.push_str(&format!("approval = {}\n", w.approval));
        if w.soak_secs != options.soak_secs {
            o.push_str(&format!("soak = \"{}s\"\n", w.soak_secs));
        }
        o.push_str(&render_target(&w.target_encryption));
    }
    for v in &plan.vms {
        o.push_str("\n[[vm]]\n");
        o.push_str(&format!("id = {}\n", q(v.id.as_str())));
        o.push_str(&format!("eligible = {}\n", v.eligible));
        o.push_str(&format!("path = {}\n", q(&v.path)));
        if let Some(w) = v.wave {
            o.push_str(&format!("wave = {w}\n"));
        }
        o.push_str(&format!("fingerprint = {}\n", q(&v.fingerprint)));
        for f in &v.findings {
            o.push_str(&format!(
                "# {} {}: {}\n",
                f.severity.label(),
                f.code,
                f.message.replace('\n', " ")
            ));
        }
    }
    let _ = fingerprint::hash;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-00000000a0de";

    fn base() -> String {
        format!("version = 1\nsubscription = \"{SUB}\"\n")
    }

    #[test]
    fn unknown_keys_and_bad_values_point_at_line_and_column() {
        let t = format!("{}[options]\nmax_paralel = 3\n", base());
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (4, 1), "{e}");
        assert!(e.message.contains("max_paralel"), "{e}");

        let t = format!("{}[options]\nmax_parallel = \"x\"\n", base());
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (4, 16), "{e}");

        let t = format!(
            "{}\n[[vm]]\nid = \"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/d\"\n",
            base()
        );
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (5, 6), "{e}");
        assert!(e.to_string().starts_with("p.toml:5:6: "), "{e}");

        let t = format!("{}[[waves]]\ntarget = \"150%\"\n", base());
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (4, 10), "{e}");
    }

    #[test]
    fn subscriptions_lists_several_and_exactly_one_form_is_required() {
        const OTHER: &str = "00000000-0000-0000-0000-0000000000bb";
        let vm = |sub: &str| {
            format!(
                "\n[[vm]]\nid = \"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v\"\n"
            )
        };
        let t = format!(
            "version = 1\nsubscriptions = [\"{SUB}\", \"{OTHER}\"]\n{}",
            vm(OTHER)
        );
        let p = parse("p.toml", &t).unwrap();
        assert_eq!(p.subscriptions, vec![SUB.to_string(), OTHER.to_string()]);
        assert_eq!(p.selector.subscriptions, p.subscriptions);
        assert_eq!(p.vms.len(), 1);
        // Old single-subscription files still parse.
        assert_eq!(parse("p.toml", &base()).unwrap().subscriptions, vec![SUB]);
        // A VM outside every listed subscription.
        let t = format!("{}{}", base(), vm(OTHER));
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (5, 6), "{e}");
        // Both, or neither.
        let t = format!("{}subscriptions = [\"{OTHER}\"]\n", base());
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (3, 17), "{e}");
        assert!(e.message.contains("not both"), "{e}");
        let e = parse("p.toml", "version = 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1), "{e}");
        assert!(e.message.contains("subscriptions"), "{e}");
        let e = parse("p.toml", "version = 1\nsubscriptions = []\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 17), "{e}");
        let t = format!("{}[selector]\nresource_groups = [\"{OTHER}/rg\"]\n", base());
        let e = parse("p.toml", &t).unwrap_err();
        assert_eq!((e.line, e.column), (4, 20), "{e}");
        let t = format!(
            "{}[selector]\nresource_groups = [\"{SUB}/rg\", \"rg2\"]\n",
            base()
        );
        let p = parse("p.toml", &t).unwrap();
        assert_eq!(
            p.selector.resource_groups,
            vec![format!("{SUB}/rg"), "rg2".into()]
        );
    }

    #[test]
    fn a_minimal_plan_parses_with_defaults() {
        let p = parse("p.toml", &base()).unwrap();
        assert_eq!(p.options, PlanOptions::default());
        assert_eq!(p.waves.len(), 1);
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../migrations/example.toml");
        let p = super::parse("migrations/example.toml", text).unwrap();
        assert_eq!(p.waves.len(), 3);
        assert!(p.waves[1].approval);
        assert_eq!(p.waves[1].soak_secs, 1800);
        assert_eq!(p.options.soak_secs, 600);
    }
}
