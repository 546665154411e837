"""The model families of a leaderboard's entrants: name → a scikit-learn estimator for a seed, one table for
classification, one for regression. Defaults are scikit-learn's except where a family is named for its
setting (`knn-25`, `tree-depth3`) and for the budget settings below (TREES, BOOSTING, MLP). Regressors learn
a standardised target, so one regularisation strength suits targets of any scale."""

from __future__ import annotations

from collections.abc import Callable

from sklearn.compose import TransformedTargetRegressor
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

Factory = Callable[[int], object]
TREES = 50
# The whole dev suite prepares in about a minute on two cores: boosting takes 50 rounds at twice the default rate
# (a 10-class problem grows 10 trees a round), the MLP is fitted by L-BFGS, quick on a few hundred rows.
BOOSTING = {"max_iter": 50, "learning_rate": 0.2}
MLP = {"hidden_layer_sizes": (64,), "solver": "lbfgs", "max_iter": 300}


def _scaled(model: object) -> object:
    return make_pipeline(StandardScaler(), model)


CLASSIFIERS: dict[str, Factory] = {
    "majority": lambda seed: DummyClassifier(strategy="prior"),  # the class counts as probabilities
    "naive-bayes": lambda seed: GaussianNB(),
    "logistic-c0.1": lambda seed: _scaled(LogisticRegression(C=0.1, max_iter=2000)),
    "logistic-c10": lambda seed: _scaled(LogisticRegression(C=10.0, max_iter=2000)),
    "knn-1": lambda seed: _scaled(KNeighborsClassifier(n_neighbors=1)),
    "knn-5": lambda seed: _scaled(KNeighborsClassifier(n_neighbors=5)),
    "knn-25": lambda seed: _scaled(KNeighborsClassifier(n_neighbors=25)),
    "tree-depth3": lambda seed: DecisionTreeClassifier(max_depth=3, random_state=seed),
    "tree": lambda seed: DecisionTreeClassifier(random_state=seed),
    "random-forest": lambda seed: RandomForestClassifier(n_estimators=TREES, random_state=seed),
    "extra-trees": lambda seed: ExtraTreesClassifier(n_estimators=TREES, random_state=seed),
    "hist-gradient-boosting": lambda seed: HistGradientBoostingClassifier(**BOOSTING, random_state=seed),
    "svm-rbf": lambda seed: _scaled(SVC(probability=True, random_state=seed)),
    "mlp": lambda seed: _scaled(MLPClassifier(**MLP, random_state=seed)),
}


def _standardised(model: object) -> object:
    return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())


REGRESSORS: dict[str, Factory] = {
    "mean": lambda seed: DummyRegressor(),
    "linear": lambda seed: LinearRegression(),
    "ridge-1": lambda seed: _standardised(_scaled(Ridge(alpha=1.0))),
    "ridge-100": lambda seed: _standardised(_scaled(Ridge(alpha=100.0))),
    "lasso-0.05": lambda seed: _standardised(_scaled(Lasso(alpha=0.05))),
    "knn-5": lambda seed: _standardised(_scaled(KNeighborsRegressor(n_neighbors=5))),
    "knn-25": lambda seed: _standardised(_scaled(KNeighborsRegressor(n_neighbors=25))),
    "tree-depth3": lambda seed: DecisionTreeRegressor(max_depth=3, random_state=seed),
    "tree": lambda seed: DecisionTreeRegressor(random_state=seed),
    "random-forest": lambda seed: RandomForestRegressor(n_estimators=TREES, random_state=seed),
    "extra-trees": lambda seed: ExtraTreesRegressor(n_estimators=TREES, random_state=seed),
    "hist-gradient-boosting": lambda seed: HistGradientBoostingRegressor(**BOOSTING, random_state=seed),
    "gradient-boosting": lambda seed: GradientBoostingRegressor(random_state=seed),
    "svr-rbf": lambda seed: _standardised(_scaled(SVR())),
    "mlp": lambda seed: _standardised(_scaled(MLPRegressor(**MLP, random_state=seed))),
}

BASELINES = {"majority", "mean"}  # they ignore the features: one entrant per training fraction, not per subset
STOCHASTIC = ("random-forest", "extra-trees", "hist-gradient-boosting", "mlp")  # extra seeds on the full data
