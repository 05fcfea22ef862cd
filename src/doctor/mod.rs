//! `ringo doctor`: checks the host a server will run on, and proposes a CPU layout.
//!
//! Each check reads `/proc` and `/sys` through [`Host`] (a fake root in tests) and
//! answers PASS, WARN or FAIL with the reason and the command or kernel-tuning file that
//! fixes it. It never changes the host.

mod host;
pub mod layout;

pub use host::Host;

use serde::Serialize;

use crate::config::Config;
use host::format_cpu_list;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but costs speed or headroom.
    Warn,
    /// Will not work as configured.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check's name.
    pub check: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty on PASS).
    pub fix: String,
}

fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding { check, status: Status::Pass, detail: detail.into(), fix: String::new() }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, status: Status::Warn, detail: detail.into(), fix: fix.into() }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, status: Status::Fail, detail: detail.into(), fix: fix.into() }
}

/// The CPUs the shards will run on, for `cfg` on `host`.
pub fn worker_cpus(host: &Host, cfg: &Config) -> Vec<usize> {
    let from_config = crate::config::parse_core_list(&cfg.server.cores).ok();
    let available = from_config.unwrap_or_else(|| host.online_cpus());
    let available = if available.is_empty() { vec![0] } else { available };
    let n = if cfg.server.shards > 0 { cfg.server.shards } else { available.len() };
    (0..n).map(|i| available[i % available.len()]).collect()
}

/// Runs every check.
pub fn run(host: &Host, cfg: &Config) -> Vec<Finding> {
    let workers = worker_cpus(host, cfg);
    vec![
        io_uring(host),
        memlock(host),
        nofile(host, cfg, workers.len()),
        somaxconn(host, cfg),
        governor(host, &workers),
        smt(host, &workers),
        irq_overlap(host, &workers),
        pinned_neighbours(host, &workers),
        numa(host, &workers),
        thp(host),
        clocksource(host),
    ]
}

fn kernel_version(host: &Host) -> Option<(u32, u32)> {
    let release = host.read("proc/sys/kernel/osrelease")?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn io_uring(host: &Host) -> Finding {
    const CHECK: &str = "io_uring";
    let disabled = host.read("proc/sys/kernel/io_uring_disabled");
    match disabled.as_deref() {
        Some("2") => {
            return fail(
                CHECK,
                "kernel.io_uring_disabled = 2: io_uring is off for every process (ringo falls back to epoll)",
                "sysctl -w kernel.io_uring_disabled=0 (kernel-tuning/sysctl.conf)",
            );
        }
        Some("1") => {
            return warn(
                CHECK,
                "kernel.io_uring_disabled = 1: only root and kernel.io_uring_group may create rings",
                "sysctl -w kernel.io_uring_disabled=0, or add ringo's user to kernel.io_uring_group",
            );
        }
        _ => {}
    }
    if let Some((major, minor)) = kernel_version(host) {
        if (major, minor) < (5, 19) {
            return warn(
                CHECK,
                format!(
                    "kernel {major}.{minor}: io_uring networking is slower before 5.19 (no multishot accept)"
                ),
                "upgrade to a 6.x kernel",
            );
        }
    }
    if !host.live {
        return pass(CHECK, "enabled (live probe skipped on a fake root)");
    }
    match probe_opcodes() {
        Ok(()) => {
            pass(CHECK, "a ring builds and supports accept, read, write, send, recv, close, timeout, cancel")
        }
        Err(reason) => fail(
            CHECK,
            format!("cannot use io_uring: {reason} (ringo falls back to epoll)"),
            "check seccomp (container runtimes block io_uring_setup), kernel.io_uring_disabled, RLIMIT_MEMLOCK",
        ),
    }
}

/// Builds a ring and checks the opcodes ringo's runtime submits.
fn probe_opcodes() -> Result<(), String> {
    use io_uring::opcode;
    let ring = io_uring::IoUring::new(8).map_err(|e| e.to_string())?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| format!("probe: {e}"))?;
    let needed = [
        ("accept", opcode::Accept::CODE),
        ("read", opcode::Read::CODE),
        ("write", opcode::Write::CODE),
        ("send", opcode::Send::CODE),
        ("recv", opcode::Recv::CODE),
        ("close", opcode::Close::CODE),
        ("timeout", opcode::Timeout::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
    ];
    let missing: Vec<&str> =
        needed.iter().filter(|(_, c)| !probe.is_supported(*c)).map(|(n, _)| *n).collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("opcodes not supported: {}", missing.join(", "))) }
}

/// A soft/hard pair from `/proc/self/limits` ("unlimited" is `u64::MAX`).
fn limit(host: &Host, name: &str) -> Option<(u64, u64)> {
    let text = host.read("proc/self/limits")?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut nums = line[name.len()..]
        .split_whitespace()
        .map(|v| if v == "unlimited" { Some(u64::MAX) } else { v.parse::<u64>().ok() });
    Some((nums.next()??, nums.next()??))
}

fn memlock(host: &Host) -> Finding {
    const CHECK: &str = "memlock";
    if matches!(kernel_version(host), Some(v) if v >= (5, 12)) {
        return pass(CHECK, "kernel >= 5.12 charges rings to the memory cgroup, not RLIMIT_MEMLOCK");
    }
    match limit(host, "Max locked memory") {
        Some((soft, _)) if soft == u64::MAX || soft >= 64 << 20 => {
            pass(CHECK, "RLIMIT_MEMLOCK is large enough for the rings")
        }
        Some((soft, _)) => warn(
            CHECK,
            format!(
                "RLIMIT_MEMLOCK is {} KiB: each shard's ring needs locked memory on this kernel",
                soft / 1024
            ),
            "ulimit -l unlimited, or LimitMEMLOCK=infinity in the systemd unit (kernel-tuning/limits.conf)",
        ),
        None => warn(CHECK, "cannot read RLIMIT_MEMLOCK", "check `ulimit -l`"),
    }
}

fn nofile(host: &Host, cfg: &Config, shards: usize) -> Finding {
    const CHECK: &str = "nofile";
    let wanted = (cfg.limits.max_connections as u64).saturating_mul(shards as u64).saturating_add(64);
    match limit(host, "Max open files") {
        Some((soft, _)) if soft >= wanted => {
            pass(CHECK, format!("{soft} open files allowed, {wanted} wanted"))
        }
        Some((soft, hard)) if soft >= 4096 => warn(
            CHECK,
            format!(
                "{soft} open files allowed (hard {hard}); {shards} shard(s) x limits.max_connections {} wants {wanted}",
                cfg.limits.max_connections
            ),
            format!(
                "ulimit -n {wanted}, or LimitNOFILE={wanted} in the systemd unit (kernel-tuning/limits.conf)"
            ),
        ),
        Some((soft, hard)) => fail(
            CHECK,
            format!("only {soft} open files allowed (hard {hard}): a few thousand connections exhaust it"),
            format!(
                "ulimit -n {wanted}, or LimitNOFILE={wanted} in the systemd unit (kernel-tuning/limits.conf)"
            ),
        ),
        None => warn(CHECK, "cannot read the open-files limit", "check `ulimit -n`"),
    }
}

fn somaxconn(host: &Host, cfg: &Config) -> Finding {
    const CHECK: &str = "somaxconn";
    let backlog = u64::from(cfg.server.backlog);
    match host.read("proc/sys/net/core/somaxconn").and_then(|s| s.parse::<u64>().ok()) {
        Some(max) if max >= backlog => pass(CHECK, format!("net.core.somaxconn {max} >= backlog {backlog}")),
        Some(max) => warn(
            CHECK,
            format!("net.core.somaxconn {max} silently caps server.backlog {backlog}"),
            format!("sysctl -w net.core.somaxconn={backlog} (kernel-tuning/sysctl.conf)"),
        ),
        None => warn(CHECK, "cannot read net.core.somaxconn", "check /proc/sys/net/core/somaxconn"),
    }
}

fn governor(host: &Host, workers: &[usize]) -> Finding {
    const CHECK: &str = "cpu-governor";
    let mut slow = Vec::new();
    let mut seen = 0;
    for cpu in workers {
        if let Some(g) = host.read(&format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")) {
            seen += 1;
            if g != "performance" {
                slow.push(format!("cpu{cpu}={g}"));
            }
        }
    }
    if seen == 0 {
        pass(CHECK, "no cpufreq control (fixed frequency, or a VM)")
    } else if slow.is_empty() {
        pass(CHECK, "worker CPUs run the performance governor")
    } else {
        warn(
            CHECK,
            format!("worker CPUs not on `performance`: {}", slow.join(" ")),
            "kernel-tuning/apply.sh --governor performance",
        )
    }
}

fn smt(host: &Host, workers: &[usize]) -> Finding {
    const CHECK: &str = "smt";
    let mut shared = Vec::new();
    for (i, a) in workers.iter().enumerate() {
        let siblings = host
            .cpu_list(&format!("sys/devices/system/cpu/cpu{a}/topology/thread_siblings_list"))
            .unwrap_or_default();
        for b in &workers[i + 1..] {
            if a != b && siblings.contains(b) {
                shared.push(format!("{a}+{b}"));
            }
        }
    }
    let active = host.read("sys/devices/system/cpu/smt/active");
    if !shared.is_empty() {
        warn(
            CHECK,
            format!("shards on SMT siblings of one physical core: {}", shared.join(" ")),
            "one shard per physical core: ringo doctor --layout",
        )
    } else if active.as_deref() == Some("1") {
        pass(CHECK, "SMT on, but no two shards share a physical core")
    } else {
        pass(CHECK, "no two shards share a physical core")
    }
}

fn irq_overlap(host: &Host, workers: &[usize]) -> Finding {
    const CHECK: &str = "nic-irqs";
    let topo = layout::read_topology(host);
    if topo.nics.is_empty() {
        return pass(CHECK, "no NIC with MSI interrupts (loopback or a VM)");
    }
    let mut overlaps = Vec::new();
    for nic in &topo.nics {
        let on_workers: Vec<usize> = nic.irq_cpus.iter().copied().filter(|c| workers.contains(c)).collect();
        if !on_workers.is_empty() {
            overlaps.push(format!("{} IRQs on worker CPU {}", nic.name, format_cpu_list(&on_workers)));
        }
    }
    if overlaps.is_empty() {
        pass(CHECK, "NIC interrupts stay off the worker CPUs")
    } else {
        let plan = layout::propose(&topo);
        warn(
            CHECK,
            overlaps.join("; "),
            format!(
                "kernel-tuning/irq-affinity.sh --iface {} --cpus {} (and keep irqbalance off them)",
                topo.nics[0].name,
                format_cpu_list(&plan.housekeeping)
            ),
        )
    }
}

fn pinned_neighbours(host: &Host, workers: &[usize]) -> Finding {
    const CHECK: &str = "pinned-neighbours";
    let online = host.online_cpus();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for pid in host.list("proc").into_iter().filter(|p| p.chars().all(|c| c.is_ascii_digit())) {
        if pid == me {
            continue;
        }
        // Kernel threads have an empty command line and are pinned per CPU by design.
        if host.read(&format!("proc/{pid}/cmdline")).is_none_or(|c| c.is_empty()) {
            continue;
        }
        let Some(status) = host.read(&format!("proc/{pid}/status")) else { continue };
        let field =
            |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_owned);
        let Some(allowed) = field("Cpus_allowed_list:") else { continue };
        let allowed = host::parse_cpu_list(&allowed);
        if allowed.len() >= online.len() || allowed.is_empty() {
            continue;
        }
        let clash: Vec<usize> = allowed.iter().copied().filter(|c| workers.contains(c)).collect();
        if !clash.is_empty() {
            let name = field("Name:").unwrap_or_default();
            found.push(format!("{name}[{pid}] on CPU {}", format_cpu_list(&clash)));
        }
    }
    if found.is_empty() {
        pass(CHECK, "no other pinned process on the worker CPUs")
    } else {
        found.truncate(5);
        warn(
            CHECK,
            format!("other processes pinned to worker CPUs: {}", found.join(", ")),
            "move them (taskset -pc LIST PID, or their unit's CPUAffinity=) or pick other cores (--cores)",
        )
    }
}

fn numa(host: &Host, workers: &[usize]) -> Finding {
    const CHECK: &str = "numa";
    let topo = layout::read_topology(host);
    let mut nodes: Vec<usize> =
        topo.cpus.iter().filter(|c| workers.contains(&c.id)).map(|c| c.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let nic_node = topo.nics.iter().find_map(|n| n.node);
    if nodes.len() > 1 {
        return warn(
            CHECK,
            format!("shards span NUMA nodes {nodes:?}: cross-node memory and IRQ traffic"),
            "keep shards on one node, the NIC's: ringo doctor --layout",
        );
    }
    match (nic_node, nodes.first()) {
        (Some(nic), Some(&node)) if nic != node => warn(
            CHECK,
            format!("shards on node {node}, the NIC on node {nic}"),
            "put shards on the NIC's node: ringo doctor --layout",
        ),
        _ => pass(CHECK, "shards on one NUMA node"),
    }
}

fn thp(host: &Host) -> Finding {
    const CHECK: &str = "thp";
    let Some(text) = host.read("sys/kernel/mm/transparent_hugepage/enabled") else {
        return pass(CHECK, "transparent huge pages not configurable here");
    };
    let current = text.split_whitespace().find(|w| w.starts_with('[')).map(|w| w.trim_matches(['[', ']']));
    match current {
        Some("always") => warn(
            CHECK,
            "transparent_hugepage=always: compaction stalls show up as latency spikes",
            "kernel-tuning/apply.sh --thp madvise",
        ),
        Some(mode) => pass(CHECK, format!("transparent_hugepage={mode}")),
        None => pass(CHECK, "transparent huge pages mode unreadable"),
    }
}

fn clocksource(host: &Host) -> Finding {
    const CHECK: &str = "clocksource";
    match host.read("sys/devices/system/clocksource/clocksource0/current_clocksource").as_deref() {
        Some(src @ ("tsc" | "kvm-clock" | "arch_sys_counter")) => {
            pass(CHECK, format!("{src}: fast clock reads"))
        }
        Some(src) => warn(
            CHECK,
            format!("{src}: every timestamp is a slow read (timers, Date header, latency metrics)"),
            "use tsc when the CPU has an invariant TSC: echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource",
        ),
        None => pass(CHECK, "clock source not readable"),
    }
}

/// Renders findings as aligned text.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let tag = match f.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{tag}  {:<18} {}\n", f.check, f.detail));
        if !f.fix.is_empty() {
            out.push_str(&format!("      {:<18} fix: {}\n", "", f.fix));
        }
    }
    out
}
