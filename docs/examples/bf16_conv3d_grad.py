"""The CPU bf16 defect behind `neurofm bench train`'s rejected bf16 variant, in ten lines.

Under ``torch.autocast("cpu", torch.bfloat16)`` the weight gradient of a 3x3x3 Conv3d on a 2^3
feature map comes out wrong (relative error ~0.98, sometimes inf) through oneDNN, and right
(~0.004, bf16 rounding) through PyTorch's reference kernel. Seen with torch 2.13.0+cpu on this
project's avx512_bf16 Xeon VM; the same family as pytorch/pytorch#169688 (wrong CPU bf16 conv3d
on degenerate shapes). neurofm's trainers never autocast on the CPU, so training is unaffected;
the bench's tolerance check is what caught it (docs/performance.md).

Usage: python docs/examples/bf16_conv3d_grad.py
"""

from __future__ import annotations

import torch


def weight_grad(conv: torch.nn.Conv3d, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    conv.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = conv(x)
    y.float().square().mean().backward()
    assert conv.weight.grad is not None
    return conv.weight.grad.clone()


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(64, 64, 3, padding=1)
    x = torch.randn(2, 64, 2, 2, 2)
    ref = weight_grad(conv, x, bf16=False)
    for onednn in (True, False):
        with torch.backends.mkldnn.flags(enabled=onednn):
            errs = [float((weight_grad(conv, x, True) - ref).norm() / ref.norm()) for _ in range(3)]
        print(f"oneDNN {'on ' if onednn else 'off'}: bf16 weight-gradient relative error {errs}")


if __name__ == "__main__":
    main()
