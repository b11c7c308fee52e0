// Definitions shared by every kernel file. build.rs inlines this header into each .cu, so the
// embedded sources compile at run time without any include path. NVRTC ships no system headers,
// hence the constants below.
#pragma once

#define FERRO_INF __int_as_float(0x7f800000)
#define FERRO_FLT_MAX 3.402823466e+38f
#define FERRO_WARP 32

// A full-warp mask for shuffles and votes.
#define FERRO_FULL_MASK 0xffffffffu
