//! The TOML file of `--config`, layered under flags and environment variables as clap defaults.

use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, Command};

use super::error::ConfigError;
use super::options::ServeOptions;

/// Layers the TOML file named by `--config` (or `NODEGRID_CONFIG`) into `command` as the
/// defaults of the subcommand that takes [`ServeOptions`]: a flag or an environment variable
/// still wins, and a built-in default gives way. The file is found with a first parse of the
/// command line; when that parse fails, `command` is returned as it is, so that the real parse
/// reports the error.
pub fn layer_config_file(command: Command) -> Result<Command, ConfigError> {
    let Ok(matches) = command.clone().try_get_matches() else {
        return Ok(command);
    };
    let mut path = Vec::new();
    let mut current: &ArgMatches = &matches;
    let mut file = None;
    while let Some((name, sub_matches)) = current.subcommand() {
        path.push(name.to_owned());
        if let Ok(Some(config)) = sub_matches.try_get_one::<PathBuf>("config") {
            file = Some(config.clone());
            break;
        }
        current = sub_matches;
    }
    let Some(file) = file else {
        return Ok(command);
    };
    let values = read_file(&file)?;
    Ok(mutate_path(command, &path, &|command| {
        file_defaults(command, &values)
    }))
}

/// Applies `change` to the subcommand at `path` (names from the root).
pub(super) fn mutate_path(
    command: Command,
    path: &[String],
    change: &dyn Fn(Command) -> Command,
) -> Command {
    match path.split_first() {
        None => change(command),
        Some((first, rest)) => command.mut_subcommand(first, |sub| mutate_path(sub, rest, change)),
    }
}

/// The file's keys and their values as command-line text; unknown keys are errors.
pub(super) fn read_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |reason: String| ConfigError::ParseFile {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|error| parse_error(error.to_string()))?;
    let known = ServeOptions::augment_args(Command::new("nodegrid"));
    let mut values = Vec::with_capacity(table.len());
    for (key, value) in table {
        if key == "config"
            || !known
                .get_arguments()
                .any(|arg| arg.get_id() == key.as_str())
        {
            return Err(parse_error(format!("unknown key {key:?}")));
        }
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(text),
                    toml::Value::Integer(number) => Ok(number.to_string()),
                    other => Err(parse_error(format!(
                        "{key}: unexpected {}",
                        other.type_str()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(parse_error(format!(
                    "{key}: unexpected {}",
                    other.type_str()
                )));
            }
        };
        values.push((key, text));
    }
    Ok(values)
}

pub(super) fn file_defaults(mut command: Command, values: &[(String, String)]) -> Command {
    for (key, value) in values {
        let value = value.clone();
        // File values may be secrets: never shown in `--help`.
        command = command.mut_arg(key, |arg| arg.default_value(value).hide_default_value(true));
    }
    command
}
