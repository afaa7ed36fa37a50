"""The flat layout of YellowFin's per-element buffers: one float32 vector for all parameters.

Parameters follow their param-group order. Each occupies a contiguous segment holding its
elements in the parameter's own dense memory order (a channels_last weight keeps its
strides), so the eager and the fused optimizer lay out the gradient EMA and the momentum
identically and their state dicts are interchangeable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class FlatLayout:
    """Offsets, per-group spans and strided views of flat buffers for a list of param groups."""

    def __init__(self, param_groups: list[dict[str, Any]]) -> None:
        self.params: list[Tensor] = [p for group in param_groups for p in group["params"]]
        self.device = self.params[0].device
        self.offsets = [0]
        for p in self.params:
            self.offsets.append(self.offsets[-1] + p.numel())
        self.numel = self.offsets[-1]
        # Per group: the range of parameter indices and the slice of flat elements.
        self.group_params: list[range] = []
        for group in param_groups:
            start = self.group_params[-1].stop if self.group_params else 0
            self.group_params.append(range(start, start + len(group["params"])))
        self.group_spans = [self.span(indices) for indices in self.group_params]
        # empty_like keeps a dense tensor's strides and makes any other tensor contiguous.
        self._strides = [torch.empty_like(p, device="meta").stride() for p in self.params]
        contiguous = all(torch.empty_like(p, device="meta").is_contiguous() for p in self.params)
        self._concatenable = contiguous and all(p.dtype == torch.float32 for p in self.params)

    def span(self, indices: range) -> slice:
        """The flat elements of the parameters ``indices`` (consecutive)."""
        return slice(self.offsets[indices.start], self.offsets[indices.stop])

    def views(self, flat: Tensor) -> list[Tensor]:
        """Views of ``flat`` shaped and strided like each parameter's dense layout."""
        base = flat.storage_offset()
        return [
            flat.as_strided(p.shape, stride, base + offset)
            for p, stride, offset in zip(self.params, self._strides, self.offsets[:-1], strict=True)
        ]

    def gather(self, tensors: list[Tensor], out: Tensor, views: list[Tensor]) -> Tensor:
        """Copy ``tensors`` (one per parameter, shaped like it) into ``out``; ``views`` are
        ``self.views(out)``. One ``cat`` when that already gives the layout, else one copy
        per tensor that also converts dtype and memory format."""
        if self._concatenable:
            torch.cat([x.reshape(-1) for x in tensors], out=out)
        else:
            torch._foreach_copy_(views, tensors)
        return out
