"""The dev suite's tabular classification competitions: binary ROC-AUC, multi-class log-loss and macro-F1, and
an ordinal grade for quadratic weighted kappa. Data: the copies scikit-learn ships (`sklearn.datasets.load_*`,
never `fetch_*`, which downloads)."""

from __future__ import annotations

import numpy as np

from evolve.competition.suite.spec import Data, Spec, snake

SKLEARN = "It ships inside scikit-learn (`sklearn.datasets.{loader}()`, no download); its origin and citation are " \
          "in scikit-learn's dataset documentation."


def _breast_cancer() -> Data:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    malignant = np.where(d.target == 0, "1", "0")  # scikit-learn's class 0 is malignant
    return Data(d.data.astype(float), [snake(n) for n in d.feature_names], malignant)


def _wine() -> Data:
    from sklearn.datasets import load_wine

    d = load_wine()
    return Data(d.data.astype(float), [snake(n) for n in d.feature_names], np.asarray(d.target_names)[d.target])


def _iris_sepals() -> Data:
    from sklearn.datasets import load_iris

    d = load_iris()
    keep = [i for i, n in enumerate(d.feature_names) if n.startswith("sepal")]
    return Data(d.data[:, keep].astype(float), [snake(d.feature_names[i]) for i in keep],
                np.asarray(d.target_names)[d.target])


GRADE_EDGES = (0.2, 0.4, 0.6, 0.8)  # quantiles of the whole target: five grades of about 88 patients each


def _diabetes_grade() -> Data:
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    edges = np.quantile(d.target, GRADE_EDGES)
    grade = np.searchsorted(edges, d.target, side="right")  # 0 (mildest) .. 4
    return Data(d.data.astype(float), [snake(n) for n in d.feature_names], grade.astype(str))


SPECS = [
    Spec(id="breast-cancer", title="Breast Cancer Diagnosis", metric="roc_auc", output="probability",
         target="malignant", positive="1", load=_breast_cancer, seed=101,
         overview="Each row describes the cell nuclei in a digitised image of a fine-needle aspirate of a breast "
                  "mass: 30 measurements (mean, standard error and worst value of radius, texture, perimeter, "
                  "area, smoothness, compactness, concavity, concave points, symmetry and fractal dimension). "
                  "Predict the probability that the mass is malignant (`malignant` = 1) rather than benign.",
         source="Breast Cancer Wisconsin (Diagnostic), 569 patients. " + SKLEARN.format(loader="load_breast_cancer")
                + " The competition `tumour-area` cuts a regression task from the same rows."),
    Spec(id="wine-cultivar", title="Wine Cultivar", metric="log_loss", output="probabilities", target="cultivar",
         load=_wine, seed=202,
         overview="Thirteen chemical measurements of wines grown in the same region of Italy by three cultivars. "
                  "Predict, for each wine, the probability of each cultivar (`class_0`, `class_1`, `class_2`).",
         source="UCI Wine, 178 wines. " + SKLEARN.format(loader="load_wine")
                + " The competition `wine-alcohol` cuts a regression task from the same rows."),
    Spec(id="iris-sepals", title="Iris Species from Sepals Only", metric="macro_f1", output="label",
         target="species", load=_iris_sepals, seed=303,
         overview="Fisher's irises with the petals measured away: only sepal length and width (cm) are given. "
                  "Predict each flower's species (`setosa`, `versicolor` or `virginica`). Without the petals "
                  "versicolor and virginica overlap, so no model is perfect.",
         source="Fisher's Iris data, 150 flowers (the two petal columns left out). "
                + SKLEARN.format(loader="load_iris")),
    Spec(id="diabetes-grade", title="Diabetes Progression Grade", metric="quadratic_weighted_kappa", output="label",
         target="grade", load=_diabetes_grade, seed=404,
         overview="Ten baseline measurements of diabetes patients (age, sex, body-mass index, blood pressure and six "
                  "blood serum measurements). A year later the disease's progression was measured; here it is "
                  "given as a grade from 0 (least) to 4 (most progressed), the quintiles of all 442 patients. "
                  "Predict each patient's grade.",
         source="Efron et al.'s diabetes data (Least Angle Regression, 2004), 442 patients, raw (unscaled) "
                "features. " + SKLEARN.format(loader="load_diabetes") + " The competition `diabetes-progression` "
                "uses the same rows with the measured progression itself as the target, on a different split."),
]
