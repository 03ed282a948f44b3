"""Train the PHI tagger on phantom notes of the training families, check it on the held-out
families with the format rules beside it, and write it as a model version (ONNX + manifest).

The phantoms' templates put names in few places; a tagger trained on them alone learns the
places ("Patient: …"), not what a name looks like, and misses a name anywhere else. So each
training note is also seen with invented names inserted at random word boundaries and line
starts, and a third of the word identities are hidden each step (the trigrams and shape stay):
what is left to learn from is the name itself and what is around it everywhere. The phantoms'
vocabulary is small, so a capitalised word it never saw would look like a name: the same
copies also get capitalised words that are not names — drug names from the drug lexicon,
words of ICD-10-CM's descriptions, common English words, section headers — inserted the same
way.
"""

import platform
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from faker import Faker

from dxserve.core.modality import TEXT
from dxserve.core.runtime.manifest import Manifest, TensorSpec, sha256_file
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.core.text.known_words import LOCALES, not_names
from dxserve.core.text.phi_rules import find_phi
from dxserve.core.text.phi_score import score
from dxserve.core.text.phi_tagger import INPUT_NAME, NAME_MODEL, OUTPUT_NAMES, TaggedNames
from dxserve.core.text.token_features import (
    FEATURES,
    NGRAM_BUCKETS,
    OVERLAP,
    SHAPE_BUCKETS,
    WINDOW,
    WORD_BUCKETS,
    featurize,
    window_starts,
)
from dxserve.models.phi_tagger import ARCHITECTURE, PhiExportHead, PhiTagger
from dxserve.phantoms.notes.generate import notes
from dxserve.training.export import export_head

INTENDED_USE = (
    "Marks person names in English clinical notes so that de-identification can replace them, "
    "beside format rules for every other identifier. Research and demonstration only."
)
NOT_FOR_CLINICAL_USE = (
    "Not for clinical use: trained and evaluated on synthetic phantom notes only; it has never "
    "seen a real note, and a missed name is a disclosed identity."
)


@dataclass(frozen=True)
class TaggerConfig:
    notes: int = 3000
    validation: int = 300
    held_out: int = 300
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-3
    inserted: int = 4  # invented names, and as many non-names, put in each note's copy
    word_dropout: float = 0.33
    positive_weight: float = 3.0
    seed: int = 0


@dataclass
class TaggerResult:
    ref: ModelRef
    threshold: float
    evaluation: dict[str, Any] = field(default_factory=dict)


Labelled = tuple[str, list[tuple[int, int]]]  # a text and its names' spans


@cache
def distractors() -> tuple[str, ...]:
    """Words that are not names (known_words), in a fixed order for seeded sampling."""
    return tuple(sorted(not_names()))


def _invented_name(fake: Faker, rng: np.random.Generator) -> str:
    given, family = fake.first_name(), fake.last_name()
    forms = [f"{given} {family}", family, given, f"{family}, {given}", f"{given[0]}. {family}",
             f"{family.upper()}, {given.upper()}", f"{family.upper()},{given.upper()}",
             family.upper()]  # fmt: skip
    return str(rng.choice(forms, p=[0.25, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05]))


def _distractor(rng: np.random.Generator) -> str:
    """One or two capitalised non-name words, or an acronym, sometimes as a heading."""
    if rng.random() < 0.3:
        letters = rng.choice(list(string.ascii_uppercase), size=int(rng.integers(2, 6)))
        return "".join(letters)
    words = distractors()
    picked = [words[int(k)] for k in rng.integers(len(words), size=int(rng.integers(1, 3)))]
    text = " ".join(w.capitalize() for w in picked)
    if rng.random() < 0.1:
        text = text.upper()
    return text + (":" if rng.random() < 0.3 else "")


def with_insertions(
    text: str, names: list[tuple[int, int]], rng: np.random.Generator, k: int
) -> Labelled:
    """``text`` with ``k`` invented names and ``k`` capitalised non-names put at random word
    boundaries and line starts (the names' spans moved and added)."""
    fake = Faker(list(LOCALES))
    fake.seed_instance(int(rng.integers(2**31)))
    boundaries = [
        i
        for i in range(1, len(text))
        if text[i - 1] in " \n" and text[i] != " " and not any(a < i < b for a, b in names)
    ]
    count = min(2 * k, len(boundaries))
    inserts = sorted(rng.choice(boundaries, size=count, replace=False).tolist())
    is_name = rng.permutation([True] * (count // 2) + [False] * (count - count // 2))
    out, spans, moved, at = [], [], 0, 0
    pending = sorted(names)
    for position, name in zip(inserts, is_name, strict=True):
        words = _invented_name(fake, rng) if name else _distractor(rng)
        out.append(text[at:position])
        while pending and pending[0][1] <= position:
            a, b = pending.pop(0)
            spans.append((a + moved, b + moved))
        if name:
            spans.append((position + moved, position + moved + len(words)))
        out.append(words + " ")
        moved += len(words) + 1
        at = position
    out.append(text[at:])
    spans.extend((a + moved, b + moved) for a, b in pending)
    return "".join(out), sorted(spans)


def windows_of(labelled: Iterable[Labelled]) -> tuple[np.ndarray, np.ndarray]:
    """Token features ``(W, WINDOW, FEATURES)`` and labels ``(W, WINDOW)`` (1 name, 0 not,
    -1 padding or a token seen better in the next window)."""
    xs, ys = [], []
    for text, names in labelled:
        spans, windows = featurize(text)
        tokens = np.array(
            [any(a < e and s < b for s, e in names) for a, b in spans], dtype=np.float32
        )
        for w, start in enumerate(window_starts(len(spans))):
            y = np.full(WINDOW, -1.0, dtype=np.float32)
            chunk = tokens[start : start + WINDOW]
            y[: len(chunk)] = chunk
            xs.append(windows[w])
            ys.append(y)
    return np.stack(xs), np.stack(ys)


def _names(note: Any) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in note.phi if s.label == "NAME"]


def fit(config: TaggerConfig, on_epoch: Callable[[int, float], None] | None = None) -> PhiTagger:
    rng = np.random.default_rng(config.seed)
    corpus: list[Labelled] = []
    for note in notes(config.notes, config.seed + 100):
        corpus.append((note.text, _names(note)))
        corpus.append(with_insertions(note.text, _names(note), rng, config.inserted))
    x_all, y_all = windows_of(corpus)
    x, y = torch.from_numpy(x_all), torch.from_numpy(y_all)
    torch.manual_seed(config.seed)
    model = PhiTagger()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    weight = torch.tensor(config.positive_weight)
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, batches = 0.0, 0
        for index in torch.randperm(len(x)).split(config.batch_size):
            batch, target = x[index].clone(), y[index]
            hidden = torch.rand(batch.shape[:2]) < config.word_dropout
            batch[:, :, 0][hidden] = 0
            mask = target >= 0
            logit = model(batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logit[mask], target[mask], pos_weight=weight
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        if on_epoch is not None:
            on_epoch(epoch, total / batches)
    return model.eval()


def choose_threshold(model: PhiTagger, config: TaggerConfig) -> float:
    """The highest threshold whose name recall, with the rules, is at least 0.99 on validation
    notes of the training families (or the best recall's), from a grid."""
    documents = list(notes(config.validation, config.seed + 200))
    tagged = [TaggedNames.of(n.text, _run_torch(model)) for n in documents]
    best, best_recall = 0.05, -1.0
    for threshold in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05):
        predicted = [
            _document(n, t.spans(threshold)) for n, t in zip(documents, tagged, strict=True)
        ]
        recall = score(predicted)["NAME"].recall or 0.0
        if recall >= 0.99:
            return threshold
        if recall > best_recall:
            best, best_recall = threshold, recall
    return best


def _run_torch(model: PhiTagger) -> Callable[[np.ndarray], np.ndarray]:
    def run(windows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(windows))).numpy()

    return run


def _document(note: Any, names: list[tuple[int, int]]) -> tuple[str, list[Any], list[Any]]:
    predicted = [(s.start, s.end, s.type) for s in find_phi(note.text)]
    predicted += [(a, b, "NAME") for a, b in names]
    return note.text, [(s.start, s.end, s.label) for s in note.phi], predicted


def evaluate(
    run: Callable[[np.ndarray], np.ndarray], threshold: float, n: int, seed: int
) -> dict[str, Any]:
    """Recall and precision by type (i2b2 token scoring) of rules + tagger on ``n`` notes of
    the held-out families, and of the rules alone."""
    with_model, rules_only = [], []
    for note in notes(n, seed, held_out=True):
        spans = TaggedNames.of(note.text, run).spans(threshold)
        with_model.append(_document(note, spans))
        rules_only.append(_document(note, []))
    result: dict[str, Any] = {
        "notes": n,
        "families": "held-out (progress note, echo report, referral e-mail)",
    }
    for label, documents in (("rules_and_tagger", with_model), ("rules_only", rules_only)):
        result[label] = {
            k: {"recall": v.recall, "precision": v.precision, "gold_tokens": v.gold}
            for k, v in score(documents).items()
        }
    return result


def train_tagger(
    repository: Path,
    config: TaggerConfig = TaggerConfig(),
    on_epoch: Callable[[int, float], None] | None = None,
) -> TaggerResult:
    """Train, choose the threshold, export, evaluate on held-out families, write the version."""
    started = time.perf_counter()
    model = fit(config, on_epoch)
    threshold = choose_threshold(model, config)
    repo = ModelRepository(repository)
    version, folder = repo.new_version_dir(NAME_MODEL)
    delta = export_head(
        PhiExportHead(model),
        (WINDOW, FEATURES),
        folder / "model.onnx",
        INPUT_NAME,
        OUTPUT_NAMES,
        sample=lambda n, g: torch.randint(0, NGRAM_BUCKETS, (n, WINDOW, FEATURES), generator=g),
    )
    evaluation = evaluate(_run_torch(model), threshold, config.held_out, config.seed + 300)
    manifest = Manifest(
        name=NAME_MODEL,
        version=version,
        architecture=ARCHITECTURE,
        parameters=sum(p.numel() for p in model.parameters()),
        inputs=[TensorSpec(INPUT_NAME, "INT64", [-1, WINDOW, FEATURES])],
        outputs=[TensorSpec(name, "FP32", [-1, WINDOW]) for name in OUTPUT_NAMES],
        preprocessing={
            "kind": "text",
            "tokens": r"\w+|[^\w\s]",
            "window": WINDOW,
            "overlap": OVERLAP,
            "features": ["word", "shape", "char trigrams"],
            "buckets": {"word": WORD_BUCKETS, "shape": SHAPE_BUCKETS, "ngram": NGRAM_BUCKETS},
            "hash": "crc32",
        },
        labels=["other", "NAME"],
        threshold=threshold,
        sha256=sha256_file(folder / "model.onnx"),
        intended_use=INTENDED_USE,
        clinical_use_warning=NOT_FOR_CLINICAL_USE,
        modality=TEXT,
        task="token-classification",
        max_batch_size=64,
        training={
            "data": f"{config.notes} phantom notes of the training families (discharge summary, "
            "clinic letter, emergency note, nursing handover), each also with invented names and "
            "capitalised non-names (drugs, ICD-10-CM words, English words, headers) inserted",
            "synthetic_phantoms": True,
            "config": asdict(config),
            "optimizer": "Adam",
            "loss": "binary cross-entropy per token",
            "threshold": f"the highest with name recall ≥ 0.99 on {config.validation} validation notes",
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "export_max_abs_diff": delta,
        },
        evaluations={"held_out_families": evaluation},
    )
    manifest.save(folder)
    repo.write_triton_config(manifest)
    return TaggerResult(ModelRef(NAME_MODEL, version, folder), threshold, evaluation)
