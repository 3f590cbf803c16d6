"""The 2-D U-Net that NS-N2N trains on one volume.

Choices where the paper is silent: no normalisation layers (batches are tiny and crops of
one volume are not i.i.d., so batch statistics are noise), LeakyReLU, nearest upsampling
followed by a convolution (no checkerboard artefacts), and a residual output
``x + g(x)`` with the last layer zero-initialised, so an untrained network is the identity:
training starts from the input rather than from a blank image, and an early stop can
never return something worse than a copy of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


class UNet2d(nn.Module):
    """Single-channel in, single-channel out; spatial size must be a multiple of 2**depth."""

    def __init__(self, width: int = 32, depth: int = 3):
        super().__init__()
        self.depth = depth
        widths = [width * 2 ** level for level in range(depth + 1)]
        self.encoders = nn.ModuleList([_block(1, widths[0])] + [
            _block(widths[level - 1], widths[level]) for level in range(1, depth + 1)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          nn.Conv2d(widths[level + 1], widths[level], 3, padding=1))
            for level in range(depth)])
        self.decoders = nn.ModuleList([_block(2 * widths[level], widths[level])
                                       for level in range(depth)])
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for level, encoder in enumerate(self.encoders):
            h = encoder(h)
            if level < self.depth:
                skips.append(h)
                h = self.pool(h)
        for level in reversed(range(self.depth)):
            h = self._decode(level, self.up[level](h), skips[level])
        return x + self.head(h).to(x.dtype)

    def _decode(self, level: int, upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The decoder block on ``[upsampled, skip]`` without concatenating them.

        Its first convolution is applied to each half with that half of its weight and the
        two are summed: the same function, but the backward of ``torch.cat`` hands channel
        slices of a channels-last gradient to the convolutions, which oneDNN must reorder;
        a bf16 training step was 8 % faster without it (2-core AMD EPYC, median of 8).
        """
        first, *rest = self.decoders[level]
        channels = upsampled.shape[1]
        h = (F.conv2d(upsampled, first.weight[:, :channels], None, padding=first.padding)
             + F.conv2d(skip, first.weight[:, channels:], first.bias, padding=first.padding))
        for layer in rest:
            h = layer(h)
        return h


# --- Speckle2Self (Li, Navab, Jiang, arXiv 2507.06828) ------------------------------------
# The layer list follows the authors' code (shared/research/speckle2self.md section 1.4):
# instance norm everywhere, explicit zero padding, no skip connections.  The stride-16
# bottleneck without skips is what keeps the reconstruction loss from learning the identity.

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
