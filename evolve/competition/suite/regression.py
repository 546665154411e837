"""The dev suite's regression competitions: RMSE, RMSLE (a positive, skewed target) and MAE. Each is cut from a
dataset that another competition of the suite also uses, with a different target or split (said in `source`)."""

from __future__ import annotations

import numpy as np

from evolve.competition.suite.classification import SKLEARN
from evolve.competition.suite.spec import Data, Spec, snake

SIZE = ("radius", "perimeter", "area")  # tumour-area leaves every size column out: area would follow from them


def _diabetes() -> Data:
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    return Data(d.data.astype(float), [snake(n) for n in d.feature_names], d.target.astype(float))


def _tumour_area() -> Data:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    names = list(d.feature_names)
    keep = [i for i, n in enumerate(names) if not any(s in n for s in SIZE)]
    return Data(d.data[:, keep].astype(float), [snake(names[i]) for i in keep],
                d.data[:, names.index("worst area")].astype(float))


def _wine_alcohol() -> Data:
    from sklearn.datasets import load_wine

    d = load_wine()
    names = list(d.feature_names)
    keep = [i for i, n in enumerate(names) if n != "alcohol"]
    return Data(d.data[:, keep].astype(float), [snake(names[i]) for i in keep],
                np.asarray(d.data[:, names.index("alcohol")], dtype=float))


SPECS = [
    Spec(id="diabetes-progression", title="Diabetes Progression", metric="rmse", output="value",
         target="progression", load=_diabetes, seed=505,
         overview="Ten baseline measurements of diabetes patients (age, sex, body-mass index, blood pressure and six "
                  "blood serum measurements). Predict `progression`, a quantitative measure of the disease's "
                  "progression one year after baseline (25 to 346).",
         source="Efron et al.'s diabetes data (Least Angle Regression, 2004), 442 patients, raw (unscaled) "
                "features. " + SKLEARN.format(loader="load_diabetes") + " The competition `diabetes-grade` uses "
                "the same rows with the target binned into five grades, on a different split."),
    Spec(id="tumour-area", title="Tumour Area from Shape and Texture", metric="rmsle", output="value",
         target="worst_area", load=_tumour_area, seed=606,
         overview="Cell-nucleus measurements from digitised images of breast-mass aspirates, with every size "
                  "measurement (radius, perimeter, area) removed: texture, smoothness, compactness, concavity, "
                  "concave points, symmetry and fractal dimension remain. Predict `worst_area`, the mean of the "
                  "three largest nucleus areas (in pixels, 185 to 4254; skewed, hence a log error).",
         source="Breast Cancer Wisconsin (Diagnostic), 569 patients. " + SKLEARN.format(loader="load_breast_cancer")
                + " The competition `breast-cancer` uses the same rows for the diagnosis, on a different split."),
    Spec(id="wine-alcohol", title="Wine Alcohol Content", metric="mae", output="value", target="alcohol",
         load=_wine_alcohol, seed=707,
         overview="Twelve chemical measurements of wines from three cultivars of one Italian region (the cultivar "
                  "itself is not given). Predict each wine's `alcohol` content (% by volume, 11.0 to 14.8).",
         source="UCI Wine, 178 wines. " + SKLEARN.format(loader="load_wine") + " The competition `wine-cultivar` "
                "uses the same rows for the cultivar, on a different split."),
]
