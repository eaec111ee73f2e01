//! Server settings.
//!
//! Every option is declared once, on [`ServeOptions`]: its flag, its environment variable
//! (`NODEGRID_…`), its default and its help. The optional TOML file given by `--config` is
//! layered in as clap defaults ([`layer_config_file`]), so the precedence is, highest first:
//! flag, environment variable, file, built-in default; a file key is the flag's name with `_`
//! for `-`, and an unknown key is an error. The README's option table is generated from the
//! same declarations ([`options_markdown`]) and a test keeps the two equal.
//!
//! # Layout
//!
//! [`options`] declares the options; [`settings`] resolves and checks them; [`file`] layers
//! the TOML file; [`readme`] writes the README's table.

mod error;
mod file;
mod options;
mod readme;
mod settings;
#[cfg(test)]
mod tests;

pub use self::error::ConfigError;
pub use self::file::layer_config_file;
pub use self::options::{Environment, LogFormat, ServeOptions, WsTokenExpiry};
pub use self::readme::options_markdown;
pub use self::settings::{
    DataWriterSettings, HttpLimits, Settings, StreamLimits, TlsSettings, XANDEUM_PUBLIC_PRESET,
};
