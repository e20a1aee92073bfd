"""The featurisation speedups (gateway/agents/sparse_speedups.py) give Rasa's own features and tensors; with
them and the direct call of traced predictions (direct_predict.py), DIET/TED models answer as in Rasa."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse

from gateway.agents import sparse_speedups
from gateway.settings import ROOT
from tests.support import run_script


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    sparse_speedups.install()
    sparse_speedups.install()  # idempotent


def _same_coo(ours: Any, theirs: Any) -> None:
    assert type(ours) is type(theirs) is scipy.sparse.coo_matrix
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    assert ours.row.dtype == theirs.row.dtype and ours.col.dtype == theirs.col.dtype
    assert np.array_equal(ours.data, theirs.data)
    assert np.array_equal(ours.row, theirs.row) and np.array_equal(ours.col, theirs.col)


def _random_coo(rng: np.random.Generator, rows: int, cols: int, nnz: int, dtype: Any) -> Any:
    # Duplicates and explicit zeros are kept as stored, as in a matrix built from (data, (row, col)).
    data = rng.integers(-3, 4, nnz).astype(dtype)
    return scipy.sparse.coo_matrix(
        (data, (rng.integers(0, rows, nnz), rng.integers(0, cols, nnz))), shape=(rows, cols)
    )


@pytest.mark.parametrize(
    ("left_dtype", "right_dtype"),
    [(np.float32, np.float32), (np.float64, np.float32), (np.int64, np.float32), (np.float32, np.bool_)],
)
def test_joining_two_coo_matrices_lays_them_out_as_scipy_hstack(left_dtype: Any, right_dtype: Any) -> None:
    rng = np.random.default_rng(1)
    for rows, left_cols, right_cols, left_nnz, right_nnz in [
        (1, 5, 7, 3, 2),
        (4, 300, 9, 40, 0),
        (3, 1, 1, 0, 0),
    ]:
        left = _random_coo(rng, rows, left_cols, left_nnz, left_dtype)
        right = _random_coo(rng, rows, right_cols, right_nnz, right_dtype)
        _same_coo(sparse_speedups.hstack_pair(left, right), scipy.sparse.hstack([left, right]))


def test_joining_other_formats_falls_back_to_scipy() -> None:
    left = scipy.sparse.csr_matrix(np.eye(3, dtype=np.float32))
    right = scipy.sparse.coo_matrix(np.ones((3, 2), dtype=np.float32))
    joined = sparse_speedups.hstack_pair(left, right)
    assert np.array_equal(joined.toarray(), scipy.sparse.hstack([left, right]).toarray())


def test_combining_features_of_different_lengths_is_refused_in_rasas_words() -> None:
    from rasa.shared.nlu.training_data.features import Features

    one = Features(scipy.sparse.coo_matrix(np.ones((2, 3))), "sequence", "text", "a")
    other = Features(scipy.sparse.coo_matrix(np.ones((4, 3))), "sequence", "text", "b")
    with pytest.raises(ValueError, match="sequence dimensions do not match: 2 != 4"):
        one.combine_with_features(other)
    before = one.features
    one.combine_with_features(Features(scipy.sparse.coo_matrix(np.ones((2, 1))), "sequence", "text", "b"))
    assert one.features is not before and one.features.shape == (2, 4)


def _feature_array(values: list[Any], dimensions: int) -> Any:
    from rasa.utils.tensorflow.model_data import FeatureArray

    holder = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        holder[index] = value
    return FeatureArray(holder, number_of_dimensions=dimensions)


def _same_values(ours: list[Any], theirs: list[Any]) -> None:
    assert len(ours) == len(theirs) == 3
    for mine, rasa in zip(ours, theirs, strict=True):
        assert mine.dtype == rasa.dtype and mine.shape == rasa.shape
        assert np.array_equal(mine, rasa)


def test_sparse_batches_become_rasas_indices_values_and_shape() -> None:
    from rasa.utils.tensorflow.data_generator import RasaDataGenerator

    rng = np.random.default_rng(2)
    messages = [_random_coo(rng, length, 50, 2 * length, np.float32) for length in (1, 4, 2, 7)]
    three = _feature_array(messages, 3)
    _same_values(
        RasaDataGenerator._scipy_matrix_to_values(three),
        sparse_speedups.RASA["scipy_matrix_to_values"](three),
    )
    # Dialogues of states; states with no features are "fake" (zero rows) and left out of the tensors.
    fake = scipy.sparse.coo_matrix((0, 50), dtype=np.float32)
    dialogues = [
        _feature_array([messages[0], fake, messages[1]], 3),
        _feature_array([fake, fake], 3),
        _feature_array([messages[2], messages[3]], 3),
    ]
    four = _feature_array(dialogues, 4)
    _same_values(
        RasaDataGenerator._scipy_matrix_to_values(four),
        sparse_speedups.RASA["4d_scipy_matrix_to_values"](four),
    )
    # Other sparse formats are converted to COO first.
    for csr in (
        _feature_array([m.tocsr() for m in messages], 3),
        _feature_array([_feature_array([m.tocsr() for m in messages], 3)], 4),
    ):
        rasa = sparse_speedups.RASA[
            ("4d_" if csr.number_of_dimensions == 4 else "") + "scipy_matrix_to_values"
        ]
        _same_values(RasaDataGenerator._scipy_matrix_to_values(csr), rasa(csr))
    nothing = _feature_array([_feature_array([fake], 3)], 4)
    _same_values(
        RasaDataGenerator._scipy_matrix_to_values(nothing),
        sparse_speedups.RASA["4d_scipy_matrix_to_values"](nothing),
    )


def _en_featurizer() -> Any:
    from rasa.core.featurizers.single_state_featurizer import SingleStateFeaturizer
    from rasa.shared.core.domain import Domain

    featurizer = SingleStateFeaturizer()
    featurizer.prepare_for_training(Domain.load(str(ROOT / "bots" / "en" / "domain.yml")))
    return featurizer


def test_state_features_are_rasas_and_reused_per_state() -> None:
    featurizer = _en_featurizer()
    original = sparse_speedups.RASA["create_features"]
    states: list[tuple[dict[str, Any], str]] = [
        ({"intent": "greet"}, "intent"),
        ({"action_name": "utter_greet"}, "action_name"),
        ({"action_name": "action_listen"}, "action_name"),
        ({"intent": "inform", "entities": ("people",)}, "entities"),
        ({"people": (1.0,)}, "slots"),
        ({"name": "booking_form"}, "active_loop"),
        ({"intent": "not_in_the_domain"}, "intent"),
    ]
    for sub_state, attribute in states:
        expected = original(featurizer, sub_state, attribute, sparse=True)
        before = sparse_speedups.reused_state_features()
        first = featurizer._create_features(sub_state, attribute, sparse=True)
        again = featurizer._create_features(dict(sub_state), attribute, sparse=True)
        assert sparse_speedups.reused_state_features() == before + 1
        assert again is not first  # a list of its own; the features inside are shared
        for ours in (first, again):
            (feature,) = ours
            (rasa,) = expected
            _same_coo(feature.features, rasa.features)
            assert (feature.type, feature.attribute, feature.origin) == (
                rasa.type,
                rasa.attribute,
                rasa.origin,
            )
        dense = featurizer._create_features(sub_state, attribute, sparse=False)
        assert isinstance(dense[0].features, np.ndarray)
        assert np.array_equal(dense[0].features, expected[0].features.toarray())


def test_state_features_follow_a_featurizer_prepared_again() -> None:
    from rasa.shared.core.domain import Domain

    featurizer = _en_featurizer()
    first = featurizer._create_features({"intent": "greet"}, "intent", sparse=True)[0].features
    smaller = Domain.from_dict({"intents": ["bye", "greet"], "actions": ["utter_x"]})
    featurizer.prepare_for_training(smaller)
    again = featurizer._create_features({"intent": "greet"}, "intent", sparse=True)[0].features
    rasa = sparse_speedups.RASA["create_features"](featurizer, {"intent": "greet"}, "intent", sparse=True)
    _same_coo(again, rasa[0].features)
    assert first.shape != again.shape


def test_unhashable_states_get_rasas_features() -> None:
    featurizer = _en_featurizer()
    before = sparse_speedups.reused_state_features()
    for _ in range(2):
        (feature,) = featurizer._create_features({"people": [1.0]}, "slots", sparse=True)
        assert feature.features.shape[0] == 1
    assert sparse_speedups.reused_state_features() == before + 1  # a list value is turned into items


# One fresh interpreter per language set: Rasa's own Agent.load (no gateway patches) answers the bench's
# conversations and a few odd inputs; then the speedups (sparse_speedups, direct_predict) are installed and
# the same model answers them again.
_SCRIPT = """
import asyncio, json, sys, uuid
from rasa.core.agent import Agent
from bench.conversations import SCRIPTS
from gateway.agents import direct_predict, sparse_speedups

ODD = ["", "?", "4 4 4 4", "x" * 300, "hello bye help 4 people"]

def conversations(agent, lang):
    async def run():
        out = []
        for texts in ([t for t, _ in SCRIPTS[lang]], [t for t, _ in SCRIPTS[lang]][2:], ODD):
            sender = uuid.uuid4().hex
            parses = []
            for text in texts:
                p = await agent.parse_message(text)
                ranking = [(i["name"], i["confidence"]) for i in p["intent_ranking"]]
                entities = [(e["entity"], e["value"]) for e in p["entities"]]
                parses.append([p["intent"].get("name"), ranking, entities])
                await agent.handle_text(text, sender_id=sender)
            tracker = await agent.tracker_store.retrieve(sender)
            events = [e for e in tracker.events if e.type_name == "action"]
            actions = [[e.action_name, e.policy, e.confidence] for e in events]
            slots = tracker.current_slot_values()
            out.append([parses, actions, slots])
        return out
    return asyncio.run(run())

result = {}
for lang, path in zip(sys.argv[1::2], sys.argv[2::2]):
    agent = Agent.load(path)
    rasa = conversations(agent, lang)
    sparse_speedups.install()
    direct_predict.install()
    before = sparse_speedups.reused_state_features(), direct_predict.direct_calls()
    ours = conversations(agent, lang)
    result[lang] = {"same": ours == rasa, "rasa": rasa, "ours": ours,
                    "reused": sparse_speedups.reused_state_features() - before[0],
                    "direct": direct_predict.direct_calls() - before[1]}
print(json.dumps(result))
"""


@pytest.mark.slow
def test_diet_ted_answers_are_rasas_with_the_speedups(prod_model_paths: dict[str, Path]) -> None:
    args = [str(item) for lang, path in prod_model_paths.items() for item in (lang, path)]
    result = run_script(_SCRIPT, *args)
    assert set(result) == set(prod_model_paths)
    for lang, outcome in result.items():
        # Intent rankings, entities, chosen actions with their policy and confidence, slots: to the bit.
        assert outcome["same"], (lang, outcome["rasa"], outcome["ours"])
        assert outcome["reused"] > 0 and outcome["direct"] > 0, lang
        actions = [action for _, chosen, _ in outcome["ours"] for action, _, _ in chosen]
        assert "utter_greet" in actions or "utter_booked" in actions, lang
