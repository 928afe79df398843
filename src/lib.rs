//! # ade2eah
//!
//! Moves fleets of Azure VMs off Azure Disk Encryption (ADE) onto encryption at
//! host (EAH). A disk or VM resource that ever had ADE keeps a sticky mark, so the
//! only working path copies every disk into a fresh `Upload` disk and re-creates
//! the VM (same name) with EAH on. This crate does that for many VMs at once, as a
//! resumable, journaled state machine.
//!
//! ## Layout (the folder list is the architecture)
//! - [`model`]: ids, secret types, Compute usage names and typed views of
//!   the ARM models (`model::views`) shared by every layer (pure).
//! - [`failpoint`]: named crash points for the crash tests (imports nothing).
//! - [`cloud`]: the port: what the core needs from Azure, as a trait and
//!   plain types (no I/O of its own).
//! - [`step`]: the per-VM state machine: eligibility, the ordered steps and the
//!   pure `decide(record, observation) -> decision` functions (pure, no I/O).
//! - [`plan`]: fleet planning: selection, findings, estimates, waves, plan
//!   files, the frozen plan (pure: no I/O, the clock is an argument).
//! - [`azure`]: the HTTP client for ARM and the managed-disk blob API, error
//!   classification, retries and credentials (adapter); [`azure::wire`] is
//!   its serde types (plain data).
//! - [`journal`]: the sled-backed durable record and the one owner of the
//!   state folder's files ([`journal::state_dir`]) (adapter).
//! - [`copy`]: page-range copy of one disk into another over SAS URLs (adapter).
//! - [`discovery`]: the read-only inventory adapter (listings, Resource
//!   Graph, VMs, disks, locks, backup status, usages), returning plain data
//!   to [`plan`] and the run set-up.
//! - [`engine`]: runs VMs through the steps: observe, journal intent, act,
//!   journal result; concurrency, step retries, parking; the wave executor,
//!   the Azure-side lease, [`cloud::Cloud`] over [`azure`] + [`copy`].
//! - [`report`]: plan and run reports.
//! - [`emulator`]: a built-in Azure (ARM + page blobs) over HTTP on loopback.
//! - [`cli`]: argument parsing, commands, terminal output, exit codes.
//!
//! ## The import rule
//! A module imports only from layers below it (`A <- B`: B may import A):
//!
//! ```text
//! model, failpoint, azure::wire        (pure, shared)
//!   <- cloud (port), step <- plan      (pure: no I/O, no clock)
//!   <- azure, journal <- copy, discovery (adapters)
//!   <- engine <- report <- cli
//! emulator: model, azure::wire and step types only (never the client or the core)
//! ```
//!
//! Side-by-side modules of one row import each other only as listed in
//! `src/layers.rs` (`copy` and `discovery` use `azure`; `discovery` uses the
//! journal's clock). A test there scans every `crate::` path in `src/` and
//! fails on an import the table does not allow, or on a module without a row.
//!
//! ## Glossary
//! - **step**: one stage of a VM's migration (`Snapshot`, `DisableAde`, ...).
//! - **action**: one mutating Azure call a step decides to make; journaled as
//!   *intent* before it is sent and as *result* after.
//! - **park**: stop work on one VM at a safe step, with a reason and the next
//!   action for the operator; `resume` picks it up again.
//! - **skip**: a VM found ineligible before anything was changed on it.

pub mod azure;
pub mod cli;
pub mod cloud;
pub mod copy;
pub mod discovery;
pub mod emulator;
pub mod engine;
pub mod failpoint;
pub mod journal;
#[cfg(test)]
mod layers;
pub mod model;
pub mod plan;
pub mod report;
pub mod step;
