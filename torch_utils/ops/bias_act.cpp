// bias_act plugin: argument checks and the Python binding. See bias_act.h.
#include <torch/extension.h>
#include "bias_act.h"

// out = bias_act kernel of the given order (see bias_act.h). u is the incoming gradient for
// order >= 1 and an empty tensor for order 0; b may be empty (no bias). The caller makes x's
// device current and passes its current stream (torch.cuda.current_stream().cuda_stream), so
// this file needs no CUDA headers and compiles against any torch build.
static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor u, int64_t dim, int64_t act,
                              int64_t order, double alpha, double gain, double clamp,
                              int64_t stream_handle)
{
    TORCH_CHECK(x.is_cuda(), "bias_act plugin: x must be a CUDA tensor");
    TORCH_CHECK(x.is_floating_point(), "bias_act plugin: x must be floating point");
    TORCH_CHECK(0 <= dim && dim < std::max<int64_t>(x.dim(), 1), "bias_act plugin: dim out of range");
    TORCH_CHECK(order >= 0 && order <= 2, "bias_act plugin: order must be 0, 1 or 2");
    TORCH_CHECK(act >= 1 && act <= 9, "bias_act plugin: unknown activation index");
    TORCH_CHECK(x.numel() < (int64_t(1) << 62), "bias_act plugin: x is too large");
    bool has_b = b.numel() > 0;
    if (has_b)
    {
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act plugin: b must be [x.shape[dim]]");
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type(), "bias_act plugin: b must match x's device and dtype");
    }
    if (order > 0)
    {
        TORCH_CHECK(u.sizes() == x.sizes(), "bias_act plugin: the gradient must have x's shape");
        TORCH_CHECK(u.device() == x.device() && u.scalar_type() == x.scalar_type(), "bias_act plugin: the gradient must match x's device and dtype");
    }
    torch::Tensor xc = x.contiguous();
    torch::Tensor bc = has_b ? b.contiguous() : b;
    torch::Tensor uc = order > 0 ? u.contiguous() : u;
    torch::Tensor out = torch::empty_like(xc, at::MemoryFormat::Contiguous);
    if (xc.numel() == 0)
        return out;

    BiasActParams p;
    p.x = xc.data_ptr();
    p.b = has_b ? bc.data_ptr() : nullptr;
    p.u = order > 0 ? uc.data_ptr() : nullptr;
    p.out = out.data_ptr();
    p.numel = xc.numel();
    p.size_dim = x.dim() > 0 ? x.size(dim) : 1;
    p.stride_dim = 1;
    for (int64_t i = dim + 1; i < x.dim(); i++)
        p.stride_dim *= x.size(i);
    p.act = (int)act;
    p.order = (int)order;
    p.alpha = (float)alpha;
    p.gain = (float)gain;
    p.clamp = (float)clamp;

    void* stream = reinterpret_cast<void*>(stream_handle);
    int err = 0;
    switch (x.scalar_type())
    {
    case at::kFloat:  err = bias_act_launch<float>(p, stream); break;
    case at::kDouble: err = bias_act_launch<double>(p, stream); break;
    case at::kHalf:   err = bias_act_launch<c10::Half>(p, stream); break;
    default: TORCH_CHECK(false, "bias_act plugin: dtype must be float16, float32 or float64");
    }
    TORCH_CHECK(err == 0, "bias_act plugin: kernel launch failed: ", bias_act_error_string(err));
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "bias + activation + gain + clamp, or its order-1/2 derivative times u");
}
