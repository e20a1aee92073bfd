"""Featurising a DIET/TED turn with fewer scipy calls: the same features and tensors, bit for bit.

With TensorFlow's own work batched (batching.py), a DIET/TED turn's CPU under load was mostly the Python
around it (py-spy, one worker at c=8, see docs/performance.md): a quarter of the active samples in
scipy's sparse constructors and in numpy stacking of small arrays, in three places:

- TED encodes every state of the dialogue (previous action, intent, entities, slots, active loop) as a
  one-row sparse matrix built from a dense zero vector (`coo_matrix(dense)`, ~10% of a turn). A state's
  features depend only on what is set in it and on the domain's feature indices, which are fixed once a
  model is loaded; and conversations keep reaching the same states. Each featurizer remembers the
  features it built (bounded; matrices are shared, Rasa never changes a `Features` in place without
  copying it first).
- A message's sparse features are combined with `scipy.sparse.hstack`, whose general block-matrix path
  (`bmat`) spends most of its time on bookkeeping for two blocks (~6%). Two COO matrices are joined here
  directly, exactly as `bmat` lays them out (same dtype, index dtype and order).
- Every batch turns its sparse features into (indices, values, shape) with a `vstack` per matrix and an
  `hstack` over them (~7%); here with one concatenation per column. Same arrays, same dtypes.

Each replacement falls back to Rasa's own code for inputs outside what it handles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gateway.agents.patches import install_once

logger = logging.getLogger(__name__)

# Remembered state features per featurizer: distinct (attribute, state) pairs a bot reaches. A bound
# keeps a bot with free-valued float slots from growing it for ever (it is then simply rebuilt).
MAX_REMEMBERED_STATES = 4096
_CACHE_ATTRIBUTE = "_gateway_state_features"

# Rasa's own functions, as found when the speedups were installed (what they are checked against).
RASA: dict[str, Callable[..., Any]] = {}


class _Counts:
    """How often remembered state features were reused (what the tests check was exercised)."""

    reused = 0


def reused_state_features() -> int:
    """State features served from memory since the process started."""
    return _Counts.reused


@install_once
def install() -> None:
    """Replace the three hot spots (idempotent, thread-safe)."""
    _install_state_features()
    _install_sparse_hstack()
    _install_sparse_to_values()
    logger.debug("installed the featurisation speedups")


def _install_state_features() -> None:
    from rasa.core.featurizers.single_state_featurizer import SingleStateFeaturizer

    RASA["create_features"] = original = SingleStateFeaturizer._create_features
    SingleStateFeaturizer._create_features = remembering_state_features(original)


def remembering_state_features(original: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """`SingleStateFeaturizer._create_features`, remembering its result per featurizer and state."""

    def _create_features(self: Any, sub_state: Any, attribute: str, sparse: bool = False) -> list[Any]:
        indices = self._default_feature_states.get(attribute)
        try:
            key = (
                attribute,
                bool(sparse),
                frozenset(self._state_features_for_attribute(sub_state, attribute).items()),
            )
        except (TypeError, ValueError, AttributeError):  # unhashable or unsupported: Rasa's own answer
            return original(self, sub_state, attribute, sparse)
        cache: dict[Any, tuple[Any, list[Any]]] | None = self.__dict__.get(_CACHE_ATTRIBUTE)
        if cache is None:
            cache = self.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
        hit = cache.get(key)
        # The indices dict is replaced (not edited) when a featurizer is prepared for training again.
        if hit is not None and hit[0] is indices:
            _Counts.reused += 1
            return list(hit[1])
        features = original(self, sub_state, attribute, sparse)
        if len(cache) >= MAX_REMEMBERED_STATES:
            cache.clear()
        cache[key] = (indices, list(features))
        return features

    return _create_features


def _install_sparse_hstack() -> None:
    from rasa.shared.nlu.training_data.features import Features

    RASA["combine_sparse_features"] = Features._combine_sparse_features

    def _combine_sparse_features(self: Features, additional_features: Features) -> None:
        if self.features.shape[0] != additional_features.features.shape[0]:
            raise ValueError(  # Rasa's own check and wording
                f"Cannot combine sparse features as sequence dimensions do not "
                f"match: {self.features.shape[0]} != "
                f"{additional_features.features.shape[0]}."
            )
        self.features = hstack_pair(self.features, additional_features.features)
        self._cached_fingerprint = None

    Features._combine_sparse_features = _combine_sparse_features


def hstack_pair(left: Any, right: Any) -> Any:
    """`scipy.sparse.hstack([left, right])`, without `bmat`'s general bookkeeping for two COO blocks."""
    import scipy.sparse
    from scipy.sparse._sputils import get_index_dtype, upcast

    coo = scipy.sparse.coo_matrix
    if type(left) is not coo or type(right) is not coo or left.shape[0] != right.shape[0]:
        return scipy.sparse.hstack([left, right])
    rows, width = left.shape[0], left.shape[1] + right.shape[1]
    split = left.nnz
    size = split + right.nnz
    index_dtype = get_index_dtype(maxval=max(rows, width))
    data = np.empty(size, dtype=upcast(left.dtype, right.dtype))
    row = np.empty(size, dtype=index_dtype)
    col = np.empty(size, dtype=index_dtype)
    data[:split] = left.data
    data[split:] = right.data
    row[:split] = left.row
    row[split:] = right.row
    col[:split] = left.col
    np.add(right.col, left.shape[1], out=col[split:], dtype=index_dtype)
    return coo((data, (row, col)), shape=(rows, width))


def _install_sparse_to_values() -> None:
    from rasa.utils.tensorflow.data_generator import RasaDataGenerator

    RASA["scipy_matrix_to_values"] = original_3d = RasaDataGenerator._scipy_matrix_to_values
    RASA["4d_scipy_matrix_to_values"] = original_4d = RasaDataGenerator._4d_scipy_matrix_to_values

    def _scipy_matrix_to_values(array_of_sparse: Any) -> list[Any]:
        if array_of_sparse.number_of_dimensions == 4:
            return list(RasaDataGenerator._4d_scipy_matrix_to_values(array_of_sparse))
        if len(array_of_sparse) == 0:
            return list(original_3d(array_of_sparse))
        matrices = _as_coo(array_of_sparse)
        return sparse_values(matrices, array_of_sparse[0].shape[-1])

    def _4d_scipy_matrix_to_values(feature_array: Any) -> list[Any]:
        real = RasaDataGenerator._filter_out_fake_inputs(feature_array)
        if not real:
            return list(original_4d(feature_array))
        matrices = _as_coo([matrix for dialogue in real for matrix in dialogue])
        return sparse_values(matrices, feature_array[0][0].shape[-1])

    RasaDataGenerator._scipy_matrix_to_values = staticmethod(_scipy_matrix_to_values)
    RasaDataGenerator._4d_scipy_matrix_to_values = staticmethod(_4d_scipy_matrix_to_values)


def _as_coo(matrices: Sequence[Any]) -> list[Any]:
    import scipy.sparse

    coo = scipy.sparse.coo_matrix
    return [m if isinstance(m, coo) else m.tocoo() for m in matrices]


def sparse_values(matrices: Sequence[Any], number_of_features: int) -> list[Any]:
    """(indices, values, shape) of a stack of COO matrices, as Rasa's data generator feeds TensorFlow.

    Row k of `indices` is (which matrix, row, column) of the k-th stored value, matrices in order.
    """
    counts = [len(m.row) for m in matrices]
    indices = np.empty((sum(counts), 3), dtype=np.int64)
    indices[:, 0] = np.repeat(np.arange(len(matrices), dtype=np.int64), counts)
    indices[:, 1] = np.concatenate([m.row for m in matrices])
    indices[:, 2] = np.concatenate([m.col for m in matrices])
    data = np.concatenate([m.data for m in matrices]).astype(np.float32)
    max_seq_len = max(m.shape[0] for m in matrices)
    shape = np.array((len(matrices), max_seq_len, number_of_features), dtype=np.int64)
    return [indices, data, shape]
