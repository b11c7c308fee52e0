//! The rest of the driver API that cudarc 0.19's safe layer can reach: exported so that cudarc
//! finds the symbol (it panics on a missing one), each returning CUDA_ERROR_NOT_SUPPORTED and
//! naming itself once on stderr.
//!
//! The functions take no parameters: under the C calling convention the caller owns its
//! arguments, so ignoring them is sound whatever the real signature.

use crate::errors::unsupported;
use cudarc::driver::sys::CUresult;

macro_rules! not_supported {
    ($($name:ident),* $(,)?) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name() -> CUresult {
                unsupported(stringify!($name))
            }
        )*
    };
}

not_supported!(
    cuCtxCreate_v3,
    cuCtxCreate_v4,
    cuCtxGetCacheConfig,
    cuCtxGetLimit,
    cuCtxGetStreamPriorityRange,
    cuCtxSetCacheConfig,
    cuCtxSetFlags,
    cuCtxSetLimit,
    cuCtxPushCurrent_v2,
    cuCtxPopCurrent_v2,
    cuDestroyExternalMemory,
    cuDeviceGetDefaultMemPool,
    cuDeviceGetMemPool,
    cuDeviceGetUuid,
    cuDeviceGetUuid_v2,
    cuDeviceSetMemPool,
    cuExternalMemoryGetMappedBuffer,
    cuFuncGetAttribute,
    cuFuncSetAttribute,
    cuFuncSetCacheConfig,
    cuGraphUpload,
    cuImportExternalMemory,
    cuLaunchHostFunc,
    cuMemAdvise_v2,
    cuMemAllocFromPoolAsync,
    cuMemAllocManaged,
    cuMemPoolCreate,
    cuMemPoolDestroy,
    cuMemPoolGetAttribute,
    cuMemPoolSetAttribute,
    cuMemPoolTrimTo,
    cuMemPrefetchAsync_v2,
    cuMemcpyPeerAsync,
    cuModuleLoad,
    cuOccupancyAvailableDynamicSMemPerBlock,
    cuOccupancyMaxActiveBlocksPerMultiprocessor,
    cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
    cuOccupancyMaxPotentialBlockSize,
    cuOccupancyMaxPotentialBlockSizeWithFlags,
    cuStreamAttachMemAsync,
);
