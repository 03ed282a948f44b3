"""An external check of note de-identification: the five i2b2-format notes with gold PHI that
Philter (UCSF, BSD licence) ships in its package on PyPI — real discharge-style notes whose
identifiers i2b2 replaced with realistic stand-ins. Never trained or tuned on; five notes are a
small sample, so this is a sanity check beside the phantom benchmark, not a target.

The sdist is fetched from PyPI once into ``--cache`` (the registries are reachable; nothing is
taken from a model hub). i2b2 2014 also tags years alone, professions and some locations that
HIPAA's Safe Harbor does not require; those are reported apart, not counted as misses.

    python benchmarks/philter_i2b2.py [--repository DIR] [--cache var/cache/philter]
"""

import argparse
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.text.analysis import merge_phi
from dxserve.core.text.phi_rules import find_phi
from dxserve.core.text.phi_score import score
from dxserve.core.text.phi_tagger import NAME_MODEL, TaggedNames
from dxserve.errors import ModelNotFound
from dxserve.settings import Settings

PACKAGE = "philter-ucsf==1.0.3"
NOT_SAFE_HARBOR = {"PROFESSION", "YEAR"}  # i2b2 tags these; HIPAA does not ask for them


def fetch(cache: Path) -> list[Path]:
    """The package's i2b2 XML notes, downloaded (sdist) and unpacked into ``cache`` once."""
    notes = sorted(cache.glob("*/philter_ucsf/data/i2b2_xml/*.xml"))
    if notes:
        return notes
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
         ":all:", "--no-build-isolation", PACKAGE, "-d", str(cache)],
        check=True,
    )  # fmt: skip
    with tarfile.open(next(cache.glob("philter_ucsf-*.tar.gz"))) as archive:
        archive.extractall(cache, filter="data")
    return sorted(cache.glob("*/philter_ucsf/data/i2b2_xml/*.xml"))


def gold_label(tag: ET.Element) -> str:
    """The i2b2 category, with years alone apart (not identifiers under Safe Harbor)."""
    text = tag.get("text", "")
    if tag.tag == "DATE" and text.strip("'").isdigit() and len(text.strip("'")) in (2, 4):
        return "YEAR"
    if tag.get("TYPE") == "PROFESSION":
        return "PROFESSION"
    return tag.tag


def read(path: Path) -> tuple[str, list[tuple[int, int, str]]]:
    root = ET.parse(path).getroot()
    text = root.findtext("TEXT") or ""
    tags = root.find("TAGS")
    gold = [(int(t.get("start", 0)), int(t.get("end", 0)), gold_label(t)) for t in tags or []]
    return text, gold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repository", type=Path, default=None, help="default: settings'")
    parser.add_argument("--cache", type=Path, default=Path("var/cache/philter"))
    args = parser.parse_args()
    console = Console(width=120)
    documents = [read(p) for p in fetch(args.cache)]
    try:
        tagger: OnnxModel | None = OnnxModel(
            ModelRepository(args.repository or Settings().repository).resolve(NAME_MODEL)
        )
    except ModelNotFound:
        console.print(f"no {NAME_MODEL} in the repository: the rules alone")
        tagger = None
    for who in ("rules", "rules + tagger") if tagger else ("rules",):
        scored = []
        for text, gold in documents:
            names = []
            if tagger is not None and who != "rules":
                run = lambda w: tagger.run_batches(w)["probability"]  # noqa: E731
                names = TaggedNames.of(text, run).phi(tagger.manifest.threshold)
            found = merge_phi(find_phi(text), names)
            scored.append((text, gold, [(s.start, s.end, s.type) for s in found]))
        scores = score(scored)
        safe_harbor = [(t, [g for g in gold if g[2] not in NOT_SAFE_HARBOR], p)
                       for t, gold, p in scored]  # fmt: skip
        table = Table("gold type (i2b2)", "gold tokens", "recall", title=f"{who}: Philter's "
                      f"{len(documents)} i2b2 notes (token level)")  # fmt: skip
        for label, s in scores.items():
            if s.gold and label != "ALL":
                note = " (not Safe Harbor PHI)" if label in NOT_SAFE_HARBOR else ""
                table.add_row(label + note, str(s.gold), f"{s.recall:.3f}")
        harbor = score(safe_harbor)["ALL"]
        table.add_row("all Safe Harbor", str(harbor.gold), f"{harbor.recall:.3f}")
        console.print(table)
        console.print(
            f"{who}: precision {harbor.precision:.3f} against Safe Harbor gold "
            f"({harbor.predicted} tokens predicted)\n"
        )
        missed = [
            text[a:b]
            for text, gold, predicted in safe_harbor
            for a, b, label in gold
            if not any(p < b and a < q for p, q, _ in predicted)
        ]
        console.print(f"{who}: {len(missed)} Safe Harbor identifiers untouched (not shown: PHI)")


if __name__ == "__main__":
    main()
