//! CPU layout: read the topology and propose where shards, the control thread and NIC
//! interrupts should run.
//!
//! The rule: one shard per physical core on the NIC's NUMA node (isolated CPUs first);
//! SMT siblings of shard cores stay idle (or take the load generator / IRQs); the first
//! physical core is the housekeeping core for the control thread and the NIC's IRQs.

use serde::Serialize;

use super::host::{Host, format_cpu_list};

/// One logical CPU.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// Logical CPU number.
    pub id: usize,
    /// Socket.
    pub package: usize,
    /// Physical core id within its socket.
    pub core: usize,
    /// NUMA node.
    pub node: usize,
}

/// What the host looks like.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Online CPUs.
    pub cpus: Vec<Cpu>,
    /// CPUs isolated from the scheduler (`isolcpus=`).
    pub isolated: Vec<usize>,
    /// Network interfaces with IRQs: (name, NUMA node if known, CPUs serving its IRQs).
    pub nics: Vec<Nic>,
}

/// A network interface and its interrupts.
#[derive(Debug, Clone, Serialize)]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// NUMA node of the device, when the kernel knows it.
    pub node: Option<usize>,
    /// IRQ numbers of its queues.
    pub irqs: Vec<usize>,
    /// CPUs its IRQs may run on.
    pub irq_cpus: Vec<usize>,
}

/// The proposal.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// CPUs for the shards (`--cores`).
    pub shard_cpus: Vec<usize>,
    /// The housekeeping CPU: control thread and NIC IRQs.
    pub housekeeping: Vec<usize>,
    /// SMT siblings of shard CPUs, left idle (or for a load generator).
    pub idle_siblings: Vec<usize>,
    /// The NUMA node chosen.
    pub node: usize,
    /// Notes explaining the choice.
    pub notes: Vec<String>,
}

/// Reads the topology under the host's root.
pub fn read_topology(host: &Host) -> Topology {
    let nodes: Vec<(usize, Vec<usize>)> = host
        .list("sys/devices/system/node")
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse::<usize>().ok())
        .map(|n| (n, host.cpu_list(&format!("sys/devices/system/node/node{n}/cpulist")).unwrap_or_default()))
        .collect();
    let cpus = host
        .online_cpus()
        .into_iter()
        .map(|id| {
            let topo = |f: &str| {
                host.read(&format!("sys/devices/system/cpu/cpu{id}/topology/{f}"))
                    .and_then(|s| s.parse().ok())
            };
            Cpu {
                id,
                package: topo("physical_package_id").unwrap_or(0),
                core: topo("core_id").unwrap_or(id),
                node: nodes.iter().find(|(_, list)| list.contains(&id)).map_or(0, |(n, _)| *n),
            }
        })
        .collect();
    let nics = host
        .list("sys/class/net")
        .into_iter()
        .filter(|n| n != "lo")
        .filter_map(|name| {
            let irqs: Vec<usize> = host
                .list(&format!("sys/class/net/{name}/device/msi_irqs"))
                .iter()
                .filter_map(|i| i.parse().ok())
                .collect();
            if irqs.is_empty() {
                return None;
            }
            let node = host
                .read(&format!("sys/class/net/{name}/device/numa_node"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|n| usize::try_from(n).ok());
            let mut irq_cpus: Vec<usize> = irqs
                .iter()
                .flat_map(|irq| {
                    host.cpu_list(&format!("proc/irq/{irq}/smp_affinity_list")).unwrap_or_default()
                })
                .collect();
            irq_cpus.sort_unstable();
            irq_cpus.dedup();
            Some(Nic { name, node, irqs, irq_cpus })
        })
        .collect();
    let isolated = host.cpu_list("sys/devices/system/cpu/isolated").unwrap_or_default();
    Topology { cpus, isolated, nics }
}

/// Proposes a layout for `topo`.
pub fn propose(topo: &Topology) -> Layout {
    let mut notes = Vec::new();
    let node =
        topo.nics.iter().find_map(|n| n.node).unwrap_or_else(|| topo.cpus.first().map_or(0, |c| c.node));
    if topo.nics.iter().any(|n| n.node.is_some()) {
        notes.push(format!("NUMA node {node}: the NIC's node"));
    }
    // Physical cores on the node, in CPU order; the first CPU of each is its primary.
    let mut cores: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for cpu in topo.cpus.iter().filter(|c| c.node == node) {
        match cores.iter_mut().find(|(p, c, _)| *p == cpu.package && *c == cpu.core) {
            Some((_, _, cpus)) => cpus.push(cpu.id),
            None => cores.push((cpu.package, cpu.core, vec![cpu.id])),
        }
    }
    if cores.is_empty() {
        return Layout { shard_cpus: vec![0], housekeeping: vec![0], idle_siblings: Vec::new(), node, notes };
    }
    let smt = cores.iter().any(|(_, _, cpus)| cpus.len() > 1);
    if smt {
        notes.push("SMT on: one shard per physical core, siblings left idle".into());
    }
    let (housekeeping_core, shard_cores) = if cores.len() == 1 {
        notes.push("one physical core: shards and housekeeping share it".into());
        (cores[0].clone(), cores.clone())
    } else {
        // Prefer isolated cores for shards; the housekeeping core is the first
        // non-isolated one (CPU 0 usually, which also takes most IRQs).
        let isolated = |c: &(usize, usize, Vec<usize>)| c.2.iter().all(|id| topo.isolated.contains(id));
        let hk = cores.iter().find(|c| !isolated(c)).unwrap_or(&cores[0]).clone();
        let shards: Vec<_> = cores.iter().filter(|c| c.2 != hk.2).cloned().collect();
        (hk, shards)
    };
    if !topo.isolated.is_empty() {
        notes.push(format!("isolated CPUs {} preferred for shards", format_cpu_list(&topo.isolated)));
    }
    let shard_cpus: Vec<usize> = shard_cores.iter().map(|c| c.2[0]).collect();
    let idle_siblings: Vec<usize> = shard_cores.iter().flat_map(|c| c.2[1..].to_vec()).collect();
    Layout { shard_cpus, housekeeping: vec![housekeeping_core.2[0]], idle_siblings, node, notes }
}

/// The proposal as text: `--cores`, the systemd line and the IRQ plan.
pub fn render(topo: &Topology, layout: &Layout) -> String {
    let mut out = String::new();
    let online: Vec<usize> = topo.cpus.iter().map(|c| c.id).collect();
    out.push_str(&format!(
        "topology: {} online CPUs ({}), {} NUMA node(s), isolated: {}\n",
        online.len(),
        format_cpu_list(&online),
        {
            let mut n: Vec<usize> = topo.cpus.iter().map(|c| c.node).collect();
            n.sort_unstable();
            n.dedup();
            n.len()
        },
        if topo.isolated.is_empty() { "none".to_owned() } else { format_cpu_list(&topo.isolated) }
    ));
    for note in &layout.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&format!(
        "shards:        --cores {}   ({} shards)\n",
        format_cpu_list(&layout.shard_cpus),
        layout.shard_cpus.len()
    ));
    out.push_str(&format!("control/IRQs:  CPU {}\n", format_cpu_list(&layout.housekeeping)));
    if !layout.idle_siblings.is_empty() {
        out.push_str(&format!(
            "idle siblings: CPU {} (or the load generator)\n",
            format_cpu_list(&layout.idle_siblings)
        ));
    }
    let mut affinity = layout.shard_cpus.clone();
    affinity.extend(&layout.housekeeping);
    out.push_str(&format!("systemd:       CPUAffinity={}\n", format_cpu_list(&affinity).replace(',', " ")));
    out.push_str(&format!(
        "serve:         ringo serve --cores {} --shards {}\n",
        format_cpu_list(&layout.shard_cpus),
        layout.shard_cpus.len()
    ));
    if topo.nics.is_empty() {
        out.push_str("irqs:          no NIC with MSI interrupts found (a VM, or loopback only)\n");
    }
    for nic in &topo.nics {
        out.push_str(&format!(
            "irqs:          {} ({} IRQs, now on CPU {}): kernel-tuning/irq-affinity.sh --iface {} --cpus {}\n",
            nic.name,
            nic.irqs.len(),
            format_cpu_list(&nic.irq_cpus),
            nic.name,
            format_cpu_list(&layout.housekeeping)
        ));
    }
    out
}
