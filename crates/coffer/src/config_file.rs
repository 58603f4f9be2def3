//! `coffer serve --config FILE`: every `serve` flag from a TOML file, and `coffer config
//! check FILE`, which validates one without starting.
//!
//! A key is a flag's long name (`listen`, `data-dir`, `tls-cert`, ...); its value a string,
//! an integer or a boolean (for switches such as `dev`). Precedence: a flag on the command
//! line, then its environment variable (for the flags that have one), then the file, then the
//! default. The file is turned into arguments for the flags neither of the others set and
//! parsed by clap with the rest, so a value in the file is checked exactly as on the command
//! line. Unknown keys are refused with their line, so a typo never silently does nothing.

use clap::parser::ValueSource;
use clap::{Args, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `coffer config`.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration file for `coffer serve --config` without starting anything.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

pub fn run(args: ConfigArgs) -> Result<(), String> {
    match args.command {
        ConfigCommand::Check { file } => {
            let extra = file_args(&file, &|_| false)?;
            let mut argv = vec![OsString::from("serve")];
            argv.extend(extra);
            parse_serve(&file, argv)?;
            println!("{}: OK", file.display());
            Ok(())
        }
    }
}

/// The `serve` arguments with `--config`'s file applied under the command line and the
/// environment. `argv` is the process's arguments from `serve` on.
pub fn apply(
    args: crate::serve::ServeArgs,
    argv: Vec<OsString>,
) -> Result<crate::serve::ServeArgs, String> {
    let Some(file) = args.config_file().map(Path::to_path_buf) else { return Ok(args) };
    let matches =
        serve_command().try_get_matches_from(argv.clone()).map_err(|e| e.render().to_string())?;
    let set_elsewhere = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let extra = file_args(&file, &set_elsewhere)?;
    let mut full = argv;
    full.extend(extra);
    parse_serve(&file, full)
}

fn serve_command() -> clap::Command {
    crate::serve::ServeArgs::augment_args(clap::Command::new("serve"))
}

fn parse_serve(file: &Path, argv: Vec<OsString>) -> Result<crate::serve::ServeArgs, String> {
    let matches = serve_command().try_get_matches_from(argv).map_err(|e| {
        format!(
            "invalid settings (with the configuration file {}):\n{}",
            file.display(),
            e.render()
        )
    })?;
    crate::serve::ServeArgs::from_arg_matches(&matches).map_err(|e| e.render().to_string())
}

/// The file's settings as `--flag=value` arguments, for the flags `set_elsewhere` does not
/// claim. Unknown keys, tables, arrays and `config` itself are refused with their line.
fn file_args(file: &Path, set_elsewhere: &dyn Fn(&str) -> bool) -> Result<Vec<OsString>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", file.display()))?;
    let doc = toml_edit::Document::parse(text.as_str())
        .map_err(|e| format!("the configuration file {} is not valid TOML: {e}", file.display()))?;
    let line_of = |offset: Option<usize>| {
        offset.map_or(0, |o| text[..o.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1)
    };
    let command = crate::serve::ServeArgs::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for (name, item) in doc.as_table().iter() {
        let (key, _) = doc.as_table().get_key_value(name).expect("the key was just listed");
        let line = line_of(key.span().map(|s| s.start));
        let at = || format!("{}, line {line}", file.display());
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(name) && name != "config")
            .ok_or_else(|| {
                format!(
                    "unknown key `{name}` in {} (keys are the long names of `coffer serve` flags)",
                    at()
                )
            })?;
        let id = arg.get_id().as_str();
        if set_elsewhere(id) {
            continue;
        }
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let value = item
            .as_value()
            .ok_or_else(|| format!("`{name}` in {} must be a value, not a table", at()))?;
        match value {
            toml_edit::Value::Boolean(b) if is_switch => {
                if *b.value() {
                    out.push(OsString::from(format!("--{name}")));
                }
            }
            toml_edit::Value::String(s) if !is_switch => {
                out.push(OsString::from(format!("--{name}={}", s.value())));
            }
            toml_edit::Value::Integer(i) if !is_switch => {
                out.push(OsString::from(format!("--{name}={}", i.value())));
            }
            _ if is_switch => return Err(format!("`{name}` in {} must be true or false", at())),
            _ => return Err(format!("`{name}` in {} must be a string or an integer", at())),
        }
    }
    Ok(out)
}
