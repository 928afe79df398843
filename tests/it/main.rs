//! One integration-test binary (ripgrep style). Every test starts the
//! built-in emulator in-process on port 0 and drives the real `ade2eah`
//! binary against it over HTTP.

/// Harness shared by all modules.
mod support;

/// The three migration paths end to end, and deleteOption=Delete safety.
mod end_to_end;
/// Kill the process at named crash points, resume, check nothing was lost.
mod crash_resume;
/// Injected Azure faults: every VM still ends verified.
mod faults;
/// The scripting contract: flags, exit codes, status JSON, bad input.
mod cli_contract;
/// Azure's own refusals reproduced by the emulator (the naive path).
mod platform_rules;
/// Emulator responses and Microsoft's example payloads parse with one set of types.
mod fixtures;
/// The README's demo command works.
mod demo;
