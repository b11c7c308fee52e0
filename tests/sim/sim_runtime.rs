//! Device-side assert and printf on the simulator: a failed assert is an error quoting the
//! assertion, and printf output is formatted like C's and kept in block order.

use ferronet_test_support::sim::sim_with;

use ferronet::device::Device;
use ferronet::device::driver::{KernelArg, LaunchConfig};
use ferronet::sim::{BlockOrder, SimOptions};

const RUNTIME: &str = include_str!("sim_kernels/runtime.cu");

fn quiet() -> SimOptions {
    SimOptions { echo_printf: false, block_order: BlockOrder::Linear, ..SimOptions::default() }
}

#[test]
fn failed_assert_is_an_error_quoting_the_assertion() {
    let (_, gpu) = sim_with(quiet(), "runtime", RUNTIME);
    let n = 40;
    let mut idx: Vec<u32> = (0..n as u32).rev().collect();
    let out = gpu.alloc::<f32>(n).unwrap();
    let good = gpu.upload_idx(&idx).unwrap();
    gpu.launch("runtime", "checked_index", LaunchConfig::linear(n, 32), &[good.arg(), out.arg(), KernelArg::I32(n as i32)]).unwrap();
    idx[33] = n as u32;
    let bad = gpu.upload_idx(&idx).unwrap();
    let err = gpu.launch("runtime", "checked_index", LaunchConfig::linear(n, 32), &[bad.arg(), out.arg(), KernelArg::I32(n as i32)]).unwrap_err();
    let msg = err.to_string();
    for part in ["assertion failed", "checked_index", "block (1,0,0) thread (1,0,0)", "`idx[i] >= 0 && idx[i] < n`", "runtime.cu:"] {
        assert!(msg.contains(part), "expected {part:?} in: {msg}");
    }
}

#[test]
fn printf_output_is_formatted_and_kept_in_block_order() {
    let (driver, gpu) = sim_with(quiet(), "runtime", RUNTIME);
    let x = gpu.upload(&[0.5f32, 1.25, -3.0]).unwrap();
    gpu.launch("runtime", "hello", LaunchConfig { grid: (2, 1, 1), block: (32, 1, 1), shared_mem_bytes: 0 }, &[x.arg()]).unwrap();
    let want: String = (0..2)
        .flat_map(|b| {
            [(0, "0.50", "1e-05"), (1, "1.25", "2e-05"), (2, "-3.00", "3e-05")]
                .map(|(t, v, g)| format!("block {b} thread {t}: x={v} ok|{:>5}|{g}\n", -t))
        })
        .collect();
    assert_eq!(driver.take_printf_output(), want);
    assert_eq!(driver.take_printf_output(), "", "taking the output empties it");
}
