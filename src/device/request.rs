//! `--device auto|cpu|cuda[:N]|sim`: what the user asked for, parsed and printed in one form.
//! Opening the device it names is `select`'s job (it sits above the devices).

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first CUDA device when a driver and a device exist, else the CPU.
    Auto,
    Cpu,
    /// CUDA device N (`cuda` alone is device 0).
    Cuda(usize),
    /// The PTX simulator: the CUDA kernels interpreted on the CPU.
    Sim,
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || Error::config(format!("unknown device `{s}`: use auto, cpu, cuda, cuda:N (N = 0, 1, ...) or sim"));
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            "sim" => Ok(DeviceRequest::Sim),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceRequest::Cuda).map_err(|_| unknown()),
                None => Err(unknown()),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => write!(f, "auto"),
            DeviceRequest::Cpu => write!(f, "cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceRequest::Sim => write!(f, "sim"),
        }
    }
}

/// Stored as the text the flag takes, so checkpoints written when the configuration held the
/// flag's string still load.
impl Serialize for DeviceRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_device_form() {
        assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
        assert_eq!("CPU".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!("cuda".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(3));
        assert_eq!("sim".parse::<DeviceRequest>().unwrap(), DeviceRequest::Sim);
        for bad in ["", "tpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0"] {
            let err = bad.parse::<DeviceRequest>().unwrap_err().to_string();
            assert!(err.contains("unknown device") && err.contains("cuda:N"), "{bad}: {err}");
        }
        for d in [DeviceRequest::Auto, DeviceRequest::Cpu, DeviceRequest::Cuda(2), DeviceRequest::Sim] {
            assert_eq!(d.to_string().parse::<DeviceRequest>().unwrap(), d);
        }
    }

    #[test]
    fn serialises_as_the_flag_text_and_reads_what_older_checkpoints_stored() {
        assert_eq!(serde_json::to_string(&DeviceRequest::Cuda(1)).unwrap(), "\"cuda:1\"");
        // Configurations stored the flag's string as typed.
        for (stored, device) in [("\"auto\"", DeviceRequest::Auto), ("\"CPU\"", DeviceRequest::Cpu), ("\"cuda\"", DeviceRequest::Cuda(0))] {
            assert_eq!(serde_json::from_str::<DeviceRequest>(stored).unwrap(), device);
        }
        let err = serde_json::from_str::<DeviceRequest>("\"tpu\"").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
    }
}
