//! The settings' command-line flags, made from the table: every row with a flag becomes a
//! global option whose help is the row's doc line, key path and variable, so `--help`, the
//! man pages and the shell completions list each setting the way it is configured elsewhere.
//! Values are checked when the configuration loads, with the same messages as in the files.

use super::table::SETTINGS;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// The flags given, in the table's order: (`--flag`, value).
#[derive(Debug, Clone, Default)]
pub struct SettingFlags(pub Vec<(&'static str, String)>);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS.iter().filter_map(|s| {
            let flag = s.flag?;
            let value = matches.try_get_one::<String>(&flag[2..]).ok()??;
            Some((flag, value.clone()))
        });
        Ok(SettingFlags(given.collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        SETTINGS.iter().fold(cmd, |cmd, s| {
            let Some(flag) = s.flag else {
                return cmd;
            };
            // The key path and its variable (not those of older spellings), and any others.
            let key = s.file.then(|| s.key.to_string());
            let names: Vec<String> = key
                .into_iter()
                .chain(s.variables().skip(s.also.len()))
                .collect();
            let arg = Arg::new(&flag[2..])
                .long(&flag[2..])
                .short(s.short)
                .global(true)
                .value_name(s.value_name)
                .action(ArgAction::Set)
                .help(match (s.default)() {
                    d if d.is_empty() || d == "(none)" => {
                        format!("{} ({})", s.doc.trim(), names.join(", "))
                    }
                    d => format!("{} ({}) [default: {d}]", s.doc.trim(), names.join(", ")),
                });
            // `--delete-enabled` alone means true.
            cmd.arg(match s.value_name {
                "BOOL" => arg.num_args(0..=1).default_missing_value("true"),
                _ => arg,
            })
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
