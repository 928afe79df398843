//! `ade2eah emulator serve`: the built-in Azure emulator on 127.0.0.1 until
//! interrupted.

use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{ServeFleet, ServeSettings};

/// `ade2eah emulator serve`.
pub async fn serve(a: ServeSettings) -> Result<Exit, CliError> {
    let cfg = a.emulator;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.port));
    let emu = crate::emulator::start_on(addr, cfg)
        .await
        .map_err(|e| CliError::BadInput(format!("cannot listen on {addr}: {e}")))?;
    let vms = match a.fleet {
        ServeFleet::Demo => crate::emulator::demo_fleet()
            .into_iter()
            .map(|s| emu.add_vm(s))
            .collect::<Vec<_>>(),
        ServeFleet::None => Vec::new(),
    };
    println!("emulator listening on {}", emu.base_url());
    println!("subscription {}", emu.subscription());
    for vm in &vms {
        println!("vm {vm}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
    Ok(Exit::Done)
}
