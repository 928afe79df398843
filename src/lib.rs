//! # ade2eah
//!
//! Moves fleets of Azure VMs off Azure Disk Encryption (ADE) onto encryption at
//! host (EAH). A disk or VM resource that ever had ADE keeps a sticky mark, so the
//! only working path copies every disk into a fresh `Upload` disk and re-creates
//! the VM (same name) with EAH on. This crate does that for many VMs at once, as a
//! resumable, journaled state machine.
//!
//! ## Layout (the folder list is the architecture)
//! - [`model`]: ids and secret types shared by every layer (pure).
//! - [`step`]: the per-VM state machine: eligibility, the ordered steps and the
//!   pure `decide(record, observation) -> decision` functions (pure, no I/O).
//! - [`engine`]: runs VMs through the steps: observe, journal intent, act,
//!   journal result; concurrency, step retries, parking.
//! - [`journal`]: the sled-backed durable record (adapter).
//! - [`azure`]: the HTTP client for ARM and the managed-disk blob API, error
//!   classification, retries and credentials (adapter).
//! - [`copy`]: page-range copy of one disk into another over SAS URLs.
//! - [`emulator`]: a built-in Azure (ARM + page blobs) over HTTP on loopback.
//! - [`cli`]: argument parsing, commands, terminal output, exit codes.
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
pub mod model;
pub mod plan;
pub mod report;
pub mod step;
