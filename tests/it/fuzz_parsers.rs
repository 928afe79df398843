//! Property tests (bounded, seeded by proptest's default deterministic
//! runner config below) for the parsers that take outside input: resource
//! ids, journal records and run metadata, lease tags; plus the secret types'
//! formatting (issue 4).

use ade2eah::engine::lease::Lease;
use ade2eah::journal::RunMeta;
use ade2eah::model::{BearerToken, ResourceId, SasUrl, redact};
use ade2eah::step::VmRecord;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..ProptestConfig::default()
    }
}

/// Pieces hostile ids are made of.
fn id_like() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("subscriptions".to_string()),
        Just("resourceGroups".to_string()),
        Just("providers".to_string()),
        Just("Microsoft.Compute".to_string()),
        Just("virtualMachines".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        "[a-zA-Z0-9._-]{1,12}",
        "\\PC{0,6}",
        "[?#%&:|<>*\"\\\\ \\t\\n]{1,3}",
    ];
    prop::collection::vec(seg, 0..12).prop_map(|v| format!("/{}", v.join("/")))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn resource_id_parse_never_panics_and_round_trips(s in prop_oneof![id_like(), "\\PC{0,80}"]) {
        if let Ok(id) = ResourceId::parse(&s) {
            // A parsed id re-parses to itself and has no forbidden characters.
            let again = ResourceId::parse(id.as_str()).unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert!(!id.as_str().contains(['?', '#', '%', ' ', '\n']));
            prop_assert!(id.as_str().split('/').skip(1).all(|p| !p.is_empty() && p != ".."));
            let json = serde_json::to_string(&id).unwrap();
            let back: ResourceId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, id);
        }
    }

    #[test]
    fn valid_ids_always_parse(
        sub in "[0-9a-f-]{1,36}", rg in "[a-zA-Z0-9][a-zA-Z0-9._()-]{0,39}", name in "[a-zA-Z0-9_-]{1,40}",
    ) {
        let s = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
        let id = ResourceId::parse(&s);
        prop_assert!(id.is_ok(), "{s}: {id:?}");
        let id = id.unwrap();
        prop_assert_eq!(id.name(), name.as_str());
    }

    #[test]
    fn journal_record_and_meta_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = serde_json::from_slice::<VmRecord>(&bytes);
        let _ = serde_json::from_slice::<RunMeta>(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(cut in 0usize..2000, flip in 0usize..2000, byte in any::<u8>()) {
        let id = ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm").unwrap();
        let rec = VmRecord::new(id);
        let mut raw = serde_json::to_vec(&rec).unwrap();
        if !raw.is_empty() {
            let i = flip % raw.len();
            raw[i] = byte;
            raw.truncate(cut.min(raw.len()));
        }
        let _ = serde_json::from_slice::<VmRecord>(&raw);
    }

    #[test]
    fn lease_tag_parser_never_panics(s in "\\PC{0,60}") {
        if let Some(l) = Lease::parse(&s) {
            prop_assert_eq!(Lease::parse(&l.value()), Some(l));
        }
    }

    #[test]
    fn redact_removes_every_signature(prefix in "[a-z/:.?&=]{0,20}", sig in "[A-Za-z0-9%+/=]{8,40}") {
        let text = format!("GET https://acct.blob.core.windows.net/c/b?{prefix}&sig={sig} failed; Authorization: Bearer {sig}");
        let r = redact(&text);
        prop_assert!(!r.contains(&sig), "{r}");
        prop_assert_eq!(redact(&r), r.clone(), "idempotent");
    }
}

#[test]
fn secret_types_never_print_their_secret() {
    let secret = "Sup3rS3cretSignatureValue%3D";
    let sas = SasUrl::parse(&format!(
        "https://acct.blob.core.windows.net/c/b?sv=2024-08-04&sr=b&sp=r&sig={secret}"
    ))
    .unwrap();
    let tok = BearerToken::new("eyJhbGciOiJIUzI1NiJ9.payload.signature");
    for shown in [
        format!("{sas}"),
        format!("{sas:?}"),
        format!("{sas:#?}"),
        format!("{tok}"),
        format!("{tok:?}"),
        format!("{:?}", Some(&sas)),
        format!("{:?}", vec![tok.clone()]),
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(!shown.contains("payload.signature"), "{shown}");
    }
}

/// Plan-file-like text: real section and key names mixed with noise.
fn plan_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("[selector]\n".to_string()),
        Just("[[wave]]\n".to_string()),
        Just("[budget]\n".to_string()),
        Just("[options]\n".to_string()),
        Just("subscription = \"00000000-0000-0000-0000-00000000a0de\"\n".to_string()),
        Just("resource_groups = [\"rg-a\", \"rg-b\"]\n".to_string()),
        Just("max_parallel = 4\n".to_string()),
        Just("max_parallel = \"four\"\n".to_string()),
        Just("failures = \"10%\"\n".to_string()),
        Just("vms = [\"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v\"]\n".to_string()),
        Just("vms = [\"not-an-id\"]\n".to_string()),
        Just("soak = \"10m\"\n".to_string()),
        Just("unknown_key = 1\n".to_string()),
        "\\PC{0,20}\n",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    /// The plan-file parser never panics, and every error points at a line
    /// and column inside the text.
    #[test]
    fn plan_file_parser_never_panics_and_points_inside_the_text(text in prop_oneof![plan_like(), "\\PC{0,200}"]) {
        if let Err(e) = ade2eah::plan::file::parse("p.toml", &text) {
            prop_assert_eq!(e.file.as_str(), "p.toml");
            prop_assert!(e.line >= 1 && e.column >= 1);
            prop_assert!(e.line <= text.matches('\n').count() + 1, "line {} past the end", e.line);
            prop_assert!(!e.message.is_empty());
        }
    }
}
