"""The environment a launched run gets: an allow-list, not a deny-list.

A run executes code a model partly wrote, so it gets only what a training job needs: where programs are
(PATH), locale and time zone, the interpreter's own switches (PYTHON*), thread counts, the GPU stack's
variables (CUDA_*, NCCL_*, NVIDIA_*, ...), the Hugging Face offline switches, the EVOLVE_* and
MLFLOW_TRACKING_URI that the agent sets, and the spec's explicit `env`, which is the user's choice and
passes as given. Everything else, whatever its name, stays with the agent: a filter on names alone let
DB_PASS, SLACK_WEBHOOK_URL, SENTRY_DSN, proxy URLs with a password and *_PAT through.

HOME is a scratch directory the launcher makes for each run, so `~/.aws`, `~/.netrc`, `~/.kaggle`,
`~/.config/gcloud` (and a `.pth` a previous round planted in `~/.local`) are not reached through HOME.

`looks_secret` is a second, separate judgement, used only to decide which of the variables that runs do
not get may stay in the agent's own `os.environ` (evolve/launch/secrets.py): it never widens what a run sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Exact names a training run needs from the agent's environment.
ALLOWED_NAMES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "USER", "LOGNAME",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
    "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONNOUSERSITE", "PYTHONSAFEPATH",
    "PYTHONFAULTHANDLER", "PYTHONMALLOC", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "TOKENIZERS_PARALLELISM",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
    "MLFLOW_TRACKING_URI",
})
# Families a GPU job reads (device selection, collective settings, allocator and compiler switches).
ALLOWED_PREFIXES = ("LC_", "CUDA_", "NCCL_", "NVIDIA_", "CUBLAS_", "CUDNN_", "PYTORCH_", "TORCHINDUCTOR_",
                    "TRITON_", "EVOLVE_")
# Never handed on even though the name is allowed: the agent's own plumbing.
NEVER = frozenset({"EVOLVE_SECRETS_FD"})

_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASS", "CREDENTIAL", "AUTH", "DSN", "WEBHOOK", "COOKIE", "SESSION",
                 "PRIVATE", "SIGNATURE", "CERT")
_SECRET_PARTS = re.compile(r"(^|_)(PAT|PWD|PW|SID|JWT|OTP)($|_)")
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(r"^(sk-|ghp_|gho_|ghs_|github_pat_|glpat-|hf_|xox[abprs]-|AKIA|ASIA|eyJ)")


def allowed(name: str) -> bool:
    """True when a run may get the agent's value of `name`."""
    if name in NEVER:
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def run_env(base: Mapping[str, str], extra: Mapping[str, str], home: str) -> dict[str, str]:
    """The allow-listed part of `base`, HOME=`home`, then `extra` (the spec's env and the agent's settings)."""
    env = {name: value for name, value in base.items() if allowed(name)}
    env["HOME"] = home
    env.update(extra)
    return env


def looks_secret(name: str, value: str) -> bool:
    """A guess, by name and by value, that a variable holds a credential (see the module docstring)."""
    upper = name.upper()
    if any(word in upper for word in _SECRET_WORDS) or _SECRET_PARTS.search(upper):
        return True
    return bool(_URL_WITH_PASSWORD.search(value) or _TOKEN_SHAPES.match(value))
