//! Error codes: the result of every entry point, the panic guard around each, the names and
//! descriptions `cuGetErrorName`/`cuGetErrorString` hand out, and the once-per-name notice of
//! calls the emulation does not implement.

use cudarc::driver::sys::CUresult;
use std::collections::HashSet;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// What an entry point's body returns: `Err` carries the CUDA error code.
pub type CuResult<T = ()> = Result<T, CUresult>;

/// Runs an entry point's body, turning a panic into CUDA_ERROR_UNKNOWN: unwinding across the C
/// boundary would abort the calling process.
pub fn guard(entry_point: &str, body: impl FnOnce() -> CuResult) -> CUresult {
    guard_returning("libcuda", entry_point, body, CUresult::CUDA_SUCCESS, CUresult::CUDA_ERROR_UNKNOWN)
}

/// `guard` for an emulated library whose codes are `C` (`library` names it in the notice): the
/// body's error code, `success`, or `panicked` after a panic.
pub fn guard_returning<C: std::fmt::Debug>(
    library: &str,
    entry_point: &str,
    body: impl FnOnce() -> Result<(), C>,
    success: C,
    panicked: C,
) -> C {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => success,
        Ok(Err(code)) => code,
        Err(_) => {
            eprintln!("{library} (ferronet emulation): {entry_point} panicked; returning {panicked:?}");
            panicked
        }
    }
}

/// Prints `message` on stderr the first time it is seen (a notice per entry point or feature).
pub fn notice_once(message: String) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.get_or_insert_with(HashSet::new).insert(message.clone()) {
        eprintln!("libcuda (ferronet emulation): {message}");
    }
}

/// The result of a call the emulation does not implement.
pub fn unsupported(entry_point: &str) -> CUresult {
    notice_once(format!("{entry_point} is not implemented by the emulated driver (CUDA_ERROR_NOT_SUPPORTED)"));
    CUresult::CUDA_ERROR_NOT_SUPPORTED
}

/// Writes `value` through an out-pointer the caller passed; a null pointer is INVALID_VALUE.
pub fn write_out<T>(out: *mut T, value: T) -> CuResult {
    if out.is_null() {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: the caller passed a non-null pointer to writable storage for a T, as the C API requires.
    unsafe { out.write(value) };
    Ok(())
}

/// (code, name, description) of every code the emulation returns and the common others, with
/// the real driver's numbering.
const ERRORS: &[(u32, &CStr, &CStr)] = &[
    (0, c"CUDA_SUCCESS", c"no error"),
    (1, c"CUDA_ERROR_INVALID_VALUE", c"invalid argument"),
    (2, c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
    (3, c"CUDA_ERROR_NOT_INITIALIZED", c"initialization error"),
    (4, c"CUDA_ERROR_DEINITIALIZED", c"driver shutting down"),
    (100, c"CUDA_ERROR_NO_DEVICE", c"no CUDA-capable device is detected"),
    (101, c"CUDA_ERROR_INVALID_DEVICE", c"invalid device ordinal"),
    (200, c"CUDA_ERROR_INVALID_IMAGE", c"device kernel image is invalid"),
    (201, c"CUDA_ERROR_INVALID_CONTEXT", c"invalid device context"),
    (209, c"CUDA_ERROR_NO_BINARY_FOR_GPU", c"no kernel image is available for execution on the device"),
    (218, c"CUDA_ERROR_INVALID_PTX", c"a PTX JIT compilation failed"),
    (222, c"CUDA_ERROR_UNSUPPORTED_PTX_VERSION", c"the provided PTX was compiled with an unsupported toolchain."),
    (400, c"CUDA_ERROR_INVALID_HANDLE", c"invalid resource handle"),
    (401, c"CUDA_ERROR_ILLEGAL_STATE", c"the operation cannot be performed in the present state"),
    (500, c"CUDA_ERROR_NOT_FOUND", c"named symbol not found"),
    (600, c"CUDA_ERROR_NOT_READY", c"device not ready"),
    (700, c"CUDA_ERROR_ILLEGAL_ADDRESS", c"an illegal memory access was encountered"),
    (701, c"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", c"too many resources requested for launch"),
    (710, c"CUDA_ERROR_ASSERT", c"device-side assert triggered"),
    (715, c"CUDA_ERROR_ILLEGAL_INSTRUCTION", c"an illegal instruction was encountered"),
    (716, c"CUDA_ERROR_MISALIGNED_ADDRESS", c"misaligned address"),
    (719, c"CUDA_ERROR_LAUNCH_FAILED", c"unspecified launch failure"),
    (720, c"CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", c"too many blocks in cooperative launch"),
    (801, c"CUDA_ERROR_NOT_SUPPORTED", c"operation not supported"),
    (900, c"CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", c"operation not permitted when stream is capturing"),
    (901, c"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", c"operation failed due to a previous error during capture"),
    (903, c"CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", c"operation would make the legacy stream depend on a capturing blocking stream"),
    (904, c"CUDA_ERROR_STREAM_CAPTURE_UNJOINED", c"capture was not ended in the stream where it began"),
    (906, c"CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", c"operation would make the legacy stream depend on a capturing blocking stream"),
    (999, c"CUDA_ERROR_UNKNOWN", c"unknown error"),
];

fn lookup(code: u32) -> Option<&'static (u32, &'static CStr, &'static CStr)> {
    ERRORS.iter().find(|(c, _, _)| *c == code)
}

/// Shared body of cuGetErrorName and cuGetErrorString: an unknown code is INVALID_VALUE and
/// stores NULL, as the real driver does.
fn describe(code: u32, out: *mut *const c_char, text: impl Fn(&(u32, &'static CStr, &'static CStr)) -> &'static CStr) -> CuResult {
    match lookup(code) {
        Some(entry) => write_out(out, text(entry).as_ptr()),
        None => {
            write_out(out, std::ptr::null())?;
            Err(CUresult::CUDA_ERROR_INVALID_VALUE)
        }
    }
}

#[no_mangle]
pub extern "C" fn cuGetErrorName(error: u32, p_str: *mut *const c_char) -> CUresult {
    guard("cuGetErrorName", || describe(error, p_str, |e| e.1))
}

#[no_mangle]
pub extern "C" fn cuGetErrorString(error: u32, p_str: *mut *const c_char) -> CUresult {
    guard("cuGetErrorString", || describe(error, p_str, |e| e.2))
}
