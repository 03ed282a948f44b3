"""Aliases of a model's versions (``production``, ``canary`` …), with traffic splits and shadows.

Kept beside the versions in ``REPO/<model>/aliases.json`` (Triton ignores the file), so every
replica serving the repository routes alike::

    {"production": {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
                    "shadow": 3}}

A split sends each request to one version with probability proportional to its weight; a shadow
version runs on every request too, its result recorded but never returned.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from dxserve.errors import InvalidInput

ALIASES_FILE = "aliases.json"


@dataclass(frozen=True)
class Route:
    version: int
    weight: float


@dataclass(frozen=True)
class Alias:
    name: str
    routes: tuple[Route, ...]
    shadow: int | None = None

    def pick(self, rng: random.Random) -> int:
        """One version, drawn by weight."""
        versions = [r.version for r in self.routes]
        return rng.choices(versions, weights=[r.weight for r in self.routes])[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "routes": [{"version": r.version, "weight": r.weight} for r in self.routes],
            "shadow": self.shadow,
        }


def parse_alias(name: str, data: dict[str, object]) -> Alias:
    routes_data = data.get("routes")
    if not isinstance(routes_data, list) or not routes_data:
        raise InvalidInput(f"alias {name!r} needs at least one route")
    routes = tuple(Route(int(r["version"]), float(r.get("weight", 1))) for r in routes_data)
    if any(r.weight <= 0 for r in routes):
        raise InvalidInput(f"alias {name!r}: weights must be positive")
    shadow = data.get("shadow")
    return Alias(name, routes, int(shadow) if isinstance(shadow, int | str) else None)


def read_aliases(model_dir: Path) -> dict[str, Alias]:
    """The aliases of the model in ``model_dir`` (none when the file is absent)."""
    path = Path(model_dir) / ALIASES_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {name: parse_alias(name, spec) for name, spec in data.items()}


def write_aliases(model_dir: Path, aliases: dict[str, Alias]) -> None:
    path = Path(model_dir) / ALIASES_FILE
    payload = {name: alias.to_dict() for name, alias in sorted(aliases.items())}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def set_alias(
    model_dir: Path, versions: list[int], name: str, routes: list[str], shadow: int | None
) -> Alias:
    """Point alias ``name`` of the model in ``model_dir`` (whose versions are ``versions``) at
    ``routes`` (``VERSION`` or ``VERSION:WEIGHT`` each), with an optional shadow version."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("an alias is letters, digits, '-' and '_'")
    parsed = []
    for text in routes:
        version, _, weight = text.partition(":")
        if not version.isdigit() or int(version) not in versions:
            raise InvalidInput(f"no version {version!r} (there are {versions})")
        try:
            parsed.append(Route(int(version), float(weight or 1)))
        except ValueError:
            raise InvalidInput(f"weight {weight!r} is not a number") from None
    if not parsed:
        raise InvalidInput(f"alias {name!r} needs at least one version")
    if any(r.weight <= 0 for r in parsed):
        raise InvalidInput(f"alias {name!r}: weights must be positive")
    if shadow is not None and shadow not in versions:
        raise InvalidInput(f"no version {shadow} for the shadow (there are {versions})")
    aliases = read_aliases(model_dir)
    aliases[name] = Alias(name, tuple(parsed), shadow)
    write_aliases(model_dir, aliases)
    return aliases[name]
