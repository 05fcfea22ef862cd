//! Reading the host: `/proc` and `/sys` under a root that tests can replace.
//!
//! Every read goes through [`Host`], whose root is `/` in production and a fake tree in
//! tests (`ringo doctor --root DIR`, or `RINGO_SYSROOT`).

use std::path::PathBuf;

/// The host being checked.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    /// Whether live probes (building an io_uring) may run; off for fake roots.
    pub(crate) live: bool,
}

impl Host {
    /// The real host.
    pub fn real() -> Host {
        Host { root: PathBuf::from("/"), live: true }
    }

    /// A host whose `/proc` and `/sys` live under `root`; no live probes.
    pub fn at(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into(), live: false }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// A file's content, trimmed; `None` when it cannot be read.
    pub(crate) fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(p)).ok().map(|s| s.trim().to_owned())
    }

    /// Entry names of a directory, sorted; empty when it cannot be read.
    pub(crate) fn list(&self, p: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(p))
            .map(|rd| {
                rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A CPU list file (`0-3,6`) as numbers.
    pub(crate) fn cpu_list(&self, p: &str) -> Option<Vec<usize>> {
        self.read(p).map(|s| parse_cpu_list(&s))
    }

    /// Online CPUs (`/sys/devices/system/cpu/online`).
    pub(crate) fn online_cpus(&self) -> Vec<usize> {
        self.cpu_list("sys/devices/system/cpu/online").unwrap_or_default()
    }
}

/// Parses `0-3,6` leniently (bad parts are skipped); an empty string is no CPU.
pub(crate) fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Formats CPUs as a compact list, `0-3,6`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpu_list("0-3,6,8-9"), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(format_cpu_list(&[9, 8, 0, 1, 2, 3, 6]), "0-3,6,8-9");
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(format_cpu_list(&[]), "");
    }
}
