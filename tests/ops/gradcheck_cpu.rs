//! Every op's backward on the f64 CPU reference agrees with central finite differences.

use ferronet::cpu::CpuBackend;
use ferronet::gradcheck::{all_cases, finite_difference, op_names, FD_MAX_REL};

#[test]
fn every_op_passes_finite_differences_in_f64() {
    let cpu = CpuBackend::new();
    let cases = all_cases();
    for op in op_names() {
        assert!(cases.iter().filter(|c| c.op == op).count() >= 2, "{op} needs several configurations");
    }
    let failures: Vec<String> = cases
        .iter()
        .map(|case| finite_difference(&cpu, case).unwrap_or_else(|e| panic!("{} ({}): {e}", case.op, case.config)))
        .filter(|r| !r.passed)
        .map(|r| format!("{} ({}): max rel {:.3e} max abs {:.3e}", r.op, r.config, r.max_rel_err, r.max_abs_err))
        .collect();
    assert!(failures.is_empty(), "above {FD_MAX_REL:e}:\n{}", failures.join("\n"));
}
