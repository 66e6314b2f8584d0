//! `arbiter fake-model`: serve a scripted OpenAI-compatible endpoint until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use eval::fake_model::{FakeModel, Script};
use miette::IntoDiagnostic;

#[derive(clap::Args)]
pub struct Args {
    /// The script: `[[reply]]` tables, one per request.
    #[arg(long)]
    script: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let script = Script::load(&args.script)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(async {
        let server = FakeModel::start(script, args.listen)
            .await
            .into_diagnostic()?;
        eprintln!("fake model listening on {}", server.base_url());
        tokio::select! {
            () = server.wait() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
