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
    let checked = match args.pipeline.validate() {
        Ok(checked) => checked,
        Err(code) => return Ok(code),
    };
    println!(
        "{} is valid: {}",
        super::display_path(&args.pipeline.pipeline),
        Summary(&checked.stats)
    );
    Ok(ExitCode::SUCCESS)
}
