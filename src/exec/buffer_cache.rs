//! A cache of freed device buffers keyed by length and bytes (a 16-bit buffer never serves a
//! request for f32 values). The executor routes the buffers it allocates
//! itself (zero pads, scratch statistics, gradient accumulators, last step's gradients) through
//! it, so a steady training loop stops allocating them after the first step. Op outputs are
//! allocated by the ops themselves and do not pass through here.

use super::Buf;
use crate::element::Element;
use crate::error::Result;
use crate::ops::node::Scratch;
use crate::ops::ElementwiseOps;
use std::collections::HashMap;

pub struct BufferCache<E: Element, B: ElementwiseOps<E>> {
    /// By (length, bytes).
    free: HashMap<(usize, usize), Vec<Buf<E, B>>>,
    enabled: bool,
    allocations: usize,
    reuses: usize,
}

impl<E: Element, B: ElementwiseOps<E>> BufferCache<E, B> {
    pub fn new(enabled: bool) -> Self {
        BufferCache { free: HashMap::new(), enabled, allocations: 0, reuses: 0 }
    }

    /// A buffer of `len` elements, all zero: a pooled one refilled, else a fresh allocation.
    pub fn zeros(&mut self, backend: &B, len: usize) -> Result<Buf<E, B>> {
        let key = (len, len * std::mem::size_of::<E>());
        if let Some(mut buf) = self.free.get_mut(&key).and_then(Vec::pop) {
            self.reuses += 1;
            backend.fill(E::zero(), &mut buf)?;
            return Ok(buf);
        }
        self.allocations += 1;
        backend.zeros(len)
    }

    /// A copy of `src` in a pooled buffer when one of its length is free.
    pub fn copy_of(&mut self, backend: &B, src: &Buf<E, B>) -> Result<Buf<E, B>> {
        let mut buf = self.zeros(backend, crate::device::Buffer::len(src))?;
        backend.axpy(E::one(), src, &mut buf)?;
        Ok(buf)
    }

    /// Keeps `buf` for reuse (or drops it when pooling is off).
    pub fn recycle(&mut self, buf: Buf<E, B>) {
        if self.enabled {
            let key = (crate::device::Buffer::len(&buf), crate::device::Buffer::bytes(&buf));
            self.free.entry(key).or_default().push(buf);
        }
    }

    /// Frees every pooled buffer (before a phase with a different buffer mix, e.g. evaluation).
    pub fn clear(&mut self) {
        self.free.clear();
    }

    /// Buffers this pool had to allocate since it was created.
    pub fn allocations(&self) -> usize {
        self.allocations
    }
    /// Requests served from freed buffers instead of allocating.
    pub fn reuses(&self) -> usize {
        self.reuses
    }
}

/// Units borrow their scratch buffers (e.g. BN's throw-away running statistics) from here.
impl<E: Element, B: ElementwiseOps<E>> Scratch<E, B> for BufferCache<E, B> {
    fn copy_of(&mut self, backend: &B, src: &Buf<E, B>) -> Result<Buf<E, B>> {
        BufferCache::copy_of(self, backend, src)
    }
    fn recycle(&mut self, buf: Buf<E, B>) {
        BufferCache::recycle(self, buf)
    }
}
