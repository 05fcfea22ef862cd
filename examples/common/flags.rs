//! `--name value` flags for the examples, over defaults: each known flag once, any
//! other flag an error naming the known ones.

use std::collections::HashMap;

/// The examples' flags: `defaults` lists every known flag (without `--`) and its value
/// when not given.
pub(crate) fn parse(defaults: &[(&str, &str)]) -> Result<HashMap<String, String>, String> {
    let mut values: HashMap<String, String> =
        defaults.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let known = || defaults.iter().map(|(k, _)| format!("--{k}")).collect::<Vec<_>>().join(", ");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let name = flag.strip_prefix("--").filter(|n| values.contains_key(*n));
        let Some(name) = name else { return Err(format!("unknown flag {flag} ({})", known())) };
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        values.insert(name.to_owned(), value);
    }
    Ok(values)
}
