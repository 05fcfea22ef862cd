//! `ringo doctor` against fake /proc and /sys roots: one case per outcome of each check,
//! the JSON form, exit codes, and the CPU layout proposal.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringo");

/// A fake root: a healthy 4-CPU, one-node host with a NIC whose IRQs sit on CPU 0.
struct FakeRoot {
    dir: PathBuf,
}

impl FakeRoot {
    fn healthy(name: &str) -> FakeRoot {
        let dir = std::env::temp_dir().join(format!("ringo-doctor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = FakeRoot { dir };
        root.write("proc/sys/kernel/io_uring_disabled", "0");
        root.write("proc/sys/kernel/osrelease", "6.8.0-generic");
        root.write("proc/sys/net/core/somaxconn", "65535");
        root.limits(1_048_576);
        root.cpus(4, 4, 1);
        root.write("sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never");
        root.write("sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc");
        root.nic("eth0", &[40, 41], "0", Some(0));
        root
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, format!("{content}\n")).expect("write");
    }

    fn limits(&self, nofile: u64) {
        self.write(
            "proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            {nofile}              {nofile}              files\n\
                 Max locked memory         8388608              8388608              bytes"
            ),
        );
    }

    /// `n` CPUs, `cores` physical cores (siblings are cpu i and i + cores), `nodes` nodes.
    fn cpus(&self, n: usize, cores: usize, nodes: usize) {
        let _ = std::fs::remove_dir_all(self.dir.join("sys/devices/system/cpu"));
        let _ = std::fs::remove_dir_all(self.dir.join("sys/devices/system/node"));
        self.write("sys/devices/system/cpu/online", &format!("0-{}", n - 1));
        self.write("sys/devices/system/cpu/smt/active", if n > cores { "1" } else { "0" });
        for cpu in 0..n {
            let core = cpu % cores;
            let siblings: Vec<String> = (0..n).filter(|c| c % cores == core).map(|c| c.to_string()).collect();
            let base = format!("sys/devices/system/cpu/cpu{cpu}");
            self.write(&format!("{base}/topology/core_id"), &core.to_string());
            self.write(&format!("{base}/topology/physical_package_id"), "0");
            self.write(&format!("{base}/topology/thread_siblings_list"), &siblings.join(","));
            self.write(&format!("{base}/cpufreq/scaling_governor"), "performance");
        }
        for node in 0..nodes {
            let list: Vec<String> =
                (0..n).filter(|c| (c % cores) * nodes / cores == node).map(|c| c.to_string()).collect();
            self.write(&format!("sys/devices/system/node/node{node}/cpulist"), &list.join(","));
        }
    }

    fn nic(&self, name: &str, irqs: &[usize], on: &str, node: Option<usize>) {
        for irq in irqs {
            self.write(&format!("sys/class/net/{name}/device/msi_irqs/{irq}"), "msix");
            self.write(&format!("proc/irq/{irq}/smp_affinity_list"), on);
        }
        self.write(
            &format!("sys/class/net/{name}/device/numa_node"),
            &node.map_or("-1".into(), |n| n.to_string()),
        );
    }

    fn doctor(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .arg("doctor")
            .arg("--root")
            .arg(&self.dir)
            .args(args)
            .env_remove("RINGO_SYSROOT")
            .output()
            .expect("run ringo doctor");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The status of one check from `--json`.
    fn status(&self, args: &[&str], check: &str) -> (String, String) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (_, out) = self.doctor(&all);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let f =
            v.as_array().expect("array").iter().find(|f| f["check"] == check).expect("check present").clone();
        (f["status"].as_str().unwrap_or("").to_owned(), f["fix"].as_str().unwrap_or("").to_owned())
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dir_exists(p: &Path) -> bool {
    p.is_dir()
}

#[test]
fn a_healthy_host_passes_every_check() {
    let root = FakeRoot::healthy("healthy");
    assert!(dir_exists(&root.dir));
    let (code, out) = root.doctor(&["--cores", "1-3", "--shards", "3"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("PASS")).count(), 11, "{out}");
    let (_, json) = root.doctor(&["--json", "--cores", "1-3"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(11));
}

#[test]
fn each_problem_is_found_with_its_fix() {
    // (what to break, check, expected status, a word the fix must contain)
    type Break = fn(&FakeRoot);
    let cases: Vec<(Break, &str, &str, &str)> = vec![
        (|r| r.write("proc/sys/kernel/io_uring_disabled", "2"), "io_uring", "FAIL", "io_uring_disabled=0"),
        (|r| r.write("proc/sys/kernel/io_uring_disabled", "1"), "io_uring", "WARN", "io_uring_group"),
        (|r| r.write("proc/sys/kernel/osrelease", "5.10.0"), "io_uring", "WARN", "upgrade"),
        (|r| r.write("proc/sys/kernel/osrelease", "5.10.0"), "memlock", "WARN", "LimitMEMLOCK"),
        (|r| r.limits(1024), "nofile", "FAIL", "LimitNOFILE"),
        (|r| r.limits(8192), "nofile", "WARN", "ulimit -n"),
        (|r| r.write("proc/sys/net/core/somaxconn", "128"), "somaxconn", "WARN", "net.core.somaxconn"),
        (
            |r| r.write("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "powersave"),
            "cpu-governor",
            "WARN",
            "apply.sh --governor performance",
        ),
        (|r| r.nic("eth0", &[40, 41], "0-3", Some(0)), "nic-irqs", "WARN", "irq-affinity.sh --iface eth0"),
        (
            |r| {
                r.write("proc/4242/cmdline", "postgres");
                r.write("proc/4242/status", "Name:\tpostgres\nCpus_allowed_list:\t2\n");
            },
            "pinned-neighbours",
            "WARN",
            "taskset",
        ),
        (
            |r| r.write("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never"),
            "thp",
            "WARN",
            "--thp madvise",
        ),
        (
            |r| r.write("sys/devices/system/clocksource/clocksource0/current_clocksource", "hpet"),
            "clocksource",
            "WARN",
            "tsc",
        ),
    ];
    for (i, (breakage, check, want, fix_word)) in cases.into_iter().enumerate() {
        let root = FakeRoot::healthy(&format!("case{i}"));
        breakage(&root);
        let (status, fix) = root.status(&["--cores", "1-3"], check);
        assert_eq!(status, want, "case {i}: {check}");
        assert!(fix.contains(fix_word), "case {i}: fix `{fix}` should mention `{fix_word}`");
        let (code, _) = root.doctor(&["--cores", "1-3"]);
        assert_eq!(code, if want == "FAIL" { 1 } else { 0 }, "case {i}: exit code");
    }
}

#[test]
fn smt_siblings_and_numa_spread_are_flagged() {
    let root = FakeRoot::healthy("smt");
    root.cpus(8, 4, 1); // siblings: 0+4, 1+5, 2+6, 3+7
    assert_eq!(root.status(&["--cores", "1,5"], "smt").0, "WARN");
    assert_eq!(root.status(&["--cores", "1-3"], "smt").0, "PASS");
    let numa = FakeRoot::healthy("numa");
    numa.cpus(4, 4, 2); // node 0: 0,1  node 1: 2,3
    assert_eq!(numa.status(&["--cores", "1-2"], "numa").0, "WARN");
    assert_eq!(numa.status(&["--cores", "0-1"], "numa").0, "PASS");
    numa.nic("eth0", &[40, 41], "3", Some(1));
    assert_eq!(numa.status(&["--cores", "0-1"], "numa").0, "WARN", "NIC on the other node");
}

#[test]
fn layout_puts_one_shard_per_physical_core_on_the_nic_node() {
    let root = FakeRoot::healthy("layout");
    root.cpus(8, 4, 1);
    let (code, out) = root.doctor(&["--layout"]);
    assert_eq!(code, 0);
    assert!(out.contains("--cores 1-3"), "{out}");
    assert!(out.contains("control/IRQs:  CPU 0"), "{out}");
    assert!(out.contains("idle siblings: CPU 5-7"), "{out}");
    assert!(out.contains("CPUAffinity=0-3"), "{out}");
    assert!(out.contains("irq-affinity.sh --iface eth0 --cpus 0"), "{out}");

    // Two nodes, NIC on node 1: shards go to node 1's cores.
    let two = FakeRoot::healthy("layout-numa");
    two.cpus(8, 8, 2); // node 0: 0-3, node 1: 4-7, no SMT
    two.nic("eth0", &[40], "4", Some(1));
    let (_, json) = two.doctor(&["--layout", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["layout"]["node"], 1);
    assert_eq!(v["layout"]["housekeeping"], serde_json::json!([4]));
    assert_eq!(v["layout"]["shard_cpus"], serde_json::json!([5, 6, 7]));
}
