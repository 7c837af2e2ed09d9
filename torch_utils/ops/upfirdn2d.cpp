// upfirdn2d plugin: argument checks and the Python binding. See upfirdn2d.h.
#include <torch/extension.h>
#include "upfirdn2d.h"

// x [N, C, H, W] CUDA; f [fh, fw] float32 on the same device (correlation taps). The caller
// makes x's device current and passes its current stream, so no CUDA headers are needed here.
static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x,
                               int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                               double gain, int64_t stream_handle)
{
    TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d plugin: x must be a 4-D CUDA tensor");
    TORCH_CHECK(f.device() == x.device() && f.dim() == 2 && f.scalar_type() == at::kFloat,
                "upfirdn2d plugin: f must be a 2-D float32 tensor on x's device");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d plugin: factors must be >= 1");
    int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1)) / down_x + 1;
    int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0)) / down_y + 1;
    TORCH_CHECK(out_w >= 1 && out_h >= 1, "upfirdn2d plugin: empty output");
    TORCH_CHECK(x.size(0) * x.size(1) * out_h * out_w < (int64_t(1) << 62), "upfirdn2d plugin: output too large");
    torch::Tensor fc = f.contiguous();
    torch::Tensor out = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
    if (out.numel() == 0)
        return out;

    UpFirDn2dParams p;
    p.x = x.data_ptr();
    p.f = fc.data_ptr<float>();
    p.out = out.data_ptr();
    p.sx_n = x.stride(0); p.sx_c = x.stride(1); p.sx_h = x.stride(2); p.sx_w = x.stride(3);
    p.n = (int)x.size(0); p.c = (int)x.size(1); p.in_h = (int)x.size(2); p.in_w = (int)x.size(3);
    p.out_h = (int)out_h; p.out_w = (int)out_w;
    p.fh = (int)f.size(0); p.fw = (int)f.size(1);
    p.up_x = (int)up_x; p.up_y = (int)up_y; p.down_x = (int)down_x; p.down_y = (int)down_y;
    p.pad_x0 = (int)pad_x0; p.pad_y0 = (int)pad_y0;
    p.gain = (float)gain;

    void* stream = reinterpret_cast<void*>(stream_handle);
    int err = 0;
    switch (x.scalar_type())
    {
    case at::kFloat:  err = upfirdn2d_launch<float>(p, stream); break;
    case at::kDouble: err = upfirdn2d_launch<double>(p, stream); break;
    case at::kHalf:   err = upfirdn2d_launch<c10::Half>(p, stream); break;
    default: TORCH_CHECK(false, "upfirdn2d plugin: dtype must be float16, float32 or float64");
    }
    TORCH_CHECK(err == 0, "upfirdn2d plugin: kernel launch failed: ", upfirdn2d_error_string(err));
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "upsample (zero insertion), pad, FIR-correlate, downsample");
}
