//! The device runtime's hooks that NVRTC calls: `__assertfail` (a failed `assert`) becomes a
//! launch error with the assertion's text, and `vprintf` (device `printf`) output is collected
//! per worker and handed to the driver after the launch.

use super::memory_ops::{sh_load, sh_store};
use super::Worker;
use crate::error::Error;
use crate::sim::printf;
use crate::sim::program::{LOCAL_WINDOW, WINDOW_SIZE};
use crate::sim::sanitizer::fault;

/// Longest string read for a message, file name or format.
const MAX_STRING: usize = 4096;

impl Worker<'_> {
    /// Offset of thread (wi, l)'s local memory in the block's local buffer.
    fn local_base(&self, wi: usize, l: usize) -> usize {
        (self.warps[wi].base_tid as usize + l) * self.lp.kernel.local_bytes
    }

    /// A call argument (`param0`...) stored in the thread's local memory.
    fn call_arg(&self, wi: usize, l: usize, off: u32, size: u8) -> u64 {
        sh_load(&self.local, self.local_base(wi, l) + off as usize, size)
    }

    /// The byte at a generic address: the thread's local memory or global memory.
    fn generic_byte(&self, wi: usize, l: usize, addr: u64) -> Option<u8> {
        if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
            let off = (addr - LOCAL_WINDOW) as usize;
            return (off < self.lp.kernel.local_bytes).then(|| self.local[self.local_base(wi, l) + off]);
        }
        let r = self.lp.mem.find(addr)?;
        Some(r.load(addr - r.base, 1) as u8)
    }

    fn c_string(&self, wi: usize, l: usize, addr: u64) -> String {
        let bytes: Vec<u8> = (0..MAX_STRING as u64).map_while(|k| self.generic_byte(wi, l, addr + k).filter(|&b| b != 0)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The error for `call __assertfail` by the first lane of `mask`.
    pub(super) fn assert_fail(&self, wi: usize, pc: usize, mask: u32, args: [u32; 4]) -> Error {
        let l = mask.trailing_zeros() as usize;
        let message = self.c_string(wi, l, self.call_arg(wi, l, args[0], 8));
        let file = self.c_string(wi, l, self.call_arg(wi, l, args[1], 8));
        let line = self.call_arg(wi, l, args[2], 4);
        let function = self.c_string(wi, l, self.call_arg(wi, l, args[3], 8));
        fault("assertion failed", &self.site(pc, wi, l), format!("`{message}` ({file}:{line}, in {function})"))
    }

    /// `call vprintf` for every lane of `mask`, in lane order.
    pub(super) fn printf(&mut self, wi: usize, mask: u32, format: u32, args: u32, ret: Option<u32>) {
        let mut out = String::new();
        let mut bits = mask;
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let fmt = self.c_string(wi, l, self.call_arg(wi, l, format, 8));
            let mut lane_args = LaneArgs { worker: self, wi, l, ptr: self.call_arg(wi, l, args, 8), cursor: 0, count: 0 };
            out.push_str(&printf::format(&fmt, &mut lane_args));
            let count = lane_args.count;
            if let Some(r) = ret {
                let at = self.local_base(wi, l) + r as usize;
                sh_store(&mut self.local, at, 4, count);
            }
        }
        self.printf_output.push_str(&out);
    }
}

/// The packed argument buffer of one lane's printf.
struct LaneArgs<'w, 'a> {
    worker: &'w Worker<'a>,
    wi: usize,
    l: usize,
    ptr: u64,
    cursor: u64,
    count: u64,
}

impl printf::Args for LaneArgs<'_, '_> {
    fn next(&mut self, size: usize) -> Option<u64> {
        if self.ptr == 0 {
            return None;
        }
        let at = self.cursor.div_ceil(size as u64) * size as u64;
        let mut v = 0u64;
        for k in 0..size as u64 {
            v |= (self.worker.generic_byte(self.wi, self.l, self.ptr + at + k)? as u64) << (8 * k);
        }
        self.cursor = at + size as u64;
        self.count += 1;
        Some(v)
    }
    fn string(&mut self, ptr: u64) -> String {
        self.worker.c_string(self.wi, self.l, ptr)
    }
}
