/* Random sign-concordant feedback for brSF (Liao et al. 2016), for float and for double:
 *
 *     out[i] = sign(w[i]) * u_i,    u_i uniform on [0, bound)
 *
 * in one pass, with u drawn from a counter-based stream: the splitmix64 output function applied
 * to seed + (k + 1) * 0x9E3779B97F4A7C15 for the k-th 64-bit word. A counter-based stream needs
 * no state beyond the seed, so the loop vectorises, and the same numbers come out of the torch
 * code in bionn.native.signrand (the fallback, and the oracle of the tests).
 *
 * float: word k gives two numbers, its bits 40-63 to element k and its bits 8-31 to element
 * k + n/2 (an odd last element takes the top bits of word n/2), each times bound * 2^-24.
 * double: word k gives element k, its top 53 bits times bound * 2^-53. sign(0) is 0.
 *
 * The Poisson rate code (bionn.data.spikes) takes its uniform numbers from the same stream:
 * value i of a step is the low 15 bits of the 16-bit quarter i % 4 of word word0 + i / 4, and
 * the input spikes where that number is at most its bound (ceil(2^15 p) - 1).
 */
#include <stdint.h>

#define GAMMA 0x9E3779B97F4A7C15ULL

static inline uint64_t bionn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t bionn_signrand_abi(void) { return 2; }

void bionn_sign_uniform_f32(const float *restrict w, float *restrict out, int64_t n,
                            uint64_t seed, float bound) {
    const int64_t half = n / 2;
    const float s = bound * 0x1p-24f;
    for (int64_t k = 0; k < half; ++k) {
        const uint64_t r = bionn_mix64(seed + (uint64_t)(k + 1) * GAMMA);
        const float u0 = (float)(int32_t)(r >> 40) * s;
        const float u1 = (float)(int32_t)((r >> 8) & 0xFFFFFFu) * s;
        const float a = w[k], b = w[k + half];
        out[k] = u0 * (float)((a > 0.0f) - (a < 0.0f));
        out[k + half] = u1 * (float)((b > 0.0f) - (b < 0.0f));
    }
    if (n & 1) {
        const uint64_t r = bionn_mix64(seed + (uint64_t)(half + 1) * GAMMA);
        const float a = w[n - 1];
        out[n - 1] = (float)(int32_t)(r >> 40) * s * (float)((a > 0.0f) - (a < 0.0f));
    }
}

void bionn_sign_uniform_f64(const double *restrict w, double *restrict out, int64_t n,
                            uint64_t seed, double bound) {
    const double s = bound * 0x1p-53;
    for (int64_t k = 0; k < n; ++k) {
        const uint64_t r = bionn_mix64(seed + (uint64_t)(k + 1) * GAMMA);
        const double a = w[k];
        out[k] = (double)(int64_t)(r >> 11) * s * (double)((a > 0.0) - (a < 0.0));
    }
}

#define POISSON_STEP(NAME, REAL)                                                              \
    void NAME(const int16_t *restrict bound, REAL *restrict out, int64_t n, uint64_t seed,    \
              int64_t word0) {                                                                \
        const int64_t full = n / 4;                                                           \
        for (int64_t k = 0; k < full; ++k) {                                                  \
            const uint64_t r = bionn_mix64(seed + (uint64_t)(word0 + k + 1) * GAMMA);         \
            for (int q = 0; q < 4; ++q) {                                                     \
                const int16_t u = (int16_t)((r >> (16 * q)) & 0x7FFFu);                       \
                out[4 * k + q] = (REAL)(u <= bound[4 * k + q]);                               \
            }                                                                                 \
        }                                                                                     \
        if (n > 4 * full) {                                                                   \
            const uint64_t r = bionn_mix64(seed + (uint64_t)(word0 + full + 1) * GAMMA);      \
            for (int64_t i = 4 * full; i < n; ++i) {                                          \
                const int16_t u = (int16_t)((r >> (16 * (i - 4 * full))) & 0x7FFFu);          \
                out[i] = (REAL)(u <= bound[i]);                                               \
            }                                                                                 \
        }                                                                                     \
    }

POISSON_STEP(bionn_poisson_step_f32, float)
POISSON_STEP(bionn_poisson_step_f64, double)
