//! Uploads on the copy stream: a buffer a captured graph reads (the resident batch) is refilled
//! for the next step while the step before it still runs. The host's bytes go through pinned
//! staging into a landing buffer on the copy stream; the compute stream waits for that copy, then
//! copies the landing buffer into place, at the device's bandwidth instead of the bus's.
//!
//! Two events order the streams: `landed`, recorded on the copy stream after each upload, which
//! the compute stream waits for before it copies out of a landing buffer; and `drained`,
//! recorded on the compute stream after that copy (and when a landing buffer is made), which the
//! copy stream waits for before it writes a landing buffer. Each stream runs in order, so the
//! latest record of either covers every earlier one, and one pair serves every landing buffer.

use super::accounting::{Accounting, DriverCall};
use super::staging::PinnedStaging;
use crate::device::driver::{DevPtr, Driver, EventId, Stream};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct StreamEvents {
    landed: Option<EventId>,
    drained: Option<EventId>,
}

pub struct CopyStreamUploads {
    driver: Arc<dyn Driver>,
    staging: Arc<PinnedStaging>,
    accounting: Arc<Accounting>,
    events: Mutex<StreamEvents>,
}

impl CopyStreamUploads {
    pub fn new(driver: Arc<dyn Driver>, staging: Arc<PinnedStaging>, accounting: Arc<Accounting>) -> Self {
        CopyStreamUploads { driver, staging, accounting, events: Mutex::new(StreamEvents::default()) }
    }

    /// Call when a landing buffer has just been allocated: its block may have served work still
    /// queued on the compute stream, which the copy stream's first write into it must follow.
    pub fn new_landing(&self) -> Result<()> {
        let mut events = self.events()?;
        self.mark(&mut events.drained, Stream::Compute).map(drop)
    }

    /// Queues `host` into `landing` on the copy stream, then, on the compute stream after the
    /// work already queued there, a copy of it from `landing` to `dst`. Returns without waiting.
    /// `landing` holds at least `host.len()` bytes, was announced by `new_landing`, and serves
    /// no other purpose.
    pub fn overwrite(&self, dst: DevPtr, landing: DevPtr, host: &[u8]) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        let mut events = self.events()?;
        if let Some(drained) = events.drained {
            self.driver.wait_event(Stream::Copy, drained)?;
        }
        self.staging.upload(Stream::Copy, landing, host)?;
        let landed = self.mark(&mut events.landed, Stream::Copy)?;
        self.driver.wait_event(Stream::Compute, landed)?;
        self.accounting.record(DriverCall::CopyD2D { bytes: host.len() });
        self.driver.copy_dtod(dst, landing, host.len())?;
        self.mark(&mut events.drained, Stream::Compute).map(drop)
    }

    fn events(&self) -> Result<std::sync::MutexGuard<'_, StreamEvents>> {
        self.events.lock().map_err(|_| Error::device("copy stream events poisoned"))
    }

    /// Records the event in `slot` (made on first use) at the current end of `stream`.
    fn mark(&self, slot: &mut Option<EventId>, stream: Stream) -> Result<EventId> {
        match *slot {
            Some(event) => self.driver.rerecord_event(stream, event).map(|()| event),
            None => Ok(*slot.insert(self.driver.record_event(stream)?)),
        }
    }
}
