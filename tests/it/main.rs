//! One integration-test binary (ripgrep style). Every test starts the
//! built-in emulator in-process on port 0 and drives the real `ade2eah`
//! binary against it over HTTP.

/// Harness shared by all modules.
mod support;

/// az conventions: -o formats, --query, subscription names, table width, completions, logs (issue 14).
mod az_conventions;
/// The bad-input corpus in tests/bad_input/ (issue 4).
mod bad_input;
/// `ade2eah cleanup`: only what the journal owns, resumable (issue 13).
mod cleanup;
/// The scripting contract: flags, exit codes, status JSON, bad input.
mod cli_contract;
/// Pre-copy and delta rounds, checkpoints, verification, paging, ServerBusy (issue 3).
mod copy_engine;
/// Kill the process at named crash points, resume, check nothing was lost.
mod crash_resume;
/// Every crash point of a traced run, killed and resumed (issue 4).
mod crash_sweep;
/// The README's demo command works.
mod demo;
/// The three migration paths end to end, and deleteOption=Delete safety.
mod end_to_end;
/// Extensions other than ADE and role assignments of the system identity come back (issue 12).
mod extensions_identity;
/// Each fault kind alone and mixed; park with a reason, resume finishes (issue 4).
mod fault_matrix;
/// Injected Azure faults: every VM still ends verified.
mod faults;
/// Emulator responses and Microsoft's example payloads parse with one set of types.
mod fixtures;
/// Fleet scale: dry-run plans, plan files, waves, budgets, gates, stale plans.
mod fleet;
/// Emulator throttling buckets and `bench fleet` (issue 6).
mod fleet_bench;
/// Bounded property tests of every parser of outside input (issue 4).
mod fuzz_parsers;
/// Journal lock, Azure-side lease, schema migration (issue 4).
mod guards;
/// `--rebuild-linux-os`: Linux VMs with an ADE OS volume rebuilt from their image (issue 13).
mod linux_rebuild;
/// Management locks, backup status and usages (issue 6).
mod locks;
/// Fleets across several subscriptions (issue 6).
mod multi_sub;
/// `--nic-swap`: placeholder NIC, swap before the delete, fallback to the hold (issue 15).
mod nic_swap;
/// The least-privilege role and `permissions --check` (issue 14).
mod permissions;
/// Azure's own refusals reproduced by the emulator (the naive path).
mod platform_rules;
/// The same VM after migration: every property family round-trips, tags as before (issue 12).
mod preservation;
/// Downtime in `report --output json`, the HTML timeline in Chromium (issue 14).
mod report_timeline;
/// Rollback from every step, automatic rollback, no-op rollbacks (issue 13).
mod rollback;
/// Microsoft's Python SDKs (azure-mgmt-compute, azure-storage-blob) drive the emulator (issue 11).
mod sdk_conformance;
/// Discovery by tag, name glob, and feature registration (issue 6).
mod selectors;
/// One page-blob suite against our emulator and Azurite (differential).
mod storage_conformance;
/// Target encryption (DES carried / requested / platform keys), validate
/// before delete, verification beyond the flag, --guest-check (issue 12).
mod target_encryption;
