"""Fine-tuning recipes practitioners use: Auto-RGN, LP-FT and layer-wise lr decay.

Each is one run (LP-FT: two) over every parameter, named after the recipe,
so that it is a baseline of its own and a candidate of flex's
(``candidates=``), and a refit trains it again the same way.
"""

from torch import nn

from .._checks import real
from .._training import seed_for
from .._training._scores import tensor_relative_gradient_norms
from ._option import Option
from ._outcome import Outcome

__all__ = ["auto_rgn", "lp_ft", "llrd", "RECIPES", "LAYER_DECAY", "rgn_scales",
           "layer_decay_scales", "fine_tune_from_probe", "one_run", "two_runs"]

#: Minibatches Auto-RGN's relative gradient norms are averaged over, before every epoch.
RGN_BATCHES = 5
#: The learning rate of LP-FT's second stage (fine-tuning everything from the linear
#: probe), as a factor of ``lr``. Measured with benchmarks/cost.py (conv4 and conv7;
#: blur, rotation, noise, invert; 2, 10 and 40 images per class; seed 0): 1.0 returned
#: 0.9072 mean test accuracy and the best of the two in 21 of 24 scenarios, 0.1 returned
#: 0.8940 (7 of 24).
LP_FT_LR_FACTOR = 1.0

#: ``layer_decay``'s default, measured on the grid above: 0.65, 0.75 and 0.85 returned
#: 0.9094, 0.9123 and 0.9110 mean test accuracy (within noise of each other; 0.75 is
#: also the value most often used with timm).
LAYER_DECAY = Option("layer_decay", 0.75, (real(0, 1, "right"),), "float",
                     '``"llrd"``: the learning rate of a unit is ``lr * layer_decay ** d``, '
                     "``d`` the number of units above it (timm's ``layer_decay``).")


class _RelativeGradientNorms:
    """Auto-RGN's learning-rate factors, asked before every epoch of its run."""

    def __call__(self, ctx, module, epoch):
        names = [name for name, _ in module.named_parameters()
                 if name not in _batchnorm_parameters(module)]
        ratios = tensor_relative_gradient_norms(ctx, module, names, RGN_BATCHES,
                                                seed_for(ctx.base_seed, ("auto-rgn", epoch)))
        top = max(ratios.values(), default=0.0) or 1.0
        scales = dict.fromkeys((name for name, _ in module.named_parameters()), 0.0)
        scales.update({name: ratio / top for name, ratio in ratios.items()})
        return scales


#: Auto-RGN's factors (a module-level object, so that runs pickle).
rgn_scales = _RelativeGradientNorms()


def _batchnorm_parameters(module):
    return {f"{prefix}.{name}" if prefix else name
            for prefix, layer in module.named_modules()
            if isinstance(layer, nn.modules.batchnorm._NormBase)
            for name, _ in layer.named_parameters(recurse=False)}


def auto_rgn(ctx):
    """Auto-RGN (Lee et al., "Surgical fine-tuning improves adaptation to distribution
    shifts", ICLR 2023; the authors' ``main.py``, ``get_lr_weights``).

    Every parameter tensor trains, with the learning rate ``lr * r / max(r)``
    where ``r = ||grad|| / ||weights||`` of the tensor, averaged over the first
    5 minibatches of a new shuffle of the training data, and computed again
    before every epoch, in training mode, with a fresh optimizer each time,
    as the authors' code does. BatchNorm's parameters do not train (the
    authors' code leaves out tensors named ``bn``), while its running
    statistics follow training mode, as theirs do.
    """
    return Outcome("auto-rgn", {"auto-rgn": ctx.tune("all", lr_scales=rgn_scales,
                                                     name="auto-rgn")})


def lp_ft(ctx):
    """LP-FT (Kumar et al., "Fine-tuning can distort pretrained features and
    underperform out-of-distribution", ICLR 2022): a linear probe, then every
    parameter fine-tuned from it.

    The first stage is the run of the last unit alone (the output layer: with
    a new head, it starts as a logistic regression on the pretrained
    features), the very run of ft-fc (1); the second tunes every parameter from
    its weights, with early stopping like every run. A refit trains both again.
    """
    head = ctx.units[-1].name
    probe = ctx.tune(head)
    return Outcome("lp-ft", {head: probe, "lp-ft": fine_tune_from_probe(ctx, probe)})


def fine_tune_from_probe(ctx, probe):
    """LP-FT's second stage: every parameter, from the linear probe's run ``probe``."""
    factor = dict.fromkeys((name for name, _ in ctx.pretrained.named_parameters()),
                           LP_FT_LR_FACTOR) if LP_FT_LR_FACTOR != 1.0 else None
    return ctx.tune("all", start=probe, lr_scales=factor, name="lp-ft")


def layer_decay_scales(ctx, layer_decay):
    """LLRD's factors: ``layer_decay ** d`` for a unit with ``d`` units above it (the
    last unit, and a new head, 1); parameters in no unit take the first unit's, as
    timm's embeddings take its lowest group's."""
    units = list(ctx.units)
    depth = {unit.name: len(units) - 1 - i for i, unit in enumerate(units)}
    scales = {}
    for name, _ in ctx.pretrained.named_parameters():
        owner = next((unit for unit in units if unit.owns(name)), None)
        if owner is not None:
            scales[name] = layer_decay ** depth[owner.name]
        elif ctx.head is not None and ctx.head.owns(name):
            scales[name] = 1.0
        else:
            scales[name] = layer_decay ** (len(units) - 1)
    return scales


def llrd(ctx, *, layer_decay=LAYER_DECAY.default):
    """Layer-wise learning-rate decay (as timm's ``create_optimizer_v2(model,
    layer_decay=...)``): every parameter trains, the last unit at ``lr`` and each
    unit below at ``layer_decay`` times the one above it (:func:`layer_decay_scales`).
    """
    return Outcome("llrd", {"llrd": ctx.tune("all", lr_scales=layer_decay_scales(
        ctx, layer_decay), name="llrd")})


def one_run(n_units, **options):
    return 1


def two_runs(n_units, **options):
    return 2


#: The recipes, by the key of their run: what flex's ``candidates`` may add.
RECIPES = {"auto-rgn": auto_rgn, "lp-ft": lp_ft, "llrd": llrd}
