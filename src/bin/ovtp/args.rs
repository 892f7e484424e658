//! A small command-line parser on `std`: long options with values
//! (`--key FILE` or `--key=FILE`), flags, a few short aliases, positionals,
//! and `--` to end options.
//!
//! A command's options are one string: `"--force --bits= --add-keys=..."`
//! names a flag, an option with a value, and an option that also takes every
//! following argument up to the next option. All commands accept `--help` and `--home=`.

use std::collections::HashMap;
use std::time::Duration;

/// The parsed command line of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    flags: Vec<String>,
    values: HashMap<String, Vec<String>>,
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
}

const SHORT: [(&str, &str); 5] = [
    ("-h", "--help"),
    ("-q", "--quiet"),
    ("-v", "--verbose"),
    ("-p", "--preserve"),
    ("-l", "--long"),
];

/// Parse `argv` (without program and subcommand names). Errors are usage messages.
pub fn parse(spec: &str, argv: &[String]) -> Result<Args, String> {
    let mut args = Args::default();
    let mut list: Option<&str> = None;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            args.positional.extend(it.cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            match list {
                Some(name) => args.values.entry(name.into()).or_default().push(arg.clone()),
                None => args.positional.push(arg.clone()),
            }
            continue;
        }
        let arg = SHORT.iter().find(|(s, _)| s == arg).map_or(arg.as_str(), |(_, l)| l);
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg, None),
        };
        let kind = format!("{spec} --help --home=")
            .split_whitespace()
            .find_map(|s| s.strip_prefix(name).filter(|k| ["", "=", "=..."].contains(k)))
            .map(str::to_string);
        list = None;
        match (kind.as_deref(), inline) {
            (Some(""), None) => args.flags.push(name.into()),
            (Some(""), Some(_)) => return Err(format!("{name} takes no value")),
            (Some("="), Some(v)) => args.values.entry(name.into()).or_default().push(v),
            (Some("="), None) => {
                let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                args.values.entry(name.into()).or_default().push(v.clone());
            }
            (Some(_), v) => {
                let values = args.values.entry(name.into()).or_default();
                values.extend(v);
                list = Some(name);
            }
            (None, _) => return Err(format!("unknown option {arg}")),
        }
    }
    if let Some((name, _)) = args.values.iter().find(|(_, v)| v.is_empty()) {
        return Err(format!("{name} needs at least one value"));
    }
    Ok(args)
}

impl Args {
    /// Whether a flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// The last value of an option (so a later `--key` overrides an earlier one).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Every value of a list option.
    pub fn list(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// A byte count or number (K, M, G suffixes: binary multiples), or `default`.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        let Some(v) = self.value(name) else {
            return Ok(default);
        };
        let (digits, shift) = match v.char_indices().last() {
            Some((i, 'k' | 'K')) => (&v[..i], 10),
            Some((i, 'm' | 'M')) => (&v[..i], 20),
            Some((i, 'g' | 'G')) => (&v[..i], 30),
            _ => (v, 0),
        };
        let n = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift));
        n.ok_or_else(|| format!("{name}: \"{v}\" is not a number"))
    }

    /// A duration in seconds (decimals allowed), or `default`.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, String> {
        let Some(v) = self.value(name) else {
            return Ok(default);
        };
        let secs = v.parse::<f64>().ok().filter(|s| *s > 0.0 && *s < 1e9);
        let secs =
            secs.ok_or_else(|| format!("{name}: \"{v}\" is not a positive number of seconds"));
        secs.map(Duration::from_secs_f64)
    }

    /// The positional arguments, if there are from `min` to `max` of them;
    /// `usage` names them for the error message.
    pub fn positionals(&self, min: usize, max: usize, usage: &str) -> Result<&[String], String> {
        match self.positional.len() {
            n if n < min => Err(format!("missing argument; expected {usage}")),
            n if n > max => {
                Err(format!("unexpected argument \"{}\"; expected {usage}", self.positional[max]))
            }
            _ => Ok(&self.positional),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "--force --quiet --bits= --add-keys=...";

    fn parse_strs(v: &[&str]) -> Result<Args, String> {
        parse(SPEC, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_options_values_lists_and_positionals() {
        let argv =
            ["a", "--bits=2K", "-q", "--add-keys", "x", "y", "--force", "--home", "h", "--", "-z"];
        let a = parse_strs(&argv).unwrap();
        assert_eq!(a.positional, ["a", "-z"]);
        assert_eq!(a.number("--bits", 0).unwrap(), 2048);
        assert!(a.flag("--quiet") && a.flag("--force") && !a.flag("--help"));
        assert_eq!(a.list("--add-keys"), ["x", "y"]);
        assert_eq!(a.value("--home"), Some("h"));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [&["--nope"][..], &["--bits"], &["--force=1"], &["--add-keys"], &["--b=1"]] {
            assert!(parse_strs(bad).is_err(), "{bad:?}");
        }
        assert!(parse_strs(&["--bits=x"]).unwrap().number("--bits", 0).is_err());
    }
}
