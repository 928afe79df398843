//! The commands, one file each, on validated [`Settings`]: [`dispatch`]
//! runs one. Shared set-up (connect, start or reopen a run) is in
//! [`setup`], driving a run to its end in [`execute`].

pub mod approve;
pub mod bench_copy;
pub mod bench_copy_matrix;
pub mod bench_fleet;
pub mod cleanup;
pub mod completions;
pub mod demo;
pub mod emulator;
pub mod execute;
pub mod permissions;
pub mod plan;
pub mod report;
pub mod resume;
pub mod rollback;
pub mod run;
pub mod setup;
pub mod status;

use super::error::{CliError, Exit};
use super::settings::Settings;

/// Runs one command.
pub async fn dispatch(settings: Settings) -> Result<Exit, CliError> {
    match settings {
        Settings::Permissions(s) => permissions::permissions(s).await,
        Settings::Completions(shell) => completions::completions(shell),
        Settings::Man => completions::man(),
        Settings::Run(s) => run::run(s).await,
        Settings::Resume(s) => resume::resume(s).await,
        Settings::Status(s) => status::status(s),
        Settings::Report(s) => report::report(s),
        Settings::Plan(s) => plan::plan(s).await,
        Settings::Approve(s) => approve::approve(s),
        Settings::Rollback(s) => rollback::rollback(s).await,
        Settings::Demo(s) => demo::demo(s).await,
        Settings::Serve(s) => emulator::serve(s).await,
        Settings::Cleanup(s) => cleanup::cleanup(s).await,
        Settings::BenchFleet(s) => bench_fleet::bench_fleet(s).await,
        Settings::BenchCopy(s) => bench_copy::bench_copy(s).await,
    }
}
