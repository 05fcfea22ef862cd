//! The host-tuning scripts in `kernel-tuning/` (apply, rollback, IRQ affinity, RPS/XPS),
//! run by their own test script `kernel-tuning/tests/run.sh`.
//!
//! That script builds fake `/proc` and `/sys` trees under `mktemp -d` and points every
//! script at them with `RINGO_SYSROOT`, so this test never reads or changes the real
//! host's settings. It prints `ok - …` / `not ok - …` per check and exits non-zero on
//! any failure; its output is shown here so a failure says which check broke.

use std::process::Command;

#[test]
fn kernel_tuning_scripts_pass_on_a_fake_root() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("bash")
        .arg("kernel-tuning/tests/run.sh")
        .current_dir(root)
        .env_remove("RINGO_SYSROOT")
        .env_remove("RINGO_TUNING_STATE")
        .output()
        .expect("run bash kernel-tuning/tests/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    let status = output.status;
    assert!(status.success(), "kernel-tuning/tests/run.sh exited with {status}; its output is above");
}
