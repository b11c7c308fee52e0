//! Timing on a real GPU: CUDA events around each run, warm-up, an L2 flush before every timed
//! run (so each kernel reads its operands from DRAM, as in a training step where the previous
//! layers evicted them), the median of many runs, and the device's measured peaks to compare
//! against: a large device-to-device copy for bandwidth and cuBLAS SGEMM for fp32 GEMM.
//!
//! On a device of ferronet's emulated driver (src/libcuda) the same code runs, but its event
//! times are the PTX simulator's roofline predictions (the report labels them so), it models no
//! cache (nothing to flush), and it cannot run cuBLAS, which ships compiled GPU code rather than
//! PTX: the report says cuBLAS is absent and the benchmark goes on without it.

use super::timing::Timing;
use crate::error::{Error, Result};
use crate::device::driver::{Driver, Stream};
use crate::device::Buffer;
use crate::gpu::cuda_driver::CudaDriver;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::cases::CublasGemm;
use crate::precision::Precision;
use cublas_sys::{cublasComputeType_t as Compute, cudaDataType};
use cudarc::cublas::{result as cublas, sys as cublas_sys};
use cudarc::driver::{result as cu, sys as cu_sys};
use serde::Serialize;
use std::ffi::c_void;
use std::sync::Arc;

/// The flush buffer is this many times the L2 size (and at least `MIN_FLUSH_BYTES`), so that
/// writing it leaves none of the kernel's operands in L2.
const FLUSH_L2_MULTIPLE: usize = 2;
const MIN_FLUSH_BYTES: usize = 64 << 20;
/// The bandwidth copy moves this much (far larger than any L2).
const PEAK_COPY_BYTES: usize = 1 << 30;
/// The emulated driver predicts a copy's time in proportion to its bytes, so a small copy gives
/// the same rate without a gigabyte of host memory.
const PEAK_COPY_BYTES_EMULATED: usize = 1 << 20;
/// The cuBLAS peak is taken on a square SGEMM of this size.
const PEAK_GEMM_SIZE: usize = 4096;
const PEAK_REPS: usize = 10;

/// What the device reached in this run: the references for "fraction of peak".
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DevicePeaks {
    /// Device-to-device copy: bytes read plus bytes written per second.
    pub copy_bytes_per_s: f64,
    /// cuBLAS SGEMM 4096^3 (fp32, no tensor cores), FLOP/s; None when cuBLAS is absent.
    pub cublas_sgemm_flops: Option<f64>,
    /// Why cuBLAS is absent, when it is.
    pub cublas_absent: Option<&'static str>,
}

/// A CUDA device opened for benchmarking.
pub struct CudaBench {
    driver: Arc<CudaDriver>,
    pub backend: GpuBackend,
    /// None on an emulated device (no cache to evict).
    flush: Option<GpuBuf<u8>>,
    /// The handle, or why cuBLAS is absent.
    cublas: std::result::Result<CublasHandle, &'static str>,
}

struct CublasHandle(cublas_sys::cublasHandle_t);

impl Drop for CublasHandle {
    fn drop(&mut self) {
        // SAFETY: created by create_handle and destroyed once; a failure at teardown is moot.
        let _ = unsafe { cublas::destroy_handle(self.0) };
    }
}

fn cuda_error(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::device(format!("{what} failed: {e:?}"))
}

impl CudaBench {
    pub fn open(ordinal: usize) -> Result<Self> {
        let driver = Arc::new(CudaDriver::new(ordinal)?);
        let backend = GpuBackend::new(driver.clone() as Arc<dyn Driver>);
        let emulated = driver.simulated();
        let flush = if emulated {
            None
        } else {
            let l2 = l2_bytes(ordinal)?;
            Some(backend.alloc::<u8>((FLUSH_L2_MULTIPLE * l2).max(MIN_FLUSH_BYTES))?)
        };
        // Any driver call makes the device's context current on this thread; cuBLAS binds its
        // handle to the current context.
        driver.synchronize()?;
        // SAFETY: only tries to load the cuBLAS library.
        let installed = || unsafe { cublas_sys::is_culib_present() };
        let cublas = if emulated {
            Err("cuBLAS is absent: it ships compiled GPU code, which the emulated driver's PTX simulator cannot run")
        } else if installed() {
            Ok(CublasHandle(cublas::create_handle().map_err(|e| cuda_error("creating a cuBLAS handle", e))?))
        } else {
            Err("cuBLAS is absent: libcublas is not installed")
        };
        Ok(CudaBench { driver, backend, flush, cublas })
    }

    pub fn name(&self) -> String {
        self.driver.name()
    }

    /// Whether this is a device of ferronet's emulated driver, whose event times are the PTX
    /// simulator's predictions rather than measurements.
    pub fn emulated(&self) -> bool {
        self.driver.simulated()
    }

    /// Evicts L2 by writing the flush buffer (a different byte each time, so no layer of the
    /// driver can skip it).
    fn flush_l2(&self, round: usize) -> Result<()> {
        match &self.flush {
            Some(flush) => self.driver.memset(flush.ptr(), round as u8, flush.len()),
            None => Ok(()),
        }
    }

    /// GPU time of `run` by events: `warmup` runs, then `reps` runs each after an L2 flush.
    /// What a run returns (its output buffers) is dropped after the end event, so freeing them
    /// stays out of the timing.
    pub fn time<T>(&self, warmup: usize, reps: usize, mut run: impl FnMut() -> Result<T>) -> Result<Timing> {
        for _ in 0..warmup {
            run()?;
        }
        self.driver.synchronize()?;
        let mut samples = Vec::with_capacity(reps);
        for rep in 0..reps {
            self.flush_l2(rep)?;
            let start = self.driver.record_event(Stream::Compute)?;
            let outputs = run()?;
            let end = self.driver.record_event(Stream::Compute)?;
            samples.push(self.driver.elapsed_ms(start, end)? as f64 * 1e-3);
            drop(outputs);
        }
        Timing::from_samples(&samples)
    }

    /// The bandwidth of a large device-to-device copy and cuBLAS's SGEMM rate.
    pub fn measure_peaks(&self) -> Result<DevicePeaks> {
        let bytes = if self.emulated() { PEAK_COPY_BYTES_EMULATED } else { PEAK_COPY_BYTES };
        let src = self.backend.alloc_zeroed::<u8>(bytes)?;
        let dst = self.backend.alloc::<u8>(bytes)?;
        let copy = self.time(1, PEAK_REPS, || self.driver.copy_dtod(dst.ptr(), src.ptr(), bytes))?;
        let copy_bytes_per_s = 2.0 * bytes as f64 / copy.median_s;
        drop((src, dst));
        let n = PEAK_GEMM_SIZE;
        let square = CublasGemm { precision: Precision::Fp32, trans_a: false, trans_b: false, m: n, n, k: n };
        let cublas_sgemm_flops = self.cublas_gemm(&square)?.map(|t| 2.0 * (n * n * n) as f64 / t.median_s);
        Ok(DevicePeaks { copy_bytes_per_s, cublas_sgemm_flops, cublas_absent: self.cublas.as_ref().err().copied() })
    }

    /// cuBLAS's time of `gemm` (row-major C[m,n] = op(A) op(B), ferronet's GEMM convention) on
    /// zeroed operands: SGEMM at fp32, else `cublasGemmEx` with f32 accumulation and output on
    /// bf16/fp16 operands, or f32 ones at tf32 (`CUBLAS_COMPUTE_32F_FAST_TF32`); None without
    /// cuBLAS.
    pub fn cublas_gemm(&self, gemm: &CublasGemm) -> Result<Option<Timing>> {
        let Ok(handle) = &self.cublas else { return Ok(None) };
        let CublasGemm { precision, trans_a, trans_b, m, n, k } = *gemm;
        let (operand_type, operand_bytes, compute) = match precision {
            Precision::Fp32 => (cudaDataType::CUDA_R_32F, 4, Compute::CUBLAS_COMPUTE_32F),
            Precision::Tf32 => (cudaDataType::CUDA_R_32F, 4, Compute::CUBLAS_COMPUTE_32F_FAST_TF32),
            Precision::Bf16 => (cudaDataType::CUDA_R_16BF, 2, Compute::CUBLAS_COMPUTE_32F),
            Precision::Fp16 => (cudaDataType::CUDA_R_16F, 2, Compute::CUBLAS_COMPUTE_32F),
        };
        let (a, b) = (self.backend.alloc_zeroed::<u8>(m * k * operand_bytes)?, self.backend.alloc_zeroed::<u8>(k * n * operand_bytes)?);
        let c = self.backend.alloc_zeroed::<f32>(m * n)?;
        let dim = |v: usize| i32::try_from(v).map_err(|_| Error::shape(format!("cuBLAS dimension {v} exceeds 32 bits")));
        let op = |t: bool| if t { cublas_sys::cublasOperation_t::CUBLAS_OP_T } else { cublas_sys::cublasOperation_t::CUBLAS_OP_N };
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
        let (lda, ldb) = (dim(if trans_a { m } else { k })?, dim(if trans_b { k } else { n })?);
        let (mi, ni, ki) = (dim(m)?, dim(n)?, dim(k)?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let timing = self.time(1, PEAK_REPS, || {
            // SAFETY: a, b and c are live allocations of the sizes the dimensions, leading
            // dimensions and element types describe; alpha and beta are host f32 scalars (the
            // scale type of an f32 compute type) outliving the call.
            unsafe {
                if precision == Precision::Fp32 {
                    cublas::sgemm(handle.0, op(trans_b), op(trans_a), ni, mi, ki, &alpha, b.ptr() as *const f32, ldb, a.ptr() as *const f32, lda, &beta, c.ptr() as *mut f32, ni)
                } else {
                    cublas::gemm_ex(
                        handle.0,
                        op(trans_b),
                        op(trans_a),
                        ni,
                        mi,
                        ki,
                        (&alpha as *const f32).cast(),
                        b.ptr() as *const c_void,
                        operand_type,
                        ldb,
                        a.ptr() as *const c_void,
                        operand_type,
                        lda,
                        (&beta as *const f32).cast(),
                        c.ptr() as *mut c_void,
                        cudaDataType::CUDA_R_32F,
                        ni,
                        compute,
                        cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                    )
                }
            }
            .map_err(|e| cuda_error(if precision == Precision::Fp32 { "cuBLAS SGEMM" } else { "cuBLAS GemmEx" }, e))
        })?;
        Ok(Some(timing))
    }
}

/// The L2 cache size of CUDA device `ordinal` in bytes.
fn l2_bytes(ordinal: usize) -> Result<usize> {
    let dev = cu::device::get(ordinal as i32).map_err(|e| cuda_error("opening the CUDA device", e))?;
    // SAFETY: `dev` came from device::get.
    let bytes = unsafe { cu::device::get_attribute(dev, cu_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE) }
        .map_err(|e| cuda_error("reading the L2 cache size", e))?;
    Ok(bytes.max(0) as usize)
}
