"""The training augmentation: what it changes and what it keeps (models/train.py ``augment``)."""

import torch

from avfuse.models.train import augment


def _frames(b: int) -> torch.Tensor:
    """b segments of 2 frames 8x8, every pixel red 200, green 120, blue 40."""
    x = torch.empty(b, 2, 8, 8, 3, dtype=torch.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 200, 120, 40
    return x


def test_colour_orders_reorder_the_colours_of_that_share_of_segments_and_keep_their_levels():
    torch.manual_seed(0)
    b = 3000
    out, _, _ = augment(_frames(b), torch.zeros(b, 160), strong=True, colour_orders=0.5)
    order = out.float().mean(dim=(1, 2, 3)).argsort(dim=1, descending=True)  # [b, 3]: brightest channel first
    reordered = (order != torch.tensor([0, 1, 2])).any(dim=1).float().mean().item()
    # half the rows get a random order, of which 5 in 6 differ from red-green-blue
    assert abs(reordered - 0.5 * 5 / 6) < 0.04, reordered
    # a reordered segment still has three distinct levels: the channels moved, they were not mixed
    spread = out.float().mean(dim=(1, 2, 3)).sort(dim=1).values
    assert bool((spread[:, 2] - spread[:, 0] > 60).all())


def test_augment_keeps_the_colour_order_unless_asked():
    torch.manual_seed(0)
    for kw in ({"strong": False, "colour_orders": 0.5}, {"strong": True}):  # the default share is 0
        out, _, _ = augment(_frames(500), torch.zeros(500, 160), **kw)
        order = out.float().mean(dim=(1, 2, 3)).argsort(dim=1, descending=True)
        assert bool((order == torch.tensor([0, 1, 2])).all()), kw
