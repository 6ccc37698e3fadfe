"""Split sizes, disjointness, nesting and determinism on the real benchmark files (shared/data)."""

import pytest

from pada.paths import data_dir
from pada.tasks import TASK_NAMES, get_task
from pada.tasks.base import fixed_subset, seeded_order

pytestmark = pytest.mark.skipif(not (data_dir() / "gsm8k").is_dir(), reason="benchmark data not available")

# (train pool, validation pool, test pool) with the local files.
POOL_SIZES = {
    "arc_challenge": (1119, 299, 1172),
    "gsm8k": (6973, 500, 1319),
    "humaneval": (474, 500, 164),
}


@pytest.fixture(scope="module")
def tasks():
    return {name: get_task(name) for name in TASK_NAMES}


@pytest.mark.parametrize("name", sorted(POOL_SIZES))
def test_pool_sizes(tasks, name):
    pools = tasks[name].pools()
    assert (len(pools.train), len(pools.validation), len(pools.test)) == POOL_SIZES[name]


def test_hellaswag_carve_covers_the_file_once(tasks):
    pools = tasks["hellaswag"].pools()
    assert len(pools.train) + len(pools.validation) + len(pools.test) == 10042
    assert 500 <= len(pools.validation) < 510 and 3000 <= len(pools.train) < 3010


def test_squad_pools(tasks):
    pools = tasks["squad"].pools()
    assert len(pools.train) + len(pools.validation) == 87599 and len(pools.test) == 10570
    assert len(pools.validation) >= 2000
    assert pools.test[0].id == "56be4db0acb8001400a502ec"
    assert all(ex.id.startswith("train-") for ex in pools.train[:100])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_pools_share_no_id(tasks, name):
    pools = tasks[name].pools()
    ids = [ex.id for pool in (pools.train, pools.validation, pools.test) for ex in pool]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name, group", [("hellaswag", "source_id"), ("squad", "title")])
def test_grouped_carves_share_no_group(tasks, name, group):
    pools = tasks[name].pools()
    train = {ex.gold[group] for ex in pools.train}
    validation = {ex.gold[group] for ex in pools.validation}
    assert not train & validation
    if name == "hellaswag":  # its test set is carved from the same file too
        test = {ex.gold[group] for ex in pools.test}
        assert not test & train and not test & validation


@pytest.mark.parametrize("name", TASK_NAMES)
def test_default_splits(tasks, name):
    splits = tasks[name].splits()
    pools = tasks[name].pools()
    assert len(splits.train) == min(1000, len(pools.train))
    assert len(splits.validation) == min(500, len(pools.validation))
    assert len(splits.test) == min(500, len(pools.test))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_nested_and_deterministic(tasks, name):
    task = tasks[name]
    ids = {size: [ex.id for ex in task.splits(train_size=size, seed=3).train] for size in (300, 600, 1000)}
    assert ids[300] == ids[600][:300] and ids[600] == ids[1000][:600]
    assert ids[1000] == [ex.id for ex in task.splits(train_size=1000, seed=3).train]
    other_seed = [ex.id for ex in task.splits(train_size=300, seed=4).train]
    assert other_seed != ids[300]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_validation_and_test_do_not_depend_on_seed(tasks, name):
    task = tasks[name]
    a, b = task.splits(seed=0), task.splits(seed=1)
    assert [ex.id for ex in a.validation] == [ex.id for ex in b.validation]
    assert [ex.id for ex in a.test] == [ex.id for ex in b.test]


def test_test_size_none_means_all(tasks):
    assert len(tasks["gsm8k"].splits(test_size=None).test) == 1319
    assert len(tasks["humaneval"].splits(test_size=None).test) == 164


def test_humaneval_test_set_is_intact_and_training_is_mbpp(tasks):
    splits = tasks["humaneval"].splits(train_size=300, seed=0)
    assert sorted(ex.id for ex in splits.test) == sorted(f"HumanEval/{i}" for i in range(164))
    train_ids = [int(ex.id.split("/")[1]) for ex in splits.train]
    assert all(601 <= i <= 974 for i in train_ids)  # the 300 setting draws only from MBPP 601-974
    validation_ids = {int(ex.id.split("/")[1]) for ex in splits.validation}
    assert validation_ids == set(range(11, 511))
    everything = [int(ex.id.split("/")[1]) for ex in tasks["humaneval"].splits(train_size=None).train]
    assert set(everything) == set(range(601, 975)) | set(range(1, 11)) | set(range(511, 601))


def test_examples_are_formatted_for_chat(tasks):
    arc = tasks["arc_challenge"].examples_by_id()["Mercury_SC_415702"]
    assert arc.prompt.endswith("Answer with the letter of the correct option.") and "\nA. dry palms" in arc.prompt
    assert arc.answer == "The answer is A." and arc.messages()[1] == {"role": "assistant", "content": arc.answer}
    gsm = tasks["gsm8k"].examples_by_id()["train-0"]
    assert gsm.answer.endswith("#### 72") and gsm.gold["number"] == "72"
    hs = tasks["hellaswag"].examples_by_id()["val-0"]
    assert hs.prompt.count("\n") >= 6 and hs.answer == "The answer is D." and "roof. He" in hs.prompt
    he = tasks["humaneval"].examples_by_id()["HumanEval/0"]
    assert he.answer.startswith("```python\n") and "def has_close_elements" in he.answer


def test_reference_answers_score_correct(tasks):
    for name in ("arc_challenge", "gsm8k", "hellaswag", "squad"):
        pools = tasks[name].pools()
        for example in pools.validation[:50] + pools.test[:50]:
            assert tasks[name].score(example, example.answer).correct, (name, example.id)


def test_fixed_subset_and_seeded_order_helpers(tasks):
    pool = tasks["arc_challenge"].pools().test
    small, large = fixed_subset(pool, 100, "k"), fixed_subset(pool, 500, "k")
    assert set(ex.id for ex in small) <= set(ex.id for ex in large)
    assert [ex.id for ex in small] == [ex.id for ex in pool if ex.id in {e.id for e in small}]  # pool order
    ordered = seeded_order(pool[:20], seed=1, preferred=5)
    assert {ex.id for ex in ordered[:5]} == {ex.id for ex in pool[:5]}
