//! The emulated devices, configured from the environment when `cuInit` runs. A variable holding
//! a comma-separated list configures devices in order, its last entry standing for the rest.

use ferronet::sim::roofline::{GpuModel, H100_SXM, RTX_3090, RTX_4090, T4};

pub const DEVICES_ENV: &str = "FERRONET_EMU_DEVICES";
pub const NAME_ENV: &str = "FERRONET_EMU_NAME";
pub const CC_ENV: &str = "FERRONET_EMU_CC";
pub const MEMORY_ENV: &str = "FERRONET_EMU_MEMORY_MB";
pub const SMS_ENV: &str = "FERRONET_EMU_SMS";

/// Most emulated devices one process may ask for.
const MAX_DEVICES: usize = 16;

/// The architectures whose limits the emulation knows: (major, minor, default SM count, the
/// roofline of a typical GPU of that architecture for predicted timings).
const ARCHITECTURES: [(i32, i32, i32, GpuModel); 4] =
    [(7, 5, 40, T4), (8, 6, 82, RTX_3090), (8, 9, 128, RTX_4090), (9, 0, 132, H100_SXM)];

#[derive(Clone, Debug)]
pub struct DeviceConfig {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub memory_bytes: usize,
    pub sm_count: i32,
    /// Rates that turn the simulator's counters into predicted times (events).
    pub roofline: GpuModel,
}

impl DeviceConfig {
    /// Shared memory a block may opt into beyond the default 48 KiB, per architecture.
    pub fn max_shared_optin(&self) -> i32 {
        match self.compute_capability {
            (7, 5) => 64 << 10,
            (8, 6) | (8, 9) => 99 << 10,
            _ => 227 << 10,
        }
    }

    pub fn max_threads_per_sm(&self) -> i32 {
        match self.compute_capability {
            (7, 5) => 1024,
            (8, 6) | (8, 9) => 1536,
            _ => 2048,
        }
    }
}

/// The `index`th entry of a comma-separated list, the last entry repeating; None when unset.
fn entry(var: &str, index: usize) -> Option<String> {
    let value = std::env::var(var).ok()?;
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    Some(items.get(index).or(items.last()).map(|s| s.to_string()).unwrap_or_default())
}

fn bad(var: &str, value: &str, what: &str) -> String {
    format!("{var}={value}: {what}")
}

/// The devices the environment asks for (one sm_86 device with 16 GiB by default); Err names
/// the variable to fix.
pub fn devices_from_env() -> Result<Vec<DeviceConfig>, String> {
    let count = match std::env::var(DEVICES_ENV) {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= MAX_DEVICES)
            .ok_or_else(|| bad(DEVICES_ENV, &v, &format!("give the number of emulated devices, 0 to {MAX_DEVICES}")))?,
        Err(_) => 1,
    };
    (0..count).map(device_from_env).collect()
}

fn device_from_env(index: usize) -> Result<DeviceConfig, String> {
    let cc = entry(CC_ENV, index).unwrap_or_else(|| "8.6".into());
    let &(major, minor, default_sms, roofline) = ARCHITECTURES
        .iter()
        .find(|(major, minor, _, _)| cc == format!("{major}.{minor}"))
        .ok_or_else(|| bad(CC_ENV, &cc, "give a compute capability of 7.5, 8.6, 8.9 or 9.0"))?;
    let memory_mb = match entry(MEMORY_ENV, index) {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&m| m > 0 && m <= 1 << 30)
            .ok_or_else(|| bad(MEMORY_ENV, &v, "give the device memory as a whole number of MiB"))?,
        None => 16 << 10,
    };
    let sm_count = match entry(SMS_ENV, index) {
        Some(v) => v.parse::<i32>().ok().filter(|&n| (1..=1024).contains(&n)).ok_or_else(|| bad(SMS_ENV, &v, "give the SM count, 1 to 1024"))?,
        None => default_sms,
    };
    let arch = format!("sm_{major}{minor}");
    // The name always says the device is emulated, so no log or report mistakes it for hardware.
    let name = match entry(NAME_ENV, index) {
        Some(n) if !n.is_empty() => format!("{n} (emulated {arch}, ferronet PTX simulator)"),
        _ => format!("ferronet emulated GPU ({arch}, PTX simulator)"),
    };
    Ok(DeviceConfig { name, compute_capability: (major, minor), memory_bytes: memory_mb << 20, sm_count, roofline })
}
