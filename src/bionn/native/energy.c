/* The elementwise tail of one step of the layered Hopfield relaxation (the hard sigmoid), for
 * float and for double. bionn.functional.energy keeps all state layers side by side in one
 * (rows, cols) buffer; a step writes each layer's products into its columns of the next buffer,
 * then this kernel finishes it in one pass:
 *
 *     out[i][j] = clip(out[i][j] + c[i][j] + kappa[j] * s[i][j], 0, 1)
 *
 * with c the constant drive, kappa the decay factor of every column and s the present state.
 * In torch that is two passes (an addcmul and a clamp), each of whose fixed cost exceeds its
 * arithmetic at the batch sizes of the papers; the torch code computes the same thing and is
 * the fallback. Rows are strided (ld_* elements apart); columns are contiguous.
 */
#include <stdint.h>

#define TAIL(NAME, REAL)                                                                      \
    void NAME(int64_t rows, int64_t cols, REAL *out, int64_t ld_out, const REAL *c,            \
              int64_t ld_c, const REAL *s, int64_t ld_s, const REAL *kappa) {                  \
        for (int64_t i = 0; i < rows; ++i) {                                                  \
            REAL *o = out + i * ld_out;                                                       \
            const REAL *ci = c + i * ld_c;                                                    \
            const REAL *si = s + i * ld_s;                                                    \
            for (int64_t j = 0; j < cols; ++j) {                                              \
                REAL v = o[j] + ci[j] + kappa[j] * si[j];                                     \
                v = v < (REAL)0 ? (REAL)0 : v;                                                \
                o[j] = v > (REAL)1 ? (REAL)1 : v;                                             \
            }                                                                                 \
        }                                                                                     \
    }

TAIL(bionn_relax_tail_f32, float)
TAIL(bionn_relax_tail_f64, double)

/* The same with the arguments packed in one array of nine int64 (rows, cols, out, ld_out, c,
 * ld_c, s, ld_s, kappa; the pointers as integers), so that a call from Python converts one
 * argument instead of nine: the call's own cost is then a small part of the pass. */
void bionn_relax_tail_packed_f32(const int64_t *a) {
    bionn_relax_tail_f32(a[0], a[1], (float *)(intptr_t)a[2], a[3], (const float *)(intptr_t)a[4],
                         a[5], (const float *)(intptr_t)a[6], a[7],
                         (const float *)(intptr_t)a[8]);
}

void bionn_relax_tail_packed_f64(const int64_t *a) {
    bionn_relax_tail_f64(a[0], a[1], (double *)(intptr_t)a[2], a[3],
                         (const double *)(intptr_t)a[4], a[5], (const double *)(intptr_t)a[6],
                         a[7], (const double *)(intptr_t)a[8]);
}

/* The version of the interface above; the Python side checks it after loading. */
int64_t bionn_energy_abi(void) { return 2; }
