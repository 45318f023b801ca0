"""Import torchvision (and pytorch-fid, which imports it) on any torch build.

With the CPU torch wheel and the registry's CUDA torchvision wheel, torchvision's C++ ops
do not load and ``import torchvision`` raises ``RuntimeError: operator torchvision::nms
does not exist`` (pytorch/vision#9337): its meta registrations refer to ops the failed
extension never declared. Declaring the two op schemas first lets datasets, transforms
and the model definitions import; ``ops.nms`` and ``torchvision.io`` decoding stay
unavailable, so this suite decodes images with PIL. Where torchvision imports cleanly
(GPU machines, matching wheels) nothing is declared: declaring an op that the extension
then registers again would be an error.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_fragment = None  # the Library must stay alive for its definitions to stay registered


def import_torchvision():
    """``import torchvision``, declaring the missing op schemas first if it needs them."""
    global _fragment
    try:
        # Imported here, on demand: this function exists to work around its import error.
        import torchvision
        return torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err) or _fragment is not None:
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import leaves half-initialised modules behind
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)
    import torchvision  # again, now that the schemas are declared
    return torchvision


def import_pytorch_fid_inception():
    """``pytorch_fid.inception``, after :func:`import_torchvision`."""
    import_torchvision()
    import pytorch_fid.inception  # only after torchvision's schemas are in place

    return pytorch_fid.inception
