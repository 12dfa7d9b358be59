use std::process::ExitCode;

use clap::Args;
use quiver::schema;

#[derive(Args)]
pub struct SchemaArgs {
    /// The schema of a fragment file (`use:`) instead of a pipeline's.
    #[arg(long)]
    fragment: bool,
}

/// Prints the JSON Schema an editor uses to complete and check pipeline
/// files; the repo keeps a copy in `schema/` for the modeline.
pub fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let registry = quiver::operators::registry();
    let value = if args.fragment {
        schema::fragment(registry)
    } else {
        schema::pipeline(registry)
    };
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    super::print(&text)
}
