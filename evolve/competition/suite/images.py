"""The dev suite's image competition, laid out as MLE-bench lays out image competitions: one PNG per row under
public/train/ and public/test/, the training labels in public/train.csv (id,label)."""

from __future__ import annotations

import numpy as np

from evolve.competition.suite.classification import SKLEARN
from evolve.competition.suite.spec import Data, Spec

SCALE = 4  # 8x8 digits become 32x32 PNGs


def _digits() -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = np.rint(d.images * (255 / 16)).astype(np.uint8)  # 17 ink levels, 0..16, spread over 0..255
    # the entrants see what a PNG holds: the 64 pixel values (every SCALE-th pixel of the upscaled image)
    return Data(gray.reshape(len(gray), -1).astype(float), [f"pixel_{i}" for i in range(64)],
                d.target.astype(str), images=gray)


SPECS = [
    Spec(id="digits-images", title="Handwritten Digits (Images)", metric="accuracy", output="label", target="label",
         load=_digits, seed=808, image_scale=SCALE,
         overview="Each image is a handwritten digit, 0 to 9, scanned and reduced to an 8x8 grid of 17 grey levels, "
                  "then upscaled to a 32x32 greyscale PNG (white ink on black). Predict the digit in each test "
                  "image.",
         source="UCI Optical Recognition of Handwritten Digits (the test part, 1797 images). "
                + SKLEARN.format(loader="load_digits")),
]
