"""Image grids: layout, enlargement, refusals; and the engine writing a task's images."""

import numpy as np
import pytest

from jaxdl.engine.image_grid import make_grid


def test_grid_places_each_image_and_enlarges_small_ones():
    images = np.zeros((5, 8, 8, 1), np.float32)
    images[3] = 1.0  # The fourth image is white: row 1, column 1 of a 3-column grid.
    grid = make_grid(images, columns=3, padding=2)
    cell = 32  # 8x8 images are repeated 4x up to the 32-pixel minimum.
    assert grid.shape == (2 * (cell + 2) + 2, 3 * (cell + 2) + 2, 3)
    assert grid.dtype == np.uint8
    top, left = 2 + (cell + 2), 2
    assert (grid[top : top + cell, left : left + cell] == 255).all()
    assert (grid[2 : 2 + cell, 2 : 2 + cell] == 0).all()  # The first image, black.
    assert (grid[-2:] == 255).all()  # Padding and the empty last cell are white.


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="images must be"):
        make_grid(np.zeros((4, 8, 8, 2)))
