"""Count parameters and multiply-accumulates (MACs) of a model, layer by layer.

Conventions (those of the MobileNet papers, whose "Mult-Adds" are MACs):

  MACs       multiply-accumulates of convolutions and fully connected layers only, for
             the whole input batch (N = 1 by default):
               conv / grouped conv   (C_in/groups) * K*K * C_out * H_out * W_out
               depthwise             K*K * C * H_out * W_out
               pointwise (1x1)       C_in * C_out * H * W
               fully connected       in_features * out_features
  FLOPs      2 x MACs (one multiply + one add), always printed beside them, never mixed in.
  other ops  everything else, on its own line and never inside MACs, one op per element:
             bias add and BatchNorm (in inference an affine x*scale + shift) and
             activations per output element; global average pooling per input element;
             squeeze-excitation's own pooling and scaling 2 per element of its input;
             residual add per output element.
  params     trainable parameters: conv/FC weights, biases, BatchNorm gamma/beta.
  buffers    not trained, listed apart: BatchNorm running mean/var (and the one-number
             num_batches_tracked counter per BatchNorm, as in the state dict).
  --fold-bn  counts the inference network with every BatchNorm folded into the
             convolution before it: the BN's gamma/beta and buffers disappear, the
             convolution gains a bias (C_out params, C_out*H*W bias adds). MACs unchanged.

How other counters differ (most print MACs under the name "FLOPs"):
  fvcore     FlopCountAnalysis counts one fused multiply-add as one "flop": its FLOPs are
             MACs, with BatchNorm and adaptive average pooling added into the same total
             by default; activations, residual adds and SE products are skipped.
  ptflops    get_model_complexity_info returns MACs (printed "GMac"), but adds bias,
             BatchNorm (2 per element), activations and pooling into the same total, so it
             is a little higher than the papers' Mult-Adds.
  thop       profile() returns MACs (often stored in a variable named flops); BatchNorm and
             (in some versions) bias are added into the total.
  torchinfo  its "Mult-Adds" column is params x output positions: conv (weight + bias) x
             N*H_out*W_out, so biases count one per output; layers with parameters
             (BatchNorm, Linear) add N x params; parameter-free ops count zero.
  here       MACs exactly as the papers count them; everything else apart.

The counter walks the model with shapes only (``Module.trace``: each layer's
``output_shape``, each block routing shapes as its forward routes arrays): no convolution
is run and no backward, so even EfficientNet-B7 at 600 x 600 is counted in a moment.

Usage: python -m tinymobilenet.count --alpha 0.5

The package, one concept a file (in reading order):

    walk       summary(model, input_size): the walk, and each layer's cost from its shapes
    records    LayerCount (one module's row) and Summary (the rows, totals and breakdowns)
    separable  SeparableBlock: a depthwise + 1x1 pair against one full K x K convolution,
               its MACs ratio 1/C_out + 1/K^2 checked exactly
    baseline   standard_baseline: the same network with full convolutions (Conv MobileNet)
    render     the reports: text and Markdown tables, CSV, JSON
    command    the command line (python -m tinymobilenet.count --help)
"""

from .baseline import standard_baseline
from .command import build_parser, default_resolution, main
from .records import LayerCount, Summary
from .render import (headline, render, render_baseline, render_breakdown, render_csv,
                     render_json, render_layers, render_separable)
from .separable import SeparableBlock, separable_blocks
from .walk import summary

__all__ = ["LayerCount", "Summary", "SeparableBlock", "summary", "standard_baseline",
           "separable_blocks", "default_resolution", "render", "headline",
           "render_breakdown", "render_separable", "render_layers", "render_baseline",
           "render_csv", "render_json", "build_parser", "main"]
