//! Simulated global memory: allocations in a flat address space (non-zero, 256-aligned, never
//! reused so stale pointers miss), each with a shadow bitmap of initialised bytes.
//!
//! During a launch, blocks on different host threads access memory through a [`GlobalView`] of
//! raw pointers; every access is a relaxed atomic of the access size (a plain `mov` on x86), so
//! concurrent blocks never form a Rust data race, and `atom` instructions are CAS loops.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// First address handed out: far from 0 so null and small integers are never valid pointers.
const BASE_ADDRESS: u64 = 0x7_0000_0000;
pub const ALIGNMENT: u64 = 256;

struct Allocation {
    id: u64,
    /// Bytes of the buffer in it now: what accesses are checked against.
    len: usize,
    /// Bytes the allocation holds (`len` or more after a `reissue`).
    reserved: usize,
    /// Backing store in u64 words so 8-byte atomics are aligned.
    data: Box<[u64]>,
    /// One bit per byte: written since allocation.
    init: Box<[u8]>,
}

impl Allocation {
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the u64 buffer holds at least `len` bytes and u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast::<u8>(), self.len) }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.len) }
    }
    fn mark_init(&mut self, off: usize, n: usize) {
        let end = off + n;
        let mut b = off;
        // Bit by bit up to a byte boundary of the bitmap, then whole bytes, then the tail.
        while b < end && !b.is_multiple_of(8) {
            self.init[b >> 3] |= 1 << (b & 7);
            b += 1;
        }
        while b + 8 <= end {
            self.init[b >> 3] = 0xff;
            b += 8;
        }
        while b < end {
            self.init[b >> 3] |= 1 << (b & 7);
            b += 1;
        }
    }
}

pub struct GlobalMemory {
    allocs: BTreeMap<u64, Allocation>,
    next_base: u64,
    next_id: u64,
    used: usize,
    capacity: usize,
}

fn describe_alloc(id: u64, base: u64, len: usize) -> String {
    format!("allocation #{id} ({len} bytes at {base:#x})")
}

impl GlobalMemory {
    pub fn new(capacity: usize) -> Self {
        GlobalMemory { allocs: BTreeMap::new(), next_base: BASE_ADDRESS, next_id: 1, used: 0, capacity }
    }

    pub fn used(&self) -> usize {
        self.used
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn alloc(&mut self, bytes: usize) -> Result<u64> {
        if self.used + bytes > self.capacity {
            return Err(Error::OutOfMemory {
                requested: bytes,
                free: self.capacity - self.used,
                hint: "the simulated device memory is set by FERRONET_SIM_MEMORY_MB; use smaller batches or shapes".into(),
            });
        }
        let base = self.next_base;
        let span = (bytes.max(1) as u64).div_ceil(ALIGNMENT) * ALIGNMENT;
        // A gap after each allocation so running off its end never lands in the next one.
        self.next_base += span + ALIGNMENT;
        let id = self.next_id;
        self.next_id += 1;
        let alloc = Allocation {
            id,
            len: bytes,
            reserved: bytes,
            data: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(),
            init: vec![0u8; bytes.div_ceil(8)].into_boxed_slice(),
        };
        self.allocs.insert(base, alloc);
        self.used += bytes;
        Ok(base)
    }

    pub fn free(&mut self, ptr: u64) {
        if let Some(a) = self.allocs.remove(&ptr) {
            self.used -= a.reserved;
        }
    }

    /// The allocation at `ptr` becomes a new one of `bytes` bytes (at most what it holds): a
    /// new number, nothing initialised, accesses checked against `bytes`. A caching allocator
    /// reusing a block calls this, so reuse hides no out-of-bounds or uninitialised access.
    pub fn reissue(&mut self, ptr: u64, bytes: usize) -> Result<()> {
        let id = self.next_id;
        let a = self.allocs.get_mut(&ptr).ok_or_else(|| Error::Sim(format!("reissue of {ptr:#x}, which is no allocation")))?;
        if bytes > a.reserved {
            return Err(Error::Sim(format!("reissue of {bytes} bytes in {}", describe_alloc(a.id, ptr, a.reserved))));
        }
        self.next_id += 1;
        a.id = id;
        a.len = bytes;
        a.init.fill(0);
        Ok(())
    }

    /// The allocation holding [addr, addr+n) and the offset of addr in it.
    fn locate(&mut self, addr: u64, n: usize, what: &str) -> Result<(&mut Allocation, usize)> {
        let found = self.allocs.range_mut(..=addr).next_back();
        match found {
            Some((&base, a)) if addr - base + n as u64 <= a.len as u64 => Ok((a, (addr - base) as usize)),
            Some((&base, a)) => Err(Error::Sim(format!(
                "{what} of {n} bytes at {addr:#x} runs past the end of {}",
                describe_alloc(a.id, base, a.len)
            ))),
            None => Err(Error::Sim(format!("{what} of {n} bytes at {addr:#x} is outside every allocation"))),
        }
    }

    pub fn write(&mut self, addr: u64, src: &[u8]) -> Result<()> {
        let (a, off) = self.locate(addr, src.len(), "host-to-device copy")?;
        a.bytes_mut()[off..off + src.len()].copy_from_slice(src);
        a.mark_init(off, src.len());
        Ok(())
    }

    pub fn read(&mut self, addr: u64, dst: &mut [u8]) -> Result<()> {
        let (a, off) = self.locate(addr, dst.len(), "device-to-host copy")?;
        dst.copy_from_slice(&a.bytes()[off..off + dst.len()]);
        Ok(())
    }

    pub fn fill(&mut self, addr: u64, value: u8, n: usize) -> Result<()> {
        let (a, off) = self.locate(addr, n, "memset")?;
        a.bytes_mut()[off..off + n].fill(value);
        a.mark_init(off, n);
        Ok(())
    }

    pub fn copy(&mut self, dst: u64, src: u64, n: usize) -> Result<()> {
        let mut tmp = vec![0u8; n];
        let (a, off) = self.locate(src, n, "device-to-device copy source")?;
        tmp.copy_from_slice(&a.bytes()[off..off + n]);
        let init: Vec<bool> = (off..off + n).map(|b| a.init[b >> 3] & (1 << (b & 7)) != 0).collect();
        let (d, doff) = self.locate(dst, n, "device-to-device copy destination")?;
        d.bytes_mut()[doff..doff + n].copy_from_slice(&tmp);
        // Copying carries the source's initialised bits over (uninitialised stays uninitialised).
        for (k, was) in init.into_iter().enumerate() {
            let b = doff + k;
            if was {
                d.init[b >> 3] |= 1 << (b & 7);
            } else {
                d.init[b >> 3] &= !(1 << (b & 7));
            }
        }
        Ok(())
    }

    /// Raw views of every allocation for the duration of a launch. The caller holds `&mut self`
    /// (the memory lock) while the view is in use, so no allocation moves or disappears.
    pub fn view(&mut self) -> GlobalView {
        let regions = self
            .allocs
            .iter_mut()
            .map(|(&base, a)| Region {
                base,
                len: a.len as u64,
                id: a.id,
                data: a.data.as_mut_ptr().cast::<u8>(),
                init: a.init.as_mut_ptr(),
            })
            .collect();
        GlobalView { regions }
    }
}

pub struct Region {
    pub base: u64,
    pub len: u64,
    pub id: u64,
    data: *mut u8,
    init: *mut u8,
}

/// Raw pointers into global memory, shared by the block workers of one launch.
pub struct GlobalView {
    regions: Vec<Region>,
}

// SAFETY: the view is used only while the owning GlobalMemory is locked for the launch, and all
// accesses through it are atomic operations of the access size.
unsafe impl Send for GlobalView {}
unsafe impl Sync for GlobalView {}

impl Region {
    pub fn describe(&self) -> String {
        describe_alloc(self.id, self.base, self.len as usize)
    }
    #[inline]
    pub fn contains(&self, addr: u64, n: u64) -> bool {
        addr >= self.base && addr - self.base + n <= self.len
    }

    /// Loads `size` (1, 2, 4, 8) bytes at `off`, which must be in bounds and size-aligned.
    #[inline]
    pub fn load(&self, off: u64, size: u8) -> u64 {
        // SAFETY: the caller checked bounds and alignment; the pointers stay valid for the launch.
        unsafe {
            let p = self.data.add(off as usize);
            match size {
                1 => AtomicU8::from_ptr(p).load(Relaxed) as u64,
                2 => AtomicU16::from_ptr(p.cast()).load(Relaxed) as u64,
                4 => AtomicU32::from_ptr(p.cast()).load(Relaxed) as u64,
                _ => AtomicU64::from_ptr(p.cast()).load(Relaxed),
            }
        }
    }

    #[inline]
    pub fn store(&self, off: u64, size: u8, v: u64) {
        // SAFETY: as for load.
        unsafe {
            let p = self.data.add(off as usize);
            match size {
                1 => AtomicU8::from_ptr(p).store(v as u8, Relaxed),
                2 => AtomicU16::from_ptr(p.cast()).store(v as u16, Relaxed),
                4 => AtomicU32::from_ptr(p.cast()).store(v as u32, Relaxed),
                _ => AtomicU64::from_ptr(p.cast()).store(v, Relaxed),
            }
        }
    }

    /// Atomically replaces the value with `f(old, b, c)`; returns old. `size` is 2, 4 or 8.
    #[inline]
    pub fn rmw(&self, off: u64, size: u8, f: fn(u64, u64, u64) -> u64, b: u64, c: u64) -> u64 {
        // SAFETY: as for load.
        unsafe {
            let p = self.data.add(off as usize);
            if size == 2 {
                // A CAS loop on the aligned word holding the half-word (bounds: allocations are
                // backed by whole u64s).
                let shift = (off & 2) * 8;
                let a = AtomicU32::from_ptr(self.data.add((off & !3) as usize).cast());
                let mut word = a.load(Relaxed);
                loop {
                    let old = (word >> shift) & 0xffff;
                    let new = (word & !(0xffff << shift)) | (((f(old as u64, b, c) as u32) & 0xffff) << shift);
                    match a.compare_exchange_weak(word, new, Relaxed, Relaxed) {
                        Ok(_) => return old as u64,
                        Err(cur) => word = cur,
                    }
                }
            }
            if size == 4 {
                let a = AtomicU32::from_ptr(p.cast());
                let mut old = a.load(Relaxed);
                loop {
                    let new = f(old as u64, b, c) as u32;
                    match a.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                        Ok(_) => return old as u64,
                        Err(cur) => old = cur,
                    }
                }
            } else {
                let a = AtomicU64::from_ptr(p.cast());
                let mut old = a.load(Relaxed);
                loop {
                    let new = f(old, b, c);
                    match a.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                        Ok(_) => return old,
                        Err(cur) => old = cur,
                    }
                }
            }
        }
    }

    /// Whether all `size` bytes at `off` (size-aligned, size <= 8) were ever written.
    #[inline]
    pub fn is_init(&self, off: u64, size: u8) -> bool {
        let want = (((1u16 << size) - 1) << (off & 7)) as u8;
        // SAFETY: off is in bounds, so its bitmap byte is too.
        let have = unsafe { AtomicU8::from_ptr(self.init.add((off >> 3) as usize)).load(Relaxed) };
        have & want == want
    }

    #[inline]
    pub fn mark_init(&self, off: u64, size: u8) {
        let bits = (((1u16 << size) - 1) << (off & 7)) as u8;
        // SAFETY: as for is_init.
        let cell = unsafe { AtomicU8::from_ptr(self.init.add((off >> 3) as usize)) };
        if cell.load(Relaxed) & bits != bits {
            cell.fetch_or(bits, Relaxed);
        }
    }
}

impl GlobalView {
    /// The region containing `addr`.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.base <= addr);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (addr < r.base + r.len).then_some(r)
    }

    /// "8 bytes past the end of allocation #3 (1024 bytes at 0x...)": where a bad address lies
    /// relative to the nearest allocation.
    pub fn describe_miss(&self, addr: u64, n: u64) -> String {
        let nearest = self.regions.iter().min_by_key(|r| {
            if addr < r.base {
                r.base - addr
            } else {
                (addr + n).saturating_sub(r.base + r.len)
            }
        });
        match nearest {
            None => "no allocation exists".into(),
            Some(r) if addr < r.base => format!("{} bytes before the start of {}", r.base - addr, r.describe()),
            Some(r) if addr == r.base + r.len => format!("just past the end of {} (offset {})", r.describe(), r.len),
            Some(r) if addr > r.base + r.len => format!("{} bytes past the end of {}", addr - (r.base + r.len), r.describe()),
            Some(r) => format!("overlapping the end of {} at offset {}", r.describe(), addr - r.base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_checked() {
        let mut m = GlobalMemory::new(1 << 20);
        let a = m.alloc(100).unwrap();
        let b = m.alloc(10).unwrap();
        assert!(a != 0 && a.is_multiple_of(ALIGNMENT) && b.is_multiple_of(ALIGNMENT));
        assert!(b >= a + 100 + ALIGNMENT, "a gap separates neighbours");
        m.write(a + 3, &[1, 2, 3]).unwrap();
        let mut back = [0u8; 5];
        m.read(a + 2, &mut back).unwrap();
        assert_eq!(back, [0, 1, 2, 3, 0]);
        assert!(m.write(a + 98, &[0; 4]).unwrap_err().to_string().contains("runs past the end of allocation #1"));
        assert!(matches!(m.alloc(2 << 20), Err(Error::OutOfMemory { .. })));
        m.free(a);
        assert!(m.read(a, &mut back).is_err(), "freed addresses are never valid again");
        assert_eq!(m.used(), 10);
    }

    #[test]
    fn init_bits_follow_writes_and_copies() {
        let mut m = GlobalMemory::new(1 << 20);
        let a = m.alloc(64).unwrap();
        let b = m.alloc(64).unwrap();
        m.write(a + 5, &[7; 20]).unwrap();
        m.copy(b, a, 64).unwrap();
        let view = m.view();
        let r = view.find(b + 10).unwrap();
        assert!(!r.is_init(4, 1) && r.is_init(5, 1) && r.is_init(24, 1) && !r.is_init(25, 1));
        assert!(r.is_init(8, 8) && !r.is_init(0, 8));
        assert!(view.find(a + 64).is_none(), "the byte after an allocation is outside it");
        assert!(view.describe_miss(a + 64, 4).starts_with("just past the end of allocation #1"));
    }

    #[test]
    fn a_reissued_block_is_a_fresh_allocation_of_the_new_size() {
        let mut m = GlobalMemory::new(1 << 20);
        let a = m.alloc(512).unwrap();
        m.write(a, &[1; 512]).unwrap();
        m.reissue(a, 100).unwrap();
        assert_eq!(m.used(), 512, "the block stays reserved");
        assert!(m.write(a + 98, &[0; 4]).unwrap_err().to_string().contains("runs past the end of allocation #2 (100 bytes"));
        assert!(!m.view().find(a).unwrap().is_init(0, 4), "nothing of the old buffer counts as written");
        assert!(m.reissue(a, 513).is_err(), "a block cannot grow");
        m.free(a);
        assert_eq!(m.used(), 0);
    }
}
