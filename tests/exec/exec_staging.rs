//! Uploads through pinned staging: the bytes arrive, the host never waits, and a block whose
//! copy is done serves the next upload of its size class.

use ferronet::device::driver::Driver;
use ferronet::gpu::accounting::Accounting;
use ferronet::gpu::staging::{PinnedStaging, MIN_BLOCK_BYTES};
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

fn staging() -> (Arc<dyn Driver>, Arc<Accounting>, PinnedStaging) {
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(SimOptions::default()));
    let accounting = Arc::new(Accounting::default());
    (driver.clone(), accounting.clone(), PinnedStaging::new(driver, accounting))
}

#[test]
fn uploads_arrive_and_a_finished_block_is_reused_without_a_sync() {
    let (driver, accounting, staging) = staging();
    let dst = driver.alloc(64).unwrap();
    for round in 0..3u8 {
        let host: Vec<u8> = (0..64).map(|i| i ^ round).collect();
        staging.upload(dst, &host).unwrap();
        let mut back = vec![0u8; 64];
        driver.copy_dtoh(&mut back, dst).unwrap();
        assert_eq!(back, host);
    }
    let c = accounting.counters();
    assert_eq!((c.h2d_copies, c.h2d_bytes, c.host_syncs), (3, 192, 0));
    assert_eq!(staging.cached_bytes(), MIN_BLOCK_BYTES, "one block serves all three");
}

#[test]
fn sizes_get_their_own_power_of_two_blocks() {
    let (driver, _, staging) = staging();
    let dst = driver.alloc(20_000).unwrap();
    staging.upload(dst, &[1; 10]).unwrap();
    staging.upload(dst, &[2; 20_000]).unwrap();
    staging.upload(dst, &[3; 9_000]).unwrap();
    assert_eq!(staging.cached_bytes(), MIN_BLOCK_BYTES + 32_768);
}
