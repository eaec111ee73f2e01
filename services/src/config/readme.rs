//! The README's option table, generated from the declarations so that the two cannot drift.

use clap::{Args, Command};

use super::options::ServeOptions;

/// The README's option table, generated from the declarations: flag, environment variable,
/// default, meaning.
pub fn options_markdown() -> String {
    let command = ServeOptions::augment_args(Command::new("nodegrid"));
    let mut table = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|help| help.to_string())
            .unwrap_or_default()
            .replace('\n', " ");
        let (meaning, described_default) = match help.rfind(" [default: ") {
            Some(start) if help.ends_with(']') => (
                help[..start].to_owned(),
                Some(help[start + 11..help.len() - 1].to_owned()),
            ),
            _ => (help.clone(), None),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if !defaults.is_empty() {
            format!("`{}`", defaults.join(","))
        } else {
            described_default.unwrap_or_else(|| "none".to_owned())
        };
        table.push_str(&format!(
            "| `--{long}` | `{}` | {default} | {meaning} |\n",
            env.to_string_lossy()
        ));
    }
    table
}
