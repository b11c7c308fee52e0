//! Uploads through pinned staging: the bytes arrive, the host never waits, and a block whose
//! copy is done serves the next upload of its size class.

use ferronet::device::driver::{Driver, Stream};
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
        staging.upload(Stream::Compute, dst, &host).unwrap();
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
    staging.upload(Stream::Compute, dst, &[1; 10]).unwrap();
    staging.upload(Stream::Compute, dst, &[2; 20_000]).unwrap();
    staging.upload(Stream::Compute, dst, &[3; 9_000]).unwrap();
    assert_eq!(staging.cached_bytes(), MIN_BLOCK_BYTES + 32_768);
}

/// Values of refill `round`: no two rounds alike.
fn round_values(round: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| (round * 10_000 + i) as f32).collect()
}

/// Refills one resident buffer through the copy stream several times, each followed by a
/// compute-stream copy of it, and only then reads the copies back: under the emulated driver's
/// adversarial order, a missing event wait in either direction leaves some copy holding
/// another round's values.
#[test]
fn copy_stream_refills_land_in_order() {
    use ferronet::device::Device;
    let gpu = ferronet_test_support::gpu::gpu();
    let len = 3000;
    let mut resident = gpu.zeros(len).unwrap();
    let mut landing = None;
    let mut copies = Vec::new();
    for round in 0..5 {
        gpu.overwrite_through(&mut resident, &mut landing, &round_values(round, len)).unwrap();
        copies.push(gpu.copy_buf(&resident).unwrap());
    }
    for (round, copy) in copies.iter().enumerate() {
        assert!(gpu.download(copy).unwrap() == round_values(round, len), "round {round} read another round's batch");
    }
    assert_eq!(gpu.counters().host_syncs, 5, "only the reads at the end wait");
}

#[test]
fn copy_stream_refills_land_in_order_through_the_emulated_driver() {
    ferronet_test_support::emulated_driver::run_own_tests("cuda", &["--exact", "exec_staging::copy_stream_refills_land_in_order"]);
}

/// What the copy stream's events are for: without the compute stream's wait, its copy of the
/// landing buffer may run before the upload into it. Ignored in plain runs (the simulator device
/// runs work as it is queued, so it cannot show this);
/// `the_emulated_driver_catches_a_missing_copy_stream_wait` runs it there.
#[test]
#[ignore = "needs the emulated driver on the loader path; the_emulated_driver_catches_a_missing_copy_stream_wait runs it"]
fn a_copy_without_its_event_wait_reads_stale_data() {
    use ferronet::gpu::accounting::Accounting;
    let gpu = ferronet_test_support::gpu::gpu();
    let driver = gpu.driver().clone();
    assert!(driver.name().contains("emulated"), "{} is no emulated device", driver.name());
    let staging = PinnedStaging::new(driver.clone(), Arc::new(Accounting::default()));
    let read_after_upload = |wait: bool| {
        let (landing, dst) = (driver.alloc(64).unwrap(), driver.alloc(64).unwrap());
        driver.memset(dst, 0, 64).unwrap();
        driver.synchronize().unwrap();
        staging.upload(Stream::Copy, landing, &[7; 64]).unwrap();
        if wait {
            let landed = driver.record_event(Stream::Copy).unwrap();
            driver.wait_event(Stream::Compute, landed).unwrap();
        }
        driver.copy_dtod(dst, landing, 64).unwrap();
        let mut back = vec![0u8; 64];
        driver.copy_dtoh(&mut back, dst).unwrap();
        back
    };
    assert_ne!(read_after_upload(false), vec![7; 64], "the emulated driver ran the copy before the upload it did not wait for");
    assert_eq!(read_after_upload(true), vec![7; 64]);
}

#[test]
fn the_emulated_driver_catches_a_missing_copy_stream_wait() {
    ferronet_test_support::emulated_driver::run_own_tests("cuda", &["--ignored", "--exact", "exec_staging::a_copy_without_its_event_wait_reads_stale_data"]);
}
