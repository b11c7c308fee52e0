// Row-wise softmax and fused softmax cross-entropy over logits [N, K], one block per row. Every
// exponent is max-subtracted so no row overflows. Labels are not checked on the host (that would
// need a download): a row whose label is out of range gets a NaN loss and is never indexed by it,
// and finish_train_step records the label. The metric kernels after them accumulate a pass's
// figures in a buffer of 32-bit words (layouts below, mirrored by src/ops/loss/mod.rs) so that
// nothing is read back per step.
#include "common.cuh"

// Loss of row r into row_loss[r] and dlogits = (softmax - target) * inv_n, where the target is
// (1 - smoothing) * onehot(label) + smoothing / K. With lse = log(sum exp(logits)), the loss is
// (1 - smoothing) * (lse - logit[label]) + smoothing * (lse - mean(logits)).
extern "C" __global__ void softmax_cross_entropy(const float* __restrict__ logits,
                                                 const unsigned int* __restrict__ labels,
                                                 float* __restrict__ row_loss, float* __restrict__ dlogits,
                                                 int classes, float smoothing, float inv_n) {
    __shared__ float scratch[33];
    const int r = blockIdx.x;
    const float* row = logits + (long long)r * classes;
    float* grad = dlogits + (long long)r * classes;

    float local_max = -FERRO_INF;
    float local_sum = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) {
        local_max = fmaxf(local_max, row[k]);
        local_sum += row[k];
    }
    const float row_max = ferro_block_max(local_max, scratch);
    const float sum_logits = ferro_block_sum(local_sum, scratch);

    float local_exp = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_exp += expf(row[k] - row_max);
    const float sum_exp = ferro_block_sum(local_exp, scratch);

    // An out-of-range label matches no k below: the row gets no target.
    const int label = labels[r] < (unsigned int)classes ? (int)labels[r] : -1;
    const float lse = row_max + logf(sum_exp);
    const float off_target = smoothing / (float)classes;
    if (threadIdx.x == 0) {
        row_loss[r] = label < 0 ? __int_as_float(0x7fc00000)
                                : (1.0f - smoothing) * (lse - row[label]) + smoothing * (lse - sum_logits / (float)classes);
    }
    const float inv_sum = 1.0f / sum_exp;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) {
        const float target = off_target + (k == label ? 1.0f - smoothing : 0.0f);
        grad[k] = (expf(row[k] - row_max) * inv_sum - target) * inv_n;
    }
}

extern "C" __global__ void softmax(const float* __restrict__ logits, float* __restrict__ probs, int classes) {
    __shared__ float scratch[33];
    const long long base = (long long)blockIdx.x * classes;
    float local_max = -FERRO_INF;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_max = fmaxf(local_max, logits[base + k]);
    const float row_max = ferro_block_max(local_max, scratch);
    float local_exp = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_exp += expf(logits[base + k] - row_max);
    const float inv_sum = 1.0f / ferro_block_sum(local_exp, scratch);
    for (int k = threadIdx.x; k < classes; k += blockDim.x) probs[base + k] = expf(logits[base + k] - row_max) * inv_sum;
}

// Training metrics words (src/ops/loss/mod.rs, train_words). f64 values at even offsets.
#define TRAIN_LOSS_SUM 0
#define TRAIN_STEP_LOSS 2
#define TRAIN_LAST_LOSS 4
#define TRAIN_NONFINITE_LOSS 6
#define TRAIN_STEPS 8
#define TRAIN_SEEN 9
#define TRAIN_CORRECT 10
#define TRAIN_SKIPPED 11
#define TRAIN_NONFINITE_STEP 12
#define TRAIN_BAD_STEP 13
#define TRAIN_BAD_SAMPLE 14
#define TRAIN_BAD_LABEL 15
// Evaluation metrics words (eval_words): loss sum (f64), samples, top-5 hits, confusion counts.
#define EVAL_LOSS_SUM 0
#define EVAL_SAMPLES 2
#define EVAL_TOP5 3
#define EVAL_CONFUSION 4
// Rows per pass of accumulate_eval: its block size.
#define EVAL_BLOCK 256

__device__ __forceinline__ double* ferro_word_f64(unsigned int* words, int at) {
    return reinterpret_cast<double*>(words + at);
}

// The index of the largest logit, the first on ties; a NaN never wins (the CPU's argmax).
__device__ int ferro_argmax(const float* row, int classes) {
    int best = 0;
    for (int k = 1; k < classes; ++k)
        if (row[k] > row[best]) best = k;
    return best;
}

// STEP_LOSS += weight * loss[0] in double, rounded as the host would (no contraction to an fma).
// One thread.
extern "C" __global__ void accumulate_step_loss(const float* __restrict__ loss, double weight,
                                                unsigned int* __restrict__ metrics) {
    double* step = ferro_word_f64(metrics, TRAIN_STEP_LOSS);
    *step = __dadd_rn(*step, __dmul_rn(weight, (double)loss[0]));
}

// Ends a training step of n samples (one block, blockDim a multiple of 32): top-1 hits and the
// first out-of-range label over the rows, then thread 0 commits the step (see LossOps).
extern "C" __global__ void finish_train_step(const float* __restrict__ logits,
                                             const unsigned int* __restrict__ labels, int n, int classes,
                                             unsigned int* __restrict__ metrics) {
    __shared__ unsigned int hits;
    __shared__ int first_bad;
    if (threadIdx.x == 0) {
        hits = 0;
        first_bad = n;
    }
    __syncthreads();
    unsigned int local_hits = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned int label = labels[i];
        if (label >= (unsigned int)classes) {
            atomicMin(&first_bad, i);
        } else {
            local_hits += ferro_argmax(logits + (long long)i * classes, classes) == (int)label;
        }
    }
    atomicAdd(&hits, local_hits);
    __syncthreads();
    if (threadIdx.x != 0) return;
    const unsigned int step = metrics[TRAIN_STEPS] + 1;
    metrics[TRAIN_STEPS] = step;
    if (first_bad < n && metrics[TRAIN_BAD_STEP] == 0) {
        metrics[TRAIN_BAD_STEP] = step;
        metrics[TRAIN_BAD_SAMPLE] = (unsigned int)first_bad;
        metrics[TRAIN_BAD_LABEL] = labels[first_bad];
    }
    double* step_loss = ferro_word_f64(metrics, TRAIN_STEP_LOSS);
    const double loss = *step_loss;
    if (isfinite(loss)) {
        double* sum = ferro_word_f64(metrics, TRAIN_LOSS_SUM);
        *sum = __dadd_rn(*sum, __dmul_rn(loss, (double)n));
        metrics[TRAIN_SEEN] += (unsigned int)n;
        metrics[TRAIN_CORRECT] += hits;
    } else {
        metrics[TRAIN_SKIPPED] += 1;
        if (metrics[TRAIN_NONFINITE_STEP] == 0) {
            metrics[TRAIN_NONFINITE_STEP] = step;
            *ferro_word_f64(metrics, TRAIN_NONFINITE_LOSS) = loss;
        }
    }
    *ferro_word_f64(metrics, TRAIN_LAST_LOSS) = loss;
    *step_loss = 0.0;
}

// -log softmax(row)[label] in double, in the CPU's order: max, exp summed from k = 0, log.
__device__ double ferro_row_cross_entropy(const float* row, int classes, int label) {
    double max = __longlong_as_double(0xfff0000000000000ULL);  // -inf
    for (int k = 0; k < classes; ++k) max = fmax(max, (double)row[k]);
    double sum = 0.0;
    for (int k = 0; k < classes; ++k) sum = __dadd_rn(sum, exp((double)row[k] - max));
    const double log_sum = log(sum) + max;
    return -((double)row[label] - log_sum);
}

// Whether label is among the 5 highest logits; ties rank a lower index above, a NaN above all.
__device__ bool ferro_in_top5(const float* row, int classes, int label) {
    const float target = row[label];
    int above = 0;
    for (int k = 0; k < classes; ++k) {
        const float v = row[k];
        above += v > target || (v == target && k < label) || isnan(v);
    }
    return above < 5;
}

// One evaluation batch (one block of EVAL_BLOCK threads, a thread per row): confusion counts and
// top-5 hits by atomics; the row losses summed by thread 0 in row order, so the sum is the
// CPU's.
extern "C" __global__ void accumulate_eval(const float* __restrict__ logits, const unsigned int* __restrict__ labels,
                                           int n, int classes, unsigned int* __restrict__ metrics) {
    __shared__ double row_loss[EVAL_BLOCK];
    __shared__ unsigned int top5;
    if (threadIdx.x == 0) top5 = 0;
    double total = 0.0;
    unsigned int local_top5 = 0;
    for (int base = 0; base < n; base += EVAL_BLOCK) {
        const int i = base + threadIdx.x;
        double loss = 0.0;
        if (i < n && labels[i] < (unsigned int)classes) {
            const int label = (int)labels[i];
            const float* row = logits + (long long)i * classes;
            loss = ferro_row_cross_entropy(row, classes, label);
            atomicAdd(&metrics[EVAL_CONFUSION + label * classes + ferro_argmax(row, classes)], 1u);
            local_top5 += ferro_in_top5(row, classes, label);
        }
        row_loss[threadIdx.x] = loss;
        __syncthreads();
        if (threadIdx.x == 0) {
            const int rows = min(EVAL_BLOCK, n - base);
            for (int j = 0; j < rows; ++j) total = __dadd_rn(total, row_loss[j]);
        }
        __syncthreads();
    }
    atomicAdd(&top5, local_top5);
    __syncthreads();
    if (threadIdx.x != 0) return;
    double* sum = ferro_word_f64(metrics, EVAL_LOSS_SUM);
    *sum = __dadd_rn(*sum, __dmul_rn(__ddiv_rn(total, (double)n), (double)n));
    metrics[EVAL_SAMPLES] += (unsigned int)n;
    metrics[EVAL_TOP5] += top5;
}
