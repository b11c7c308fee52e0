//! GPU optimiser steps: kernels/optim.cu, one fused pass over each parameter tensor, or over
//! every tensor of a table in one launch per step count, and the global gradient norm in two.

use super::{check_group_steps, check_slots, AdamParams, OptimOps, SgdParams, TensorSlot};
use crate::device::driver::{DevPtr, KernelArg, LaunchConfig};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::reduce::cuda::scalar_reduction;

/// Consecutive parameters each thread of an update updates (one 16-byte access per buffer where
/// the buffers are aligned).
const VALUES_PER_THREAD: usize = 4;
/// Threads per block of the multi-tensor kernels (FERRO_OPTIM_THREADS in kernels/optim.cu): the
/// widest block of `reduce_sum`'s launches, which the norm's blocks replay.
const TABLE_BLOCK: u32 = 256;
/// Elements each block of a multi-tensor update handles (FERRO_OPTIM_CHUNK).
const UPDATE_CHUNK: usize = VALUES_PER_THREAD * TABLE_BLOCK as usize;

/// One tensor of the device table: FerroOptimTensor in kernels/optim.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TableEntry {
    param: DevPtr,
    first: DevPtr,
    second: DevPtr,
    len: i32,
    weight_decay: f32,
    group: i32,
    update_block_start: i32,
    norm_block_start: i32,
    norm_blocks: i32,
    norm_threads: i32,
    partial_threads: i32,
}

/// The tensors of a multi-tensor step on the device, with the host copies that tell whether it
/// still describes a step's slots, and the norm's partial sums.
pub struct GpuTensorTable {
    entries: Vec<TableEntry>,
    table: GpuBuf<TableEntry>,
    grad_ptrs: Vec<DevPtr>,
    grads: GpuBuf<DevPtr>,
    partials: GpuBuf<f32>,
    update_blocks: usize,
}

fn ptr_of(buf: &Option<&mut GpuBuf<f32>>) -> DevPtr {
    buf.as_ref().map_or(0, |b| b.ptr())
}

/// The table entries of `slots` and the blocks of an update and of the norm's first pass.
fn entries(slots: &[TensorSlot<'_, GpuBuf<f32>>]) -> Result<(Vec<TableEntry>, usize, usize)> {
    let (mut update_blocks, mut norm_blocks) = (0usize, 0usize);
    let mut out = Vec::with_capacity(slots.len());
    let as_int = |v: usize, what: &str| {
        i32::try_from(v)
            .map_err(|_| Error::shape(format!("the optimiser's {what} is {v}, more than 32-bit indexing allows")))
    };
    for slot in slots {
        let len = slot.param.len();
        let norm = scalar_reduction(len)?;
        let blocks = norm.first.grid.0 as usize;
        out.push(TableEntry {
            param: slot.param.ptr(),
            first: ptr_of(&slot.first),
            second: ptr_of(&slot.second),
            len: as_int(len, "tensor length")?,
            weight_decay: slot.weight_decay as f32,
            group: as_int(slot.group, "group")?,
            update_block_start: as_int(update_blocks, "update grid")?,
            norm_block_start: as_int(norm_blocks, "norm grid")?,
            norm_blocks: blocks as i32,
            norm_threads: norm.first.block.0 as i32,
            partial_threads: norm.second.map_or(0, |c| c.block.0 as i32),
        });
        update_blocks += len.div_ceil(UPDATE_CHUNK);
        norm_blocks += blocks;
    }
    as_int(update_blocks, "update grid")?;
    Ok((out, update_blocks, norm_blocks))
}

fn grad_ptrs(slots: &[TensorSlot<'_, GpuBuf<f32>>]) -> Vec<DevPtr> {
    slots.iter().map(|s| s.grad.ptr()).collect()
}

fn table_grid(blocks: usize) -> LaunchConfig {
    LaunchConfig { grid: (blocks as u32, 1, 1), block: (TABLE_BLOCK, 1, 1), shared_mem_bytes: 0 }
}

impl GpuTensorTable {
    /// An error unless the table describes exactly `slots` (a launch over a stale table would
    /// write to buffers the step does not hold).
    fn check(&self, slots: &[TensorSlot<'_, GpuBuf<f32>>]) -> Result<()> {
        if entries(slots)?.0 == self.entries && grad_ptrs(slots) == self.grad_ptrs {
            Ok(())
        } else {
            Err(Error::device("the optimiser's tensor table does not describe this step's tensors (sync_table first)"))
        }
    }
}

impl GpuBackend {
    /// One launch of a multi-tensor update kernel over `table` (which must describe `slots`):
    /// the table, the gradients, the group and the clip state (null without clipping), then the
    /// update rule's own arguments.
    fn launch_update(
        &self,
        kernel: &str,
        table: &GpuTensorTable,
        slots: &[TensorSlot<'_, GpuBuf<f32>>],
        group: usize,
        clip: Option<&GpuBuf<f32>>,
        rule: &[KernelArg],
    ) -> Result<()> {
        table.check(slots)?;
        if table.update_blocks == 0 {
            return Ok(());
        }
        let mut args = vec![
            table.table.arg(),
            table.grads.arg(),
            KernelArg::I32(slots.len() as i32),
            int(group, "the optimiser group")?,
            KernelArg::Ptr(clip.map_or(0, |c| c.ptr())),
        ];
        args.extend_from_slice(rule);
        self.launch("optim", kernel, table_grid(table.update_blocks), &args)
    }
}

impl OptimOps<f32> for GpuBackend {
    type TensorTable = GpuTensorTable;

    fn sgd_step(
        &self,
        param: &mut GpuBuf<f32>,
        grad: &GpuBuf<f32>,
        momentum_buf: &mut GpuBuf<f32>,
        h: &SgdParams,
        first_step: bool,
    ) -> Result<()> {
        h.check_step(param.len(), grad.len(), momentum_buf.len())?;
        let use_momentum = h.momentum != 0.0;
        let n = int(param.len(), "sgd")?;
        let args = [
            param.arg(),
            grad.arg(),
            momentum_buf.arg(),
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.momentum as f32),
            KernelArg::F32(h.dampening as f32),
            KernelArg::F32(h.weight_decay as f32),
            KernelArg::I32(use_momentum as i32),
            KernelArg::I32(h.nesterov as i32),
            KernelArg::I32(first_step as i32),
            n,
        ];
        self.launch("optim", "sgd_step", per_element(param.len().div_ceil(VALUES_PER_THREAD), "sgd_step")?, &args)
    }

    fn adam_step(
        &self,
        param: &mut GpuBuf<f32>,
        grad: &GpuBuf<f32>,
        m: &mut GpuBuf<f32>,
        v: &mut GpuBuf<f32>,
        h: &AdamParams,
        step: u64,
    ) -> Result<()> {
        h.check_step(step, param.len(), grad.len(), m.len(), v.len())?;
        let n = int(param.len(), "adam")?;
        let (bias1, bias2) = bias_corrections(h, step);
        let args = [
            param.arg(),
            grad.arg(),
            m.arg(),
            v.arg(),
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.beta1 as f32),
            KernelArg::F32(h.beta2 as f32),
            KernelArg::F32(h.eps as f32),
            KernelArg::F32(h.weight_decay as f32),
            KernelArg::I32(h.decoupled as i32),
            KernelArg::F32(bias1),
            KernelArg::F32(bias2),
            n,
        ];
        self.launch("optim", "adam_step", per_element(param.len().div_ceil(VALUES_PER_THREAD), "adam_step")?, &args)
    }

    fn sync_table(&self, table: &mut Option<GpuTensorTable>, slots: &[TensorSlot<'_, GpuBuf<f32>>]) -> Result<()> {
        let (entries, update_blocks, norm_blocks) = entries(slots)?;
        let grads = grad_ptrs(slots);
        match table {
            Some(t) if t.entries == entries => {
                if t.grad_ptrs != grads {
                    self.upload_into(&t.grads, &grads)?;
                    t.grad_ptrs = grads;
                }
            }
            _ => {
                *table = Some(GpuTensorTable {
                    table: self.upload_slice(&entries)?,
                    grads: self.upload_slice(&grads)?,
                    partials: self.alloc(norm_blocks)?,
                    entries,
                    grad_ptrs: grads,
                    update_blocks,
                })
            }
        }
        Ok(())
    }

    fn clip_grad_norm(
        &self,
        table: &GpuTensorTable,
        slots: &[TensorSlot<'_, GpuBuf<f32>>],
        max_norm: f64,
        clip: &mut GpuBuf<f32>,
    ) -> Result<()> {
        table.check(slots)?;
        crate::ops::check::expect_len("clip_grad_norm", "clip state", clip.len(), super::CLIP_STATE_LEN)?;
        if slots.is_empty() {
            return Ok(());
        }
        let count = KernelArg::I32(slots.len() as i32);
        let args = [table.table.arg(), table.grads.arg(), count, table.partials.arg()];
        self.launch("optim", "grad_norm_partials", table_grid(table.partials.len()), &args)?;
        let args = [table.table.arg(), count, table.partials.arg(), KernelArg::F64(max_norm), clip.arg()];
        self.launch("optim", "grad_norm_finish", table_grid(1), &args)
    }

    fn sgd_multi_step(
        &self,
        table: &GpuTensorTable,
        slots: &mut [TensorSlot<'_, GpuBuf<f32>>],
        group: usize,
        h: &SgdParams,
        steps: &GpuBuf<u32>,
        clip: Option<&GpuBuf<f32>>,
    ) -> Result<()> {
        check_group_steps(steps.len(), group)?;
        let use_momentum = h.momentum != 0.0;
        check_slots(slots, usize::from(use_momentum), clip, |weight_decay| SgdParams { weight_decay, ..*h }.validate())?;
        let rule = [
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.momentum as f32),
            KernelArg::F32(h.dampening as f32),
            KernelArg::I32(use_momentum as i32),
            KernelArg::I32(h.nesterov as i32),
            steps.arg(),
        ];
        self.launch_update("sgd_multi_step", table, slots, group, clip, &rule)
    }

    fn adam_multi_step(
        &self,
        table: &GpuTensorTable,
        slots: &mut [TensorSlot<'_, GpuBuf<f32>>],
        group: usize,
        h: &AdamParams,
        steps: &GpuBuf<u32>,
        clip: Option<&GpuBuf<f32>>,
    ) -> Result<()> {
        check_group_steps(steps.len(), group)?;
        check_slots(slots, 2, clip, |weight_decay| AdamParams { weight_decay, ..*h }.validate_settings())?;
        let rule = [
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.beta1 as f32),
            KernelArg::F32(h.beta2 as f32),
            KernelArg::F64(h.beta1),
            KernelArg::F64(h.beta2),
            KernelArg::F32(h.eps as f32),
            KernelArg::I32(h.decoupled as i32),
            steps.arg(),
        ];
        self.launch_update("adam_multi_step", table, slots, group, clip, &rule)
    }

    fn advance_steps(&self, steps: &mut GpuBuf<u32>, clip: Option<&GpuBuf<f32>>) -> Result<()> {
        if steps.len() == 0 {
            return Ok(());
        }
        let args = [steps.arg(), int(steps.len(), "the number of the optimiser's step counts")?, KernelArg::Ptr(clip.map_or(0, |c| c.ptr()))];
        self.launch("optim", "advance_steps", per_element(steps.len(), "advance_steps")?, &args)
    }
}

/// 1 - beta1^t and 1 - beta2^t, in f64 (beta^t for large t underflows gracefully to 0 there).
fn bias_corrections(h: &AdamParams, step: u64) -> (f32, f32) {
    let t = step as f64;
    ((1.0 - h.beta1.powf(t)) as f32, (1.0 - h.beta2.powf(t)) as f32)
}
