"""The PHI tagger: trained on phantom notes, exported to ONNX that computes what PyTorch does,
written with a manifest that records its held-out evaluation, and finding names the rules miss."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra")

from dxserve.core.runtime.onnx import OnnxModel  # noqa: E402
from dxserve.core.runtime.repository import ModelRepository  # noqa: E402
from dxserve.core.text.phi_tagger import NAME_MODEL, TaggedNames  # noqa: E402
from dxserve.core.text.token_features import FEATURES, WINDOW, featurize, per_token  # noqa: E402
from dxserve.training.phi_tagger import distractors, with_insertions  # noqa: E402


def test_tagger_version_and_its_evaluation(tagger_repo: Path) -> None:
    ref = ModelRepository(tagger_repo).resolve(NAME_MODEL)
    manifest = ref.manifest()
    manifest.verify(ref.path)
    assert manifest.modality == "text" and manifest.not_for_clinical_use
    assert manifest.inputs[0].shape == [-1, WINDOW, FEATURES]
    assert 0 < manifest.threshold < 1
    evaluation = manifest.evaluations["held_out_families"]
    assert (
        evaluation["rules_and_tagger"]["NAME"]["recall"]
        > evaluation["rules_only"]["NAME"]["recall"]
    )
    assert "TYPE_INT64" in (tagger_repo / NAME_MODEL / "config.pbtxt").read_text()


def test_tagger_finds_names_in_running_text(tagger_repo: Path) -> None:
    model = OnnxModel(ModelRepository(tagger_repo).resolve(NAME_MODEL))
    text = "Thank you for referring Maria Kowalski, whom I saw today. No chest pain."
    tagged = TaggedNames.of(text, lambda w: model.run_batches(w)["probability"])
    found = [text[a:b] for a, b in tagged.spans(model.manifest.threshold)]
    assert "Maria Kowalski" in found
    assert not any("chest" in f for f in found)
    # Any integers are valid input (a client's, over the Open Inference Protocol).
    wild = np.random.default_rng(0).integers(-5, 1 << 40, size=(2, WINDOW, FEATURES))
    assert model.run(wild)["probability"].shape == (2, WINDOW)


def test_long_notes_are_read_in_overlapping_windows() -> None:
    text = " ".join(f"word{k}" for k in range(300))
    tokens, windows = featurize(text)
    assert len(tokens) == 300 and windows.shape == (3, WINDOW, FEATURES)
    marks = np.stack([np.arange(WINDOW) + 96 * w for w in range(3)]).astype(float)
    np.testing.assert_array_equal(per_token(marks, 300), np.arange(300))  # each token's own


def test_insertions_keep_every_span_and_label_only_names() -> None:
    text = "Seen by Dr. Amy Wu today. She is well.\nPlan: rest."
    for seed in range(5):
        out, spans = with_insertions(text, [(12, 18)], np.random.default_rng(seed), 2)
        named = [out[a:b] for a, b in spans]
        assert "Amy Wu" in named and len(spans) == 3, (out, named)
        inserted = set(out.split()) - set(text.split())
        assert len(inserted) >= 4  # two names and two non-names, a word or more each
        for a, b in spans:  # what is labelled is a name Faker invented or the note's own
            assert not set(out[a:b].replace(",", " ").split()) & set(distractors())
