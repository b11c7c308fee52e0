//! Every kernel of every embedded module (`kernels/*.cu`) parses and decodes: the simulator
//! supports every instruction NVRTC emitted for them.

use ferronet::sim::{SimDriver, SimOptions};

#[test]
fn every_embedded_kernel_decodes() {
    let driver = SimDriver::new(SimOptions::default());
    let mut total = 0;
    for module in ferronet::device::modules::MODULES {
        let kernels = driver.validate_module(module.name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!kernels.is_empty(), "module {} has no kernels", module.name);
        total += kernels.len();
    }
    println!("{total} kernels in {} modules decode", ferronet::device::modules::MODULES.len());
}
