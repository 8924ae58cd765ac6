/* The elementwise work of one inference step of predictive coding (Whittington & Bogacz 2017,
 * Eqs. 1-3) on float32 blocks, two passes per layer around the step's two products:
 *
 *     error:   e = (x - mu) * s,  and  sum(e^2)                         (Eq. 1, Eq. 2's norm)
 *     update:  x += gamma * (phi'(x) * g - e),  then  r = phi(x)          (Eq. 3, the new rate)
 *
 * with mu = W phi(x_below) + b and g = e_above W the products (done by torch), s = 1 / Sigma.
 * In torch the same step takes seven passes (the rate, the error, its norm and a copy of it,
 * the slope, two updates) whose fixed costs exceed their arithmetic at these sizes; torch's
 * code computes the same thing and is the fallback (and the float64 path).
 *
 * phi is the sigmoid (0), tanh (1) or relu (2). phi'(x) comes from the present rate r = phi(x)
 * by the formulas of torch's sigmoid_backward, tanh_backward and threshold_backward; products
 * and sums may be fused into one rounding (fp-contract below), so the update can differ from
 * torch's in the last bit. The new rate uses the exponential below, whose error is about one
 * unit in the last place, as torch's vectorised one is. The loops have no calls and
 * no branches, so the compiler vectorises them. Rows are strided (ld_* elements apart);
 * columns are contiguous.
 */
#include <stdint.h>
#include <string.h>

/* The selects below compare floats; without no-trapping-math GCC keeps the loops scalar in
 * case a comparison traps (no result changes: the code tests no floating-point exception).
 * fp-contract=fast lets a product and a sum become one fused multiply-add, which the build's
 * strict -std=c99 otherwise forbids: the polynomial and the update then take a third less
 * time (23.6 against 32 us for one 100 x 500 update on an AMD EPYC), and each fused step
 * rounds once instead of twice. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#if defined(__x86_64__)
/* Where AVX-512 is there, its full width: the rates' exponentials are the pass's work. */
#pragma GCC target("prefer-vector-width=512")
#endif
#endif

/* e^a for a <= 0, to about 1 ulp: a = n ln 2 + f with |f| <= ln(2) / 2, e^f by the degree-7
 * polynomial of Cephes' expf, 2^n put into the exponent bits. Below -87.3 the result is held
 * at e^-87.3 (about 1.2e-38), so no denormal or zero is formed. */
static inline float exp_nonpositive(float a) {
    a = a < -87.3f ? -87.3f : a;
    float n = __builtin_floorf(a * 1.44269504088896341f + 0.5f);
    float f = a - n * 0.693359375f;
    f = f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    float y = p * (f * f) + f + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* 1 / (1 + e^-x), from z = e^-|x| so that nothing overflows. */
static inline float sigmoid(float x) {
    float z = exp_nonpositive(x < 0.0f ? x : -x);
    float inv = 1.0f / (1.0f + z);
    return x < 0.0f ? z * inv : inv;
}

/* tanh as Cephes' tanhf: an odd polynomial below |x| = 0.625, (1 - z) / (1 + z) with
 * z = e^-2|x| above it (both are computed and one is kept, which keeps the loop branch-free). */
static inline float tanh_f(float x) {
    float ax = x < 0.0f ? -x : x;
    float z = exp_nonpositive(-2.0f * ax);
    float big = (1.0f - z) / (1.0f + z);
    big = x < 0.0f ? -big : big;
    float s = x * x;
    float small = -5.70498872745e-3f;
    small = small * s + 2.06390887954e-2f;
    small = small * s - 5.37397155531e-2f;
    small = small * s + 1.33314422036e-1f;
    small = small * s - 3.33332819422e-1f;
    small = small * s * x + x;
    return ax < 0.625f ? small : big;
}

/* One row of the error: out = (x - mu) * s, and its squared norm summed over sixteen float
 * lanes (a fixed order, which the compiler vectorises without reassociating). */
#define ERROR_ROW(OUT, MU)                                                                    \
    do {                                                                                      \
        int64_t j = 0;                                                                        \
        for (; j + 16 <= cols; j += 16) {                                                     \
            for (int k = 0; k < 16; ++k) {                                                    \
                float e = (xi[j + k] - (MU)[j + k]) * s;                                      \
                (OUT)[j + k] = e;                                                             \
                lanes[k] += e * e;                                                            \
            }                                                                                 \
        }                                                                                     \
        for (; j < cols; ++j) {                                                               \
            float e = (xi[j] - (MU)[j]) * s;                                                  \
            (OUT)[j] = e;                                                                     \
            row += (double)e * (double)e;                                                     \
        }                                                                                     \
    } while (0)

/* out = (x - mu) * s row by row (out is mu, or a block apart from it); returns sum(out^2), the
 * rows' lanes added in double. */
static double pc_error(int64_t rows, int64_t cols, const float *restrict x, int64_t ld_x,
                       float *mu, int64_t ld_mu, float *out, int64_t ld_out, float s) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        const float *restrict xi = x + i * ld_x;
        float lanes[16] = {0.0f};
        double row = 0.0;
        if (out == mu) {
            float *restrict oi = mu + i * ld_mu;
            ERROR_ROW(oi, oi);
        } else {
            const float *restrict mi = mu + i * ld_mu;
            float *restrict oi = out + i * ld_out;
            ERROR_ROW(oi, mi);
        }
        for (int k = 0; k < 16; ++k) row += (double)lanes[k];
        total += row;
    }
    return total;
}

/* x += gamma (phi'(x) g - e) and r = phi(x), for the activation `act`; r holds phi(x) on entry. */
static void pc_update(int64_t rows, int64_t cols, float *restrict x, int64_t ld_x,
                      const float *restrict g, int64_t ld_g, const float *restrict e,
                      int64_t ld_e, float *restrict r, int64_t ld_r, float gamma, int64_t act) {
    for (int64_t i = 0; i < rows; ++i) {
        float *restrict xi = x + i * ld_x;
        const float *restrict gi = g + i * ld_g;
        const float *restrict ei = e + i * ld_e;
        float *restrict ri = r + i * ld_r;
        if (act == 0) {
            for (int64_t j = 0; j < cols; ++j) {
                float rate = ri[j];
                float drive = gi[j] * (1.0f - rate) * rate - ei[j];  /* sigmoid_backward */
                float v = xi[j] + gamma * drive;
                xi[j] = v;
                ri[j] = sigmoid(v);
            }
        } else if (act == 1) {
            for (int64_t j = 0; j < cols; ++j) {
                float rate = ri[j];
                float drive = gi[j] * (1.0f - rate * rate) - ei[j];  /* tanh_backward */
                float v = xi[j] + gamma * drive;
                xi[j] = v;
                ri[j] = tanh_f(v);
            }
        } else {
            for (int64_t j = 0; j < cols; ++j) {
                float old = xi[j];
                float drive = (old > 0.0f ? gi[j] : 0.0f) - ei[j];  /* threshold_backward */
                float v = old + gamma * drive;
                xi[j] = v;
                ri[j] = v > 0.0f ? v : 0.0f;
            }
        }
    }
}

/* The two passes with their arguments packed in one int64 array (the pointers as integers,
 * the float arguments as the bits of a double), so that a call from Python converts one
 * argument:
 *   error:  rows, cols, x, ld_x, mu, ld_mu, out, ld_out, s (double bits), total (float *)
 *   update: rows, cols, x, ld_x, g, ld_g, e, ld_e, r, ld_r, gamma (double bits), act
 */
static float as_float(int64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return (float)d;
}

void bionn_pc_error_packed(const int64_t *a) {
    double total = pc_error(a[0], a[1], (const float *)(intptr_t)a[2], a[3],
                            (float *)(intptr_t)a[4], a[5], (float *)(intptr_t)a[6], a[7],
                            as_float(a[8]));
    *(float *)(intptr_t)a[9] = (float)total;
}

void bionn_pc_update_packed(const int64_t *a) {
    pc_update(a[0], a[1], (float *)(intptr_t)a[2], a[3], (const float *)(intptr_t)a[4], a[5],
              (const float *)(intptr_t)a[6], a[7], (float *)(intptr_t)a[8], a[9],
              as_float(a[10]), a[11]);
}

/* The activations alone, for the tests: out[k] = phi(x[k]) over n contiguous values. */
void bionn_pc_rate(int64_t n, const float *x, float *out, int64_t act) {
    for (int64_t k = 0; k < n; ++k) {
        float v = x[k];
        out[k] = act == 0 ? sigmoid(v) : act == 1 ? tanh_f(v) : (v > 0.0f ? v : 0.0f);
    }
}

/* The version of the interface above; the Python side checks it after loading. */
int64_t bionn_predictive_abi(void) { return 1; }
