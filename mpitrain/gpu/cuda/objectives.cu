// Row terms of the linear-model objectives (pyx/objectives.pyx) on margins: for each row i,
// slope[i] = weight * df_i/dz(z_i) and loss[i] = f_i(z_i), in double.
#include "mpt_common.cuh"

extern "C" __global__ void row_terms(int kind, const double *z, const double *y, mpt_i64 n,
                                     double *slope, double *loss) {
    for (mpt_i64 i = (mpt_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (mpt_i64)blockDim.x * gridDim.x) {
        slope[i] = mpt_row_slope(kind, z[i], y[i]);
        loss[i] = mpt_row_loss(kind, z[i], y[i]);
    }
}
