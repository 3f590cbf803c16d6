"""Speckle2Self's network (Li, Navab, Jiang, arXiv 2507.06828): three scale-specific
encoders and one shared decoder.

The layer list follows the authors' code (docs/speckle2self.md, "The published method"): instance norm
everywhere, explicit zero padding, no skip connections.  The stride-16 bottleneck without
skips is what keeps the reconstruction loss from learning the identity.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(channels_in: int, channels_out: int, stride: int = 1, act: bool = True):
    layers = [nn.ZeroPad2d(1), nn.Conv2d(channels_in, channels_out, 3, stride),
              nn.InstanceNorm2d(channels_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


def _up(channels_in: int, channels_out: int, norm: str = "instance"):
    layers = [nn.ConvTranspose2d(channels_in, channels_out, 3, 2, padding=1, output_padding=1)]
    if norm != "none":
        layers.append(nn.InstanceNorm2d(channels_out, affine=norm == "affine"))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class _Res(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), _conv(channels, channels, act=False))

    def forward(self, x):
        return x + self.body(x)  # no activation after the sum, as in the authors' code


class SpeckleEncoder(nn.Sequential):
    def __init__(self, width: int = 32, levels: int = 4):
        layers, channels = [], 1
        for level in range(levels):
            out = width * 2 ** level
            layers += [_conv(channels, out, stride=2), _Res(out)]
            channels = out
        super().__init__(*layers)


class SpeckleDecoder(nn.Sequential):
    def __init__(self, width: int = 32, levels: int = 4, output_norm: str = "instance"):
        layers = [_Res(width * 2 ** (levels - 1))]
        for level in reversed(range(1, levels)):
            layers += [_up(width * 2 ** level, width * 2 ** (level - 1)),
                       _Res(width * 2 ** (level - 1))]
        layers.append(_up(width, 1, output_norm))
        super().__init__(*layers)


class SpeckleNet(nn.Module):
    """Three unshared encoders (scales 1, 0.5, 0.25) and one shared decoder.

    ``forward(x)`` is the inference path (full-scale encoder and decoder);
    ``forward_scales`` runs every branch on its own perturbed copy.  Height and width
    must be multiples of ``multiple`` (16 for the published four levels).
    """

    def __init__(self, width: int = 32, levels: int = 4, branches: int = 3,
                 output_norm: str = "instance"):
        super().__init__()
        self.levels = levels
        self.encoders = nn.ModuleList([SpeckleEncoder(width, levels) for _ in range(branches)])
        self.decoder = SpeckleDecoder(width, levels, output_norm)

    @property
    def multiple(self) -> int:
        return 2 ** self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoders[0](x))

    def forward_scales(self, copies) -> list:
        # One decoder call over the concatenated codes: a third of the kernel launches.
        codes = torch.cat([encoder(x) for encoder, x in zip(self.encoders, copies)])
        return list(self.decoder(codes).chunk(len(copies)))
