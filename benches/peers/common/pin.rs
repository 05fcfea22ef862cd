//! Worker pinning for the thread-per-core peers: worker `i` runs on the `i`-th CPU of the
//! affinity mask the process started with (so `taskset -c 1 peer ...` keeps worker 0 on CPU 1),
//! wrapping round when there are more workers than CPUs. `PEER_NO_PIN=1` turns pinning off.

pub fn allowed_cpus() -> Vec<usize> {
    if std::env::var_os("PEER_NO_PIN").is_some_and(|v| v != "0") {
        return Vec::new();
    }
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

/// The CPU for worker `worker`, if pinning is on.
pub fn cpu_for(worker: usize, cpus: &[usize]) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[worker % cpus.len()])
}

/// Pins the calling thread to worker `worker`'s CPU.
#[allow(dead_code)]
pub fn pin_current(worker: usize, cpus: &[usize]) {
    if let Some(id) = cpu_for(worker, cpus) {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}
