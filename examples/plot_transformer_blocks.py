"""
=====================================
The blocks of a vision transformer
=====================================

A vision transformer keeps almost all of its weights in one container of
identical blocks: ``units="auto"`` would make that container a single unit,
which leaves nothing to choose between. ``units="blocks"`` makes every block
a unit of its own. This example writes a tiny ViT in the layout of timm's
(``patch_embed``, a ``cls_token`` and a ``pos_embed`` held by the root,
``blocks``, ``norm``, ``head``), pretrains it on the clean source digits,
looks at its units with :func:`~flexsk.preview_units`, and lets
``strategy="fast"`` choose the block to fine-tune for blurred digits.
"""

# %%
# A tiny ViT
# ----------
# 16x16 digits cut into 4x4 patches: 16 tokens and a class token, of width
# 32, through three pre-norm transformer blocks.
import pickle

import matplotlib.pyplot as plt
import torch
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner, preview_units
from flexsk.datasets import (
    load_digits_source,
    make_digits_shift,
    train_val_test_split,
)

torch.set_num_threads(1)


class PatchEmbed(nn.Module):
    """Cut the image into patches and project each to a token."""

    def __init__(self, dim, patch=4, channels=1):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    """A pre-norm transformer block: attention, then an MLP, each residual."""

    def __init__(self, dim, heads=2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim=32, depth=3, n_classes=10, image_size=16, patch=4):
        super().__init__()
        n_patches = (image_size // patch) ** 2
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(
            0.02 * torch.randn(1, n_patches + 1, dim)
        )
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(len(x), -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


# %%
# Pretraining on the source digits
# --------------------------------
# A few seconds with skorch. Fine-tuning will use the same optimizer,
# learning rate and batch size (:class:`~flexsk.FlexTuner` takes them from
# the net unless ``lr`` or ``batch_size`` overrides them).
X_source, y_source = load_digits_source(split="train", return_X_y=True)
torch.manual_seed(0)
net = NeuralNetClassifier(
    TinyViT,
    criterion=nn.CrossEntropyLoss,
    optimizer=torch.optim.Adam,
    lr=3e-3,
    batch_size=64,
    max_epochs=15,
    train_split=None,
    iterator_train__shuffle=True,
    verbose=0,
)
net.fit(X_source, y_source)
X_source_test, y_source_test = load_digits_source(
    split="test", return_X_y=True
)
print(f"source test accuracy: {net.score(X_source_test, y_source_test):.3f}")

# %%
# The units
# ---------
# :func:`~flexsk.preview_units` shows how a network splits, before any fit:
# one row per unit, in the order the forward pass runs them, with its
# members and its number of parameters. With ``units="auto"`` the three
# blocks are one unit, ``blocks``:
for row in preview_units(net, X_source[:2], units="auto"):
    print(f"{row.name:<12} {row.n_parameters:>6}  {', '.join(row.members)}")

# %%
# With ``units="blocks"`` every block of the ``blocks`` container is a unit.
# The root's own parameters, ``cls_token`` and ``pos_embed``, join the first
# unit, ``patch_embed``: tuning it tunes the whole embedding.
rows = preview_units(net, X_source[:2], units="blocks")
for row in rows:
    print(f"{row.name:<12} {row.n_parameters:>6}  {', '.join(row.members)}")

# %%
# The same split by hand is a dict of named groups, whose members may be
# parameters held directly by a module, e.g.
# ``{"embed": ["patch_embed", "cls_token", "pos_embed"], ...}``.
#
# Choosing a block for blurred digits
# -----------------------------------
target = make_digits_shift("blur")
X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    target, 10, random_state=0
)
print(f"target test accuracy before tuning: {net.score(X_test, y_test):.3f}")

tuner = FlexTuner(net, units="blocks", strategy="fast", random_state=0)
tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
print(f"units: {tuner.units_}")
print(f"selected: {tuner.selected_unit_!r} in {tuner.fit_time_:.1f} s")
print(f"target test accuracy after tuning: {tuner.score(X_test, y_test):.3f}")

# %%
# ``fast`` fine-tuned every unit together once, then scored one *proxy*
# network per unit: the pretrained ViT with only that unit taken from the
# fully tuned one. The best proxy's unit was then fine-tuned on its own, from
# the pretrained weights, and kept unless tuning everything validated
# better.
fig, ax = plt.subplots(figsize=(6.5, 3.2))
names = list(tuner.proxy_scores_)
colors = [
    "tab:red" if name == tuner.selected_unit_ else "tab:gray" for name in names
]
ax.bar(names, list(tuner.proxy_scores_.values()), color=colors)
ax.set(
    ylim=(0, 1),
    ylabel="validation accuracy",
    title="proxy nets of the TinyViT's blocks (red: selected)",
)
fig.tight_layout()

# %%
# After the selection, the selected block was trained once more from the
# pretrained weights on the training and validation images together (the
# default ``refit=True``; see :ref:`selection`). Only its parameters differ
# from the pretrained network's:
pretrained = net.module_.state_dict()
tuned = tuner.net_.module_.state_dict()
changed = {
    name for name in tuned if not torch.equal(tuned[name], pretrained[name])
}
for row in rows:
    owned = [
        name
        for name in changed
        if any(name == m or name.startswith(m + ".") for m in row.members)
    ]
    print(f"{row.name:<12} {'tuned' if owned else 'pretrained'}")

# %%
# The fitted tuner pickles like any scikit-learn estimator: keep it, or send it to
# another process.
restored = pickle.loads(pickle.dumps(tuner))
print(restored, restored.selected_unit_)
