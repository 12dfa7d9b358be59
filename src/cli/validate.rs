use std::process::ExitCode;

use clap::Args;

use super::PipelineArgs;
use quiver::render::Summary;

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    println!(
        "{} is valid: {}",
        super::display_path(&args.pipeline.pipeline),
        Summary(&plan.stats)
    );
    Ok(ExitCode::SUCCESS)
}
