"""Loading, unloading, the memory budget's LRU eviction, aliases with splits and shadows."""

import asyncio
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from dxserve.core.runtime.aliases import Alias, Route, read_aliases, write_aliases
from dxserve.core.runtime.registry import MEMORY_FACTOR, ModelRegistry
from dxserve.core.runtime.repository import ModelRepository
from dxserve.errors import InvalidInput, ModelNotFound


@pytest.fixture
def repo(tmp_path: Path, trained_repo: Path) -> ModelRepository:
    """echo-cnn versions 1-3 (copies of one trained version) and a second model."""
    source = trained_repo / "echo-cnn" / "1"
    for name, versions in (("echo-cnn", (1, 2, 3)), ("other", (1,))):
        for v in versions:
            shutil.copytree(source, tmp_path / name / str(v))
            text = (tmp_path / name / str(v) / "manifest.json").read_text()
            (tmp_path / name / str(v) / "manifest.json").write_text(
                text.replace('"version": 1,', f'"version": {v},').replace(
                    '"name": "echo-cnn"', f'"name": "{name}"'
                )
            )
    return ModelRepository(tmp_path)


def model_bytes(repo: ModelRepository) -> int:
    return int((repo.root / "echo-cnn" / "1" / "model.onnx").stat().st_size * MEMORY_FACTOR)


def test_least_recently_used_model_is_unloaded_to_fit_the_budget(repo: ModelRepository) -> None:
    async def main() -> None:
        registry = ModelRegistry(repo, memory_budget_bytes=2 * model_bytes(repo) + 1)
        await registry.load("echo-cnn", 1)
        await registry.load("echo-cnn", 2)
        await registry.get("echo-cnn", 1)  # 1 is now more recent than 2
        await registry.load("other")
        assert [(m.ref.name, m.ref.version) for m in registry.loaded()] == [
            ("echo-cnn", 1),
            ("other", 1),
        ]
        assert registry.memory_bytes <= registry.memory_budget_bytes
        assert await registry.unload("echo-cnn") == [1]
        await registry.close()

    asyncio.run(main())


def test_a_model_over_the_whole_budget_is_refused(repo: ModelRepository) -> None:
    registry = ModelRegistry(repo, memory_budget_bytes=1024)
    with pytest.raises(InvalidInput, match="memory budget"):
        asyncio.run(registry.load("echo-cnn"))


def test_select_versions_aliases_splits_and_shadows(repo: ModelRepository) -> None:
    write_aliases(
        repo.root / "echo-cnn",
        {
            "production": Alias("production", (Route(1, 90), Route(2, 10))),
            "canary": Alias("canary", (Route(3, 1),), shadow=2),
        },
    )
    assert read_aliases(repo.root / "echo-cnn")["canary"].shadow == 2

    async def main() -> None:
        registry = ModelRegistry(repo, memory_budget_bytes=1 << 30, rng=random.Random(7))
        assert (await registry.select("echo-cnn:3")).primary.ref.version == 3
        canary = await registry.select("echo-cnn:canary")
        assert canary.primary.ref.version == 3 and canary.shadow is not None
        assert canary.shadow.ref.version == 2 and canary.alias == "canary"
        picks = [(await registry.select("echo-cnn")).primary.ref.version for _ in range(400)]
        share = picks.count(2) / len(picks)
        assert 0.05 < share < 0.16 and set(picks) == {1, 2}
        assert (await registry.select("other")).primary.ref.version == 1  # no alias: latest
        with pytest.raises(ModelNotFound):
            await registry.select("echo-cnn:nope")
        with pytest.raises(ModelNotFound):
            await registry.select("missing")
        loaded = await registry.get("echo-cnn", 1)
        outputs, _, _ = await loaded.batcher.infer(np.zeros((2, 3, 128, 128), dtype=np.float32))
        assert outputs["probability"].shape == (2, 1)
        await registry.close()

    asyncio.run(main())


def test_models_that_fit_counts_the_largest_versions_the_budget_holds(
    repo: ModelRepository,
) -> None:
    need = model_bytes(repo)
    assert ModelRegistry(repo, memory_budget_bytes=2 * need + 1).models_that_fit() == 2
    assert ModelRegistry(repo, memory_budget_bytes=need // 2).models_that_fit() == 1
