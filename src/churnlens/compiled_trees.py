"""LightGBM's trees scored by a small C kernel: the same raw scores to the last bit, with about a
quarter of LightGBM's CPU time.

`CompiledTrees.from_booster(booster).raw_score(matrix)` equals
`booster.predict(matrix, raw_score=True)` bit for bit. How:

* The trees are read from LightGBM's own model text (the numbers LightGBM itself loads) into
  flat arrays, each tree padded to a complete binary tree of its depth (a leaf above the bottom
  becomes a node whose two subtrees both end in that leaf). Every row then takes exactly `depth`
  steps per tree, `node = 2 * node + 2 - (x <= threshold)`, with no branch to mispredict. The
  kernel (`compiled_trees.c`, one generic function: nothing is generated per model) walks
  blocks of 32 rows through one tree at a time, eight rows side by side (independent chains of
  loads for the CPU to overlap), and adds the leaves in tree order from 0.0, as LightGBM does,
  so each sum is LightGBM's double.
* LightGBM's rules for special values are applied once per row and feature, when a block is
  copied into the kernel's buffer, not at every node: |x| <= 1e-35 counts as 0 (LightGBM's
  `kZeroThreshold`); a NaN is 0 for a feature without missing values, else it goes to the node's
  default side (the feature's copy read by default-left nodes holds -inf for NaN, the copy read
  by default-right nodes keeps NaN, for which `x <= t` is false); a categorical split reads a
  0/1 column per distinct category set (NaN, negative and out-of-set codes go right).
* Built trees are checked against LightGBM on probe rows that put every feature on, and one ulp
  either side of, each of its thresholds, plus NaN, +-0, +-1e-35, +-inf and every category code
  (`verify`); an `accelerate`d model also compares a sample of the real rows at every call.
  Any difference, an unsupported model (multiclass, linear trees, trees deeper than
  `MAX_DEPTH`) or no C compiler means plain `booster.predict`, with a log line saying which path
  scored and why.

The kernel is built with the system C compiler (`$CC`, `cc`, `gcc` or `clang`) the first time
it is needed, in well under a second, and kept in `cache_dir()` under a name hashed from its
source, the compiler and the flags; later processes load it with ctypes in a millisecond.
`CHURNLENS_COMPILED_TREES=off` forces plain LightGBM; `CHURNLENS_SCORE_THREADS=N` sets the
threads (default: the CPUs this process may use).
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from churnlens.logs import get_logger

log = get_logger("compiled_trees")

ENV = "CHURNLENS_COMPILED_TREES"          # "off" / "0" / "false": plain LightGBM predict
THREADS_ENV = "CHURNLENS_SCORE_THREADS"
MAX_DEPTH = 12         # a complete tree of depth 12 has 4,095 nodes: deeper trees stay in LightGBM
CHUNK_ROWS = 16_384    # rows per task handed to a thread
SAMPLE_ROWS = 256      # real rows compared with LightGBM at every `accelerate`d call
PROBE_ROWS = 4_096     # synthetic rows compared with LightGBM when trees are built
KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float, compared as a double)

# What a kernel buffer column holds, from one feature of the input matrix:
COPY_NAN_ZERO = 0      # feature without missing values: NaN -> 0
COPY_NAN_LEFT = 1      # NaN -> -inf: the default-left side of a feature with NaN as missing
COPY_NAN_RIGHT = 2     # NaN stays NaN: the default-right side
ZERO_LEFT = 3          # zero (|x| <= 1e-35) or NaN -> -inf: zero-as-missing, default left
ZERO_RIGHT = 4         # zero or NaN -> NaN: zero-as-missing, default right
CATEGORY_SET = 5       # 0.0 when the integer category is in the split's set, else 1.0


class UnsupportedModel(ValueError):
    """A LightGBM model this kernel does not score (it stays with LightGBM's predict)."""


class ScoreMismatch(RuntimeError):
    """The compiled trees and LightGBM gave different raw scores (never expected)."""


@dataclass(frozen=True)
class TreeTables:
    """The trees as flat arrays (see the module docstring)."""

    n_features: int
    column_kind: np.ndarray      # per buffer column: one of the kinds above
    column_feature: np.ndarray   # per buffer column: the input feature it is copied from
    column_bits_at: np.ndarray   # per buffer column: offset of its category bitset in `bits`
    column_bits_len: np.ndarray  # per buffer column: number of 32-bit words of that bitset
    bits: np.ndarray             # category bitsets (LightGBM's layout: bit c of word c // 32)
    depth: np.ndarray            # per tree: depth of its complete tree (0: a single leaf)
    node_at: np.ndarray          # per tree: offset of its 2^depth - 1 nodes
    leaf_at: np.ndarray          # per tree: offset of its 2^depth leaves
    node_column: np.ndarray      # per node: buffer column compared
    node_threshold: np.ndarray   # per node: go left when value <= threshold
    leaves: np.ndarray           # leaf values (shrinkage included, as LightGBM stores them)

    @property
    def n_trees(self) -> int:
        return int(len(self.depth))


# -- LightGBM model text -> tables -------------------------------------------------------------
def _parse_model_text(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The header's and each tree's `key=value` lines of a LightGBM text model."""
    body = text.split("\nend of trees", 1)[0]
    parts = body.split("\nTree=")
    header = dict(line.split("=", 1) for line in parts[0].splitlines() if "=" in line)
    trees = [dict(line.split("=", 1) for line in part.splitlines()[1:] if "=" in line)
             for part in parts[1:]]
    return header, trees


def _numbers(tree: dict[str, str], key: str, dtype: Any) -> np.ndarray:
    values = tree.get(key, "").split()
    return np.array(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth, level = 0, [0]
    while level:
        depth += 1
        level = [c for n in level for c in (left[n], right[n]) if c >= 0]
    return depth


def tables_from_model_text(text: str) -> TreeTables:
    """Flat arrays of a LightGBM text model (`Booster.model_to_string()`); `UnsupportedModel`
    for what the kernel does not score."""
    header, trees = _parse_model_text(text)
    if header.get("version") != "v4":
        raise UnsupportedModel(f"LightGBM model text version {header.get('version')!r}, not v4")
    if header.get("num_class", "1") != "1" or header.get("num_tree_per_iteration", "1") != "1":
        raise UnsupportedModel("more than one tree per iteration (multiclass)")
    if "average_output" in header:
        raise UnsupportedModel("averaged output (random forest mode)")
    n_features = int(header["max_feature_idx"]) + 1
    columns: dict[tuple, int] = {}

    def column(kind: int, feature: int, words: tuple[int, ...] = ()) -> int:
        return columns.setdefault((kind, feature, words), len(columns))

    depths, nodes, leaves = [], [], []
    for number, tree in enumerate(trees):
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModel(f"tree {number} is a linear tree")
        leaf = _numbers(tree, "leaf_value", np.float64)
        if int(tree["num_leaves"]) == 1:
            depths.append(0)
            nodes.append((np.zeros(0, np.int64), np.zeros(0)))
            leaves.append(leaf[:1])
            continue
        feature = _numbers(tree, "split_feature", np.int64)
        threshold = _numbers(tree, "threshold", np.float64)
        decision = _numbers(tree, "decision_type", np.int64)
        left = _numbers(tree, "left_child", np.int64)
        right = _numbers(tree, "right_child", np.int64)
        boundaries = _numbers(tree, "cat_boundaries", np.int64)
        cat_words = _numbers(tree, "cat_threshold", np.uint32)
        depth = _tree_depth(left, right)
        if depth > MAX_DEPTH:
            raise UnsupportedModel(f"tree {number} is {depth} deep (at most {MAX_DEPTH})")
        node_column = np.zeros(2 ** depth - 1, np.int64)
        node_threshold = np.full(2 ** depth - 1, np.inf)
        tree_leaves = np.zeros(2 ** depth)
        stack = [(0, 0, 0)]  # (LightGBM node or ~leaf, slot in the complete tree, level)
        while stack:
            node, slot, level = stack.pop()
            if level == depth:
                tree_leaves[slot - (2 ** depth - 1)] = leaf[~node]
                continue
            stack += [(left[node] if node >= 0 else node, 2 * slot + 1, level + 1),
                      (right[node] if node >= 0 else node, 2 * slot + 2, level + 1)]
            if node < 0:
                continue  # a leaf above the bottom: both subtrees end in it, any test will do
            kind = decision[node]
            f, default_left, missing = int(feature[node]), (kind >> 1) & 1, (kind >> 2) & 3
            if kind & 1:  # categorical: left when the category is in the bitset
                which = int(threshold[node])
                words = tuple(int(w) for w in
                              cat_words[boundaries[which]:boundaries[which + 1]])
                node_column[slot], node_threshold[slot] = column(CATEGORY_SET, f, words), 0.5
                continue
            if missing == 0:
                copy_kind = COPY_NAN_ZERO
            elif missing == 2:
                copy_kind = COPY_NAN_LEFT if default_left else COPY_NAN_RIGHT
            else:
                copy_kind = ZERO_LEFT if default_left else ZERO_RIGHT
            node_column[slot], node_threshold[slot] = column(copy_kind, f), threshold[node]
        depths.append(depth)
        nodes.append((node_column, node_threshold))
        leaves.append(tree_leaves)
    if not trees:
        raise UnsupportedModel("no trees")
    if not columns:
        column(COPY_NAN_ZERO, 0)
    keys = sorted(columns, key=columns.__getitem__)
    lengths = np.array([len(k[2]) for k in keys], np.int64)
    words = [w for k in keys for w in k[2]]
    depth = np.array(depths, np.int64)
    return TreeTables(
        n_features=n_features,
        column_kind=np.array([k[0] for k in keys], np.int64),
        column_feature=np.array([k[1] for k in keys], np.int64),
        column_bits_at=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        column_bits_len=lengths,
        bits=np.array(words or [0], np.uint32),
        depth=depth,
        node_at=np.concatenate([[0], np.cumsum(2 ** depth - 1)[:-1]]).astype(np.int64),
        leaf_at=np.concatenate([[0], np.cumsum(2 ** depth)[:-1]]).astype(np.int64),
        node_column=np.concatenate([n[0] for n in nodes]).astype(np.int64),
        node_threshold=np.concatenate([n[1] for n in nodes]).astype(np.float64),
        leaves=np.concatenate(leaves).astype(np.float64))


# -- the kernel: compiled_trees.c, built once per machine -------------------------------------
KERNEL_SOURCE = Path(__file__).with_suffix(".c")
CACHE_ENV = "CHURNLENS_CACHE_DIR"    # where the built kernel is kept (default ~/.cache/churnlens)
CFLAGS = ("-O2", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")
_I64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_F64 = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
_U32 = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
_kernel_lock = threading.Lock()
_kernel: Any = None


class KernelUnavailable(RuntimeError):
    """No C compiler, or the kernel did not build or load (LightGBM predict is used)."""


def compiler() -> str | None:
    """`$CC`, else `cc`, `gcc` or `clang` on the PATH."""
    found = os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    return shutil.which(found) if found else None


def cache_dir() -> Path:
    """`$CHURNLENS_CACHE_DIR`, else `$XDG_CACHE_HOME/churnlens`, else `~/.cache/churnlens`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "churnlens"


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError):
        return cc


def build_kernel(folder: Path | None = None) -> Path:
    """The kernel's shared library in `folder` (default `cache_dir()`), compiled unless a
    library of the same source, compiler and flags is there; `KernelUnavailable` otherwise."""
    cc = compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler (cc, gcc or clang; or $CC) on the PATH")
    source = KERNEL_SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, _compiler_id(cc).encode(), " ".join(CFLAGS).encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    folder = cache_dir() if folder is None else Path(folder)
    library = folder / f"compiled_trees-{key}.so"
    if library.is_file():
        return library
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            built = Path(tmp) / library.name
            done = subprocess.run([cc, *CFLAGS, "-o", str(built), str(KERNEL_SOURCE), "-lm"],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                first = (done.stderr.strip().splitlines() or ["no message"])[0]
                raise KernelUnavailable(f"{Path(cc).name} failed to build the kernel: {first}")
            os.replace(built, library)  # atomic: a process building at the same time is harmless
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(f"could not build the kernel in {folder}: {err}") from None
    return library


def kernel() -> Any:
    """The kernel's C function (built or found in the cache, loaded once per process)."""
    global _kernel
    with _kernel_lock:
        if _kernel is None:
            try:
                function = ctypes.CDLL(str(build_kernel())).churnlens_score_rows
            except OSError as err:
                raise KernelUnavailable(f"could not load the kernel: {err}") from None
            function.restype = ctypes.c_int
            function.argtypes = [_F64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                 ctypes.c_int64, ctypes.c_int64, _I64, _I64, _I64, _I64, _U32,
                                 ctypes.c_int64, _I64, _I64, _I64, _I64, _F64, _F64, _F64]
            _kernel = function
        return _kernel


def score_threads() -> int:
    """`CHURNLENS_SCORE_THREADS`, else the CPUs this process may run on."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class CompiledTrees:
    """`raw_score(matrix)`: LightGBM's raw scores from `TreeTables` by the compiled kernel."""

    def __init__(self, tables: TreeTables) -> None:
        self.tables = tables
        self._kernel = kernel()

    @classmethod
    def from_booster(cls, booster: Any) -> CompiledTrees:
        """The trees `booster.predict` uses by default (its best iteration, else all)."""
        return cls(tables_from_model_text(booster.model_to_string()))

    @property
    def n_trees(self) -> int:
        return self.tables.n_trees

    def raw_score(self, matrix: np.ndarray, threads: int | None = None) -> np.ndarray:
        """`booster.predict(matrix, raw_score=True)`, bit for bit (float64 rows x features)."""
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.tables.n_features:
            raise ValueError(f"expected a 2-D matrix with {self.tables.n_features} columns, "
                             f"got shape {x.shape}")
        n = x.shape[0]
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        if x.flags.c_contiguous:
            flat, row_step, col_step = x.ravel(order="C"), x.shape[1], 1
        else:
            x = np.asfortranarray(x)
            flat, row_step, col_step = x.ravel(order="F"), 1, n
        t = self.tables
        columns = (len(t.column_kind), t.column_kind, t.column_feature, t.column_bits_at,
                   t.column_bits_len, t.bits)
        trees = (t.n_trees, t.depth, t.node_at, t.leaf_at, t.node_column, t.node_threshold,
                 t.leaves)

        def run(start: int) -> None:
            if self._kernel(flat, row_step, col_step, start, min(start + CHUNK_ROWS, n),
                            *columns, *trees, out) != 0:
                raise MemoryError("the compiled-trees kernel could not allocate its buffer")

        threads = score_threads() if threads is None else max(1, int(threads))
        starts = range(0, n, CHUNK_ROWS)
        if threads == 1 or len(starts) == 1:
            for start in starts:
                run(start)
        else:  # the kernel releases the GIL; chunks are taken in turn by whichever thread is free
            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(run, starts))
        return out


# -- checks against LightGBM --------------------------------------------------------------------
def probe_matrix(tables: TreeTables, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that put each feature on one of its thresholds or one ulp either side, on a
    category code, or on a special value (NaN, +-0, +-1e-35, +-inf, ...)."""
    rng = np.random.default_rng(seed)
    specials = np.array([np.nan, 0.0, -0.0, 1e-36, -1e-36, KZERO, -KZERO,
                         np.nextafter(KZERO, 1.0), -np.nextafter(KZERO, 1.0), np.inf, -np.inf,
                         -0.5, -1.0, -2.0, 0.5, 1.0, 1e10, 3e9])
    by_feature: list[list[float]] = [[] for _ in range(tables.n_features)]
    used = tables.node_column  # thresholds of every real node, by the feature of its column
    for c, feature in enumerate(tables.column_feature):
        if tables.column_kind[c] == CATEGORY_SET:
            by_feature[feature] += [float(v) for v in range(32 * int(tables.column_bits_len[c]))]
        else:
            values = tables.node_threshold[(used == c) & np.isfinite(tables.node_threshold)]
            by_feature[feature] += values.tolist()
    out = np.empty((rows, tables.n_features))
    for f, values in enumerate(by_feature):
        base = np.array(values or [0.0])
        pick = rng.choice(base, rows)
        mode = rng.integers(0, 4, rows)
        out[:, f] = np.select([mode == 0, mode == 1, mode == 2],
                              [pick, np.nextafter(pick, np.inf), np.nextafter(pick, -np.inf)],
                              rng.choice(specials, rows))
    return out


def differences(compiled: CompiledTrees, booster: Any, matrix: np.ndarray) -> int:
    """How many rows of `matrix` get a raw score from `compiled` that is not LightGBM's, to
    the bit."""
    ours = compiled.raw_score(matrix, threads=1)
    theirs = np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64)
    return int(np.count_nonzero(ours.view(np.int64) != theirs.view(np.int64)))


def verify(compiled: CompiledTrees, booster: Any, rows: int = PROBE_ROWS) -> None:
    """`ScoreMismatch` unless the compiled trees give LightGBM's raw scores on probe rows."""
    bad = differences(compiled, booster, probe_matrix(compiled.tables, rows))
    if bad:
        raise ScoreMismatch(f"{bad} of {rows} probe rows differ from LightGBM")


# -- scoring a churn model with them ------------------------------------------------------------
_cache_lock = threading.Lock()
_cache: dict[str, CompiledTrees | str] = {}   # model text SHA-256 -> trees, or why not


def disabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("0", "off", "false", "no")


def _model_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def compiled_for(booster: Any) -> tuple[CompiledTrees | None, str]:
    """(compiled trees, how) or (None, why not) for a LightGBM booster; built and verified once
    per process and model (by the SHA-256 of its text)."""
    if disabled():
        return None, f"{ENV}=off"
    text = booster.model_to_string()
    key = _model_key(text)
    with _cache_lock:
        found = _cache.get(key)
        if found is None:
            found = _build(booster, text)
            _cache[key] = found
    if isinstance(found, str):
        return None, found
    return found, f"{found.n_trees} trees compiled, checked against LightGBM"


def _build(booster: Any, text: str) -> CompiledTrees | str:
    try:
        compiled = CompiledTrees(tables_from_model_text(text))
        verify(compiled, booster)
        return compiled
    except UnsupportedModel as err:
        return f"model not supported by the compiled trees: {err}"
    except KernelUnavailable as err:
        return str(err)
    except Exception as err:  # ScoreMismatch, anything unexpected
        log.warning("compiled trees not used (%s: %s)", type(err).__name__, err)
        return f"compiled trees failed ({type(err).__name__}: {err})"


class _TreeScore:
    """Stands in for `ChurnClassifier.tree_score`: compiled trees on the estimator's model
    matrix, with a sample of the rows compared with the estimator's own `tree_score` at every
    call (so a change there cannot go unnoticed), or that `tree_score` itself."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.path: str | None = None   # what scored last: "compiled" or "lightgbm"
        self._compiled: CompiledTrees | None = None
        self._how: str | None = None

    def __call__(self, X) -> np.ndarray:
        if len(X) == 0:  # nothing to score: LightGBM's own answer, whatever it is
            return self._own(X)
        booster = self.estimator.booster_
        if self._how is None:
            self._compiled, self._how = compiled_for(booster)
        if self._compiled is None:
            return self._lightgbm(X)
        matrix = self.estimator.preprocessor_.matrix(X)
        score = self._compiled.raw_score(matrix)
        sample = np.unique(np.linspace(0, len(matrix) - 1, min(SAMPLE_ROWS, len(matrix)),
                                       dtype=np.int64))
        rows = X.iloc[sample] if hasattr(X, "iloc") else np.asarray(X)[sample]
        expected = np.asarray(self._own(rows), dtype=np.float64)  # whatever tree_score does
        if not np.array_equal(score[sample].view(np.int64), expected.view(np.int64)):
            log.error("compiled trees differ from LightGBM on sampled rows: scoring with "
                      "LightGBM")
            self._compiled, self._how = None, "the compiled trees differed on scored rows"
            with _cache_lock:  # and not again in this process
                _cache[_model_key(booster.model_to_string())] = self._how
            return self._lightgbm(X)
        if self.path != "compiled":
            log.info("tree scores: %s (%d threads; %d of %d rows compared: identical)",
                     self._how, score_threads(), len(sample), len(matrix))
        self.path = "compiled"
        return score

    def _lightgbm(self, X) -> np.ndarray:
        if self.path != "lightgbm":
            log.info("tree scores: LightGBM predict (%s)", self._how)
        self.path = "lightgbm"
        return self._own(X)

    def _own(self, X) -> np.ndarray:
        """The estimator's own `tree_score` (LightGBM's predict)."""
        return type(self.estimator).tree_score(self.estimator, X)


def accelerate(estimator: Any) -> Any:
    """A shallow copy of a fitted `ChurnClassifier` whose LightGBM side is scored by the
    compiled trees (lazily, on the first prediction); blend, calibration and everything else
    stay the estimator's own code. The estimator passed in is not changed."""
    if not hasattr(estimator, "preprocessor_") or not hasattr(estimator, "tree_score"):
        raise TypeError(f"{type(estimator).__name__} is not a fitted ChurnClassifier")
    fast = copy.copy(estimator)
    fast.tree_score = _TreeScore(fast)
    return fast


def accelerated_model(model: Any) -> Any:
    """A `packaging.LoadedModel` like `model` whose estimator is `accelerate`d."""
    from churnlens.packaging import LoadedModel

    return LoadedModel(accelerate(model.estimator), model.feature_columns, model.path)


def tree_score_path(estimator: Any) -> str | None:
    """"compiled" or "lightgbm": what scored an `accelerate`d estimator's trees last (None:
    not accelerated, or not called yet)."""
    scorer = vars(estimator).get("tree_score")
    return scorer.path if isinstance(scorer, _TreeScore) else None
