/* Times the float32 encoders' phases of pyx/compress_simd.h at one SIMD level, over the same
 * 10^7 standard normal float32 entries: min of 15 calls each, process CPU time, in ms.
 *
 *     gcc -O3 -ffp-contract=off -Ipyx scripts/encoder_phases.c -o /tmp/phases -lm
 *     /tmp/phases 1      # 0 baseline, 1 AVX2, 2 AVX-512 (capped to what the CPU has)
 *
 * To compare two versions, build it once against each one's pyx/ (a git worktree of the other
 * commit: -I/path/to/worktree/pyx) and run the two binaries alternately. Before the float32
 * stream's two-piece layout (docs/performance.md) the header had no register path for natural
 * compression: that version times its buffered words plus mpt_natural32, as its encoder ran.
 */
#include "compress_simd.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define BLK 2048  /* the block of compress_round.pyx */

int main(int argc, char **argv) {
    const int64_t d = 10000000;
    const int level = argc > 1 ? atoi(argv[1]) : 2;
    float *x = malloc(4 * (size_t)d);
    uint8_t *out = malloc((size_t)d);
    static uint16_t codes[BLK];
#ifndef MPT_TAIL_WORDS
    static uint32_t r[BLK];
#endif
    srand(1);
    for (int64_t i = 0; i < d; i++) {  /* Box-Muller */
        double u1 = (rand() + 1.0) / (RAND_MAX + 2.0), u2 = rand() / (double)RAND_MAX;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    printf("SIMD level %d (asked %d)\n", mpt_simd_force(level), level);
    double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
    for (int rep = 0; rep < 15; rep++) {
        int32_t m;
        double a[4] = {0, 0, 0, 0}, t[7];
        uint32_t mx = 0, mn = 0xFFFFFFFFu;
        t[0] = now();
        mpt_absmax32((const int32_t *)x, d, &m);
        t[1] = now();
        int one_pass = mpt_ternary_enc32(x, d, 12345, 1.0f / 5.0f, out);
        t[2] = now();
        mpt_sums32(x, d & ~(int64_t)3, 0, a);
        t[3] = now();
        for (int64_t s = 0; s < d; s += BLK) {
            int64_t n = d - s < BLK ? d - s : BLK;
            mpt_sdither32r(x + s, 777, s, n, 4.0f / 3000.0f, 4, codes);
        }
        t[4] = now();
        for (int64_t s = 0; s < d; s += BLK) {
            int64_t n = d - s < BLK ? d - s : BLK;
#ifdef MPT_TAIL_WORDS
            mpt_natural32r((const uint32_t *)x + s, 777, s, n, codes, &mx, &mn);
#else
            mpt_random32_at(777, s, n, r);
            mpt_natural32((const uint32_t *)x + s, r, n, 0, codes, &mx, &mn);
#endif
        }
        t[5] = now();
        for (int64_t s = 0; s < d; s += BLK) {
            int64_t n = d - s < BLK ? d - s : BLK;
            int done;
            mpt_pack_fast(codes, n, 4, out + (s >> 1), &done);
        }
        t[6] = now();
        for (int k = 0; k < 6; k++)
            if (t[k + 1] - t[k] < best[k]) best[k] = t[k + 1] - t[k];
        if (!one_pass) best[1] = 0;  /* baseline: no one-pass ternary encoder */
    }
    printf("max pass %.2f | ternary one-pass %.2f | norm pass %.2f | standard dithering codes %.2f"
           " | natural compression codes %.2f | 4-bit packing %.2f (ms)\n",
           best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, best[3] * 1e3, best[4] * 1e3, best[5] * 1e3);
    free(x);
    free(out);
    return 0;
}
