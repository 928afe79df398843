//! The import rule of the crate (see the crate doc and docs/contracts.md),
//! as a table and a test that scans `src/**/*.rs` for `crate::` paths and
//! fails when a module names one it may not import. A new top-level module
//! fails the test until it has a row here, so the rule cannot silently rot.
//!
//! Scope of the scan: every `crate::…` path in code (use declarations with
//! their `{…}` groups, and inline paths); comment lines are skipped (a doc
//! link to a higher layer is not a dependency). Relative `super::` paths
//! stay inside their top-level module in this crate and are not followed.

/// Each top-level module and what it may import (besides itself).
/// `azure::wire` (the serde types of ARM payloads, importing nothing of the
/// crate) counts as its own node at the model level, apart from the rest of
/// `azure` (the HTTP client).
pub const ALLOWED: &[(&str, &[&str])] = &[
    // Pure, shared by all.
    ("model", &[]),
    ("failpoint", &[]),
    ("azure::wire", &[]),
    ("cloud", &["model"]),
    ("step", &["model", "azure::wire"]),
    ("plan", &["model", "azure::wire", "step"]),
    // Adapters.
    ("azure", &["model", "azure::wire"]),
    ("journal", &["model", "azure::wire", "step", "plan"]),
    ("copy", &["model", "failpoint", "azure", "azure::wire"]),
    (
        "discovery",
        &[
            "model",
            "azure::wire",
            "cloud",
            "step",
            "plan",
            "azure",
            "journal",
        ],
    ),
    // The runner and what is above it.
    (
        "engine",
        &[
            "model",
            "failpoint",
            "azure::wire",
            "cloud",
            "step",
            "plan",
            "azure",
            "journal",
            "copy",
            "discovery",
        ],
    ),
    (
        "report",
        &[
            "model",
            "failpoint",
            "azure::wire",
            "cloud",
            "step",
            "plan",
            "azure",
            "journal",
            "copy",
            "discovery",
            "engine",
        ],
    ),
    // The fake Azure: plain data only, never the client or the core.
    ("emulator", &["model", "azure::wire", "step"]),
    (
        "cli",
        &[
            "model",
            "failpoint",
            "azure::wire",
            "cloud",
            "step",
            "plan",
            "azure",
            "journal",
            "copy",
            "discovery",
            "engine",
            "report",
            "emulator",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::ALLOWED;

    /// The node a `crate::` path (without `crate::`) names.
    fn node(path: &str) -> String {
        let mut segs = path.split("::").map(str::trim);
        let first = segs.next().unwrap_or_default();
        if first == "azure" && segs.next() == Some("wire") {
            "azure::wire".into()
        } else {
            first.to_string()
        }
    }

    /// The node a source file belongs to.
    fn owner(src: &Path, file: &Path) -> String {
        let rel = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.len() >= 2 && parts[0] == "azure" && parts[1] == "wire" {
            return "azure::wire".into();
        }
        parts[0].clone()
    }

    /// Expands the use tree starting at `s` (just after `crate::`) into full
    /// paths; returns them.
    fn expand(s: &str) -> Vec<String> {
        fn tree(s: &[u8], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
            let mut path = prefix.to_string();
            loop {
                while *i < s.len() && s[*i].is_ascii_whitespace() {
                    *i += 1;
                }
                if *i < s.len() && s[*i] == b'{' {
                    *i += 1;
                    loop {
                        while *i < s.len() && (s[*i].is_ascii_whitespace() || s[*i] == b',') {
                            *i += 1;
                        }
                        if *i >= s.len() || s[*i] == b'}' {
                            *i += 1;
                            return;
                        }
                        let before = *i;
                        tree(s, i, &path, out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                }
                let start = *i;
                while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                    *i += 1;
                }
                let ident = std::str::from_utf8(&s[start..*i]).unwrap();
                if ident.is_empty() {
                    if !path.is_empty() {
                        out.push(path);
                    }
                    return;
                }
                path = if path.is_empty() {
                    ident.to_string()
                } else {
                    format!("{path}::{ident}")
                };
                if s[*i..].starts_with(b"::") {
                    *i += 2;
                } else {
                    out.push(path);
                    // `path as name`: skip the rename.
                    let mut j = *i;
                    while j < s.len() && s[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if s[j..].starts_with(b"as")
                        && s.get(j + 2).is_some_and(u8::is_ascii_whitespace)
                    {
                        j += 2;
                        while j < s.len() && s[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                            j += 1;
                        }
                        *i = j;
                    }
                    return;
                }
            }
        }
        let mut out = Vec::new();
        tree(s.as_bytes(), &mut 0, "", &mut out);
        out
    }

    /// Every node named by a `crate::` path in `code` (comment lines skipped).
    fn references(code: &str) -> BTreeSet<String> {
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = BTreeSet::new();
        let mut from = 0;
        while let Some(k) = code[from..].find("crate::") {
            let at = from + k;
            from = at + "crate::".len();
            let prev = code[..at].chars().next_back();
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            for p in expand(&code[from..]) {
                out.insert(node(&p));
            }
        }
        out
    }

    fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rs_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Violations in the tree at `src`: `file: owner imports target`.
    fn violations(src: &Path) -> Vec<String> {
        let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
        let mut files = Vec::new();
        rs_files(src, &mut files);
        files.sort();
        let mut bad = Vec::new();
        for f in files {
            let own = owner(src, &f);
            // The crate root, the binary and this file (its test strings) are not layers.
            if own == "lib" || own == "main" || own == "layers" {
                continue;
            }
            let Some(allowed) = table.get(own.as_str()) else {
                bad.push(format!(
                    "{}: module `{own}` has no row in layers::ALLOWED",
                    f.display()
                ));
                continue;
            };
            let code = std::fs::read_to_string(&f).unwrap();
            for target in references(&code) {
                if target == own
                    || (own == "azure" && target == "azure::wire")
                    || allowed.contains(&target.as_str())
                {
                    continue;
                }
                bad.push(format!(
                    "{}: `{own}` imports `crate::{target}`, which its layer may not",
                    f.display()
                ));
            }
        }
        bad
    }

    #[test]
    fn no_module_imports_a_layer_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let bad = violations(&src);
        assert!(bad.is_empty(), "import rule broken:\n{}", bad.join("\n"));
    }

    #[test]
    fn the_table_is_a_layer_order() {
        // Acyclic, and every allowed target has a row: each module's
        // allowed set contains its targets' allowed sets (transitive).
        let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
        assert_eq!(table.len(), ALLOWED.len(), "a module has two rows");
        for (m, allowed) in &table {
            for t in *allowed {
                let below = table
                    .get(t)
                    .unwrap_or_else(|| panic!("{m} may import {t}, which has no row"));
                assert!(!below.contains(m), "{m} and {t} may import each other");
                for tt in *below {
                    assert!(
                        allowed.contains(tt) || tt == m,
                        "{m} may import {t} but not {tt}, which {t} may import"
                    );
                }
            }
        }
    }

    #[test]
    fn the_scan_sees_every_form_of_path() {
        let code = r#"
use crate::model::ResourceId;
use crate::{step::VmRecord, azure::wire::ResourceSku};
use crate::azure::{self, ArmClient};
use crate::{journal::Journal as J, copy as _};
// use crate::cli::Nothing;
/// [`crate::report`]
fn f() { crate::engine::failpoint_like(); let _ = $crate::x; }
"#;
        let refs: Vec<String> = references(code).into_iter().collect();
        assert_eq!(
            refs,
            [
                "azure",
                "azure::wire",
                "copy",
                "engine",
                "journal",
                "model",
                "step"
            ]
        );
    }

    #[test]
    fn a_reference_up_the_layers_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir_all(src.join("plan")).unwrap();
        std::fs::write(
            src.join("plan/mod.rs"),
            "use crate::step::VmRecord;\nfn f() { crate::engine::run(); }\n",
        )
        .unwrap();
        std::fs::create_dir_all(src.join("newlayer")).unwrap();
        std::fs::write(src.join("newlayer/mod.rs"), "").unwrap();
        let bad = violations(src);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("`newlayer` has no row"), "{bad:?}");
        assert!(bad[1].contains("`plan` imports `crate::engine`"), "{bad:?}");
    }
}
