//! Every kernel of every embedded module (`kernels/*.cu`, each architecture's build of a source
//! compiled for several) parses and decodes: the simulator supports every instruction NVRTC
//! emitted for them.

use ferronet::sim::{SimDriver, SimOptions};

#[test]
fn every_embedded_kernel_decodes() {
    let mut total = 0;
    for module in ferronet::device::modules::MODULES {
        // A device of the module's own architecture loads exactly this build.
        let driver = SimDriver::new(SimOptions { compute_capability: module.compute_capability, ..SimOptions::default() });
        let kernels = driver.validate_module(module.name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!kernels.is_empty(), "module {} has no kernels", module.name);
        total += kernels.len();
    }
    println!("{total} kernels in {} modules decode", ferronet::device::modules::MODULES.len());
}
