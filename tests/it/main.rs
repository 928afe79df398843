//! One integration-test binary (ripgrep style). Every test starts the
//! built-in emulator in-process on port 0 and drives the real `ade2eah`
//! binary against it over HTTP.

/// Harness shared by all modules.
mod support;

/// The scripting contract: flags, exit codes, status JSON, bad input.
mod cli_contract;
/// Kill the process at named crash points, resume, check nothing was lost.
mod crash_resume;
/// The README's demo command works.
mod demo;
/// The three migration paths end to end, and deleteOption=Delete safety.
mod end_to_end;
/// Injected Azure faults: every VM still ends verified.
mod faults;
/// Emulator responses and Microsoft's example payloads parse with one set of types.
mod fixtures;
/// Azure's own refusals reproduced by the emulator (the naive path).
mod platform_rules;
