// upfirdn2d plugin kernel: one thread per output pixel, grid-stride loop. See upfirdn2d.h.
// Only taps that land on a real (non-inserted) input sample are visited: for an output
// coordinate the first such tap is found by modular arithmetic and the loop steps by `up`.
#include <c10/util/Half.h>
#include <cuda_runtime.h>
#include "upfirdn2d.h"

template <class T> struct OpMath { typedef float type; };
template <> struct OpMath<double> { typedef double type; };

// Floor division and non-negative modulo for possibly negative a.
__device__ __forceinline__ int floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }

template <class T>
__global__ void upfirdn2d_kernel(UpFirDn2dParams p)
{
    typedef typename OpMath<T>::type S;
    const T* x = (const T*)p.x;
    T* out = (T*)p.out;
    const int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x)
    {
        int ox = (int)(i % p.out_w);
        int oy = (int)((i / p.out_w) % p.out_h);
        int c = (int)((i / ((int64_t)p.out_w * p.out_h)) % p.c);
        int n = (int)(i / ((int64_t)p.out_w * p.out_h * p.c));
        const T* xp = x + n * p.sx_n + c * p.sx_c;

        // Upsampled coordinate of tap 0; the first tap k with (base + k) % up == 0.
        int base_y = oy * p.down_y - p.pad_y0;
        int base_x = ox * p.down_x - p.pad_x0;
        int ky0 = ((-base_y) % p.up_y + p.up_y) % p.up_y;
        int kx0 = ((-base_x) % p.up_x + p.up_x) % p.up_x;
        S acc = 0;
        for (int ky = ky0; ky < p.fh; ky += p.up_y)
        {
            int iy = floor_div(base_y + ky, p.up_y);
            if (iy < 0 || iy >= p.in_h)
                continue;
            for (int kx = kx0; kx < p.fw; kx += p.up_x)
            {
                int ix = floor_div(base_x + kx, p.up_x);
                if (ix < 0 || ix >= p.in_w)
                    continue;
                acc += (S)xp[iy * p.sx_h + ix * p.sx_w] * (S)p.f[ky * p.fw + kx];
            }
        }
        out[i] = (T)(acc * (S)p.gain);
    }
}

template <class T>
int upfirdn2d_launch(const UpFirDn2dParams& p, void* stream)
{
    int block = 256;
    int64_t total = (int64_t)p.n * p.c * p.out_h * p.out_w;
    int64_t blocks = (total + block - 1) / block;
    int grid = (int)(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
    upfirdn2d_kernel<T><<<grid, block, 0, (cudaStream_t)stream>>>(p);
    return (int)cudaGetLastError();
}

template int upfirdn2d_launch<float>(const UpFirDn2dParams& p, void* stream);
template int upfirdn2d_launch<double>(const UpFirDn2dParams& p, void* stream);
template int upfirdn2d_launch<c10::Half>(const UpFirDn2dParams& p, void* stream);

const char* upfirdn2d_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }
