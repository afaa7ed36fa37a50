"""The CIFAR ResNet of the paper's CIFAR10/100 runs: TensorFlow's 2016 official model.

Pre-activation units (BN -> leaky ReLU -> conv) in three stages at 32, 16 and 8 pixels,
then BN -> leaky ReLU -> global average pool -> linear. Details kept from the TF code
because they change the optimisation problem: leaky ReLU 0.1, BN epsilon 1e-3 and
moving-average decay 0.9, bias-free convs initialised N(0, 2 / (k * k * out_channels)),
a U(+-sqrt(3 / in)) linear layer, parameter-free shortcuts in basic units (average pool
+ zero channel padding) and 1x1 projections in bottleneck units.

Known differences from TF: stride-2 3x3 convs pad symmetrically (TF "SAME" pads one
pixel bottom/right only), and BN's running variance uses the unbiased batch variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class _PreActUnit(nn.Module):
    """Shared shape of both unit kinds: the shortcut of the first unit of the network
    (``activate_before_residual``) starts after the unit's BN + ReLU, the others before."""

    def __init__(self, in_channels: int, leakiness: float, bn: dict[str, float], first: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, **bn)
        self.leakiness = leakiness
        self.first = first

    def _act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.leakiness)

    def forward(self, x: Tensor) -> Tensor:
        activated = self._act(self.bn1(x))
        return self.residual(activated) + self.shortcut(activated if self.first else x)

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class BasicUnit(_PreActUnit):
    """Two 3x3 convs; a channel change is met by average pooling and zero padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        leakiness: float,
        bn: dict[str, float],
        first: bool = False,
    ) -> None:
        super().__init__(in_channels, leakiness, bn, first)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, **bn)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.stride = stride
        self.pad = out_channels - in_channels

    def residual(self, x: Tensor) -> Tensor:
        return self.conv2(self._act(self.bn2(self.conv1(x))))

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2)) if self.pad else x


class BottleneckUnit(_PreActUnit):
    """1x1 (strided) -> 3x3 -> 1x1 at a quarter of the output width; 1x1 projection shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        leakiness: float,
        bn: dict[str, float],
        first: bool = False,
    ) -> None:
        super().__init__(in_channels, leakiness, bn, first)
        width = out_channels // 4
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride, bias=False)
        self.bn2 = nn.BatchNorm2d(width, **bn)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width, **bn)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.project = (
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            if in_channels != out_channels or stride > 1
            else None
        )

    def residual(self, x: Tensor) -> Tensor:
        x = self._act(self.bn2(self.conv1(x)))
        return self.conv3(self._act(self.bn3(self.conv2(x))))

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.project is None else self.project(x)


def units_for_depth(depth: int, bottleneck: bool) -> int:
    """Units per stage of a ResNet-``depth`` (He et al. counting: 6n+2 basic, 9n+2 bottleneck)."""
    per_unit = 9 if bottleneck else 6
    if depth < per_unit + 2 or (depth - 2) % per_unit:
        examples = "11, 47, 164" if bottleneck else "8, 20, 32, 110"
        raise ValueError(
            f"depth must be of the form {per_unit}n+2 with n >= 1 for "
            f"{'bottleneck' if bottleneck else 'basic'} units (e.g. {examples}), got {depth}"
        )
    return (depth - 2) // per_unit


class CifarResNet(nn.Module):
    """``filters`` = (stem, stage 1, stage 2, stage 3) widths: 16/16/32/64 basic (CIFAR-10),
    16/64/128/256 bottleneck (CIFAR-100) in the authors' runs."""

    def __init__(
        self,
        num_classes: int,
        units_per_stage: int,
        bottleneck: bool,
        filters: Sequence[int] = (16, 16, 32, 64),
        leakiness: float = 0.1,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if units_per_stage < 1 or len(filters) != 4:
            raise ValueError("need units_per_stage >= 1 and four filter widths")
        if bottleneck and any(width % 4 for width in filters[1:]):
            raise ValueError(f"bottleneck stage widths must be multiples of 4, got {filters}")
        unit = BottleneckUnit if bottleneck else BasicUnit
        bn = {"eps": bn_eps, "momentum": bn_momentum}
        self.stem = nn.Conv2d(3, filters[0], 3, 1, 1, bias=False)
        units: list[nn.Module] = []
        for stage, stride in enumerate((1, 2, 2)):
            in_channels, out_channels = filters[stage], filters[stage + 1]
            units.append(unit(in_channels, out_channels, stride, leakiness, bn, first=stage == 0))
            units += [
                unit(out_channels, out_channels, 1, leakiness, bn)
                for _ in range(units_per_stage - 1)
            ]
        self.units = nn.Sequential(*units)
        self.final_bn = nn.BatchNorm2d(filters[3], **bn)
        self.leakiness = leakiness
        self.fc = nn.Linear(filters[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        bound = math.sqrt(3.0 / self.fc.in_features)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def decay_parameters(self) -> list[Tensor]:
        """Conv kernels and the linear weight: what the TF model's L2 term covers (not BN, bias)."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def forward(self, x: Tensor) -> Tensor:
        x = self.units(self.stem(x))
        x = F.leaky_relu(self.final_bn(x), self.leakiness)
        return self.fc(x.mean(dim=(2, 3)))
