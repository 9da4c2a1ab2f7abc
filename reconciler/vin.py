"""Plausible, deterministic VINs for Stellantis brands (examples, sandbox fleets, tests)."""

from __future__ import annotations

# world manufacturer identifiers: Peugeot, Citroën, DS, Opel, Vauxhall
WMIS = ("VF3", "VF7", "VR1", "W0L", "W0V")
_MODELS = ("UHNKF", "SHMZH", "JCHNS", "ZGBZE", "VP2FH")
_TRANSLITERATION = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGH", range(1, 9), strict=True))}
_TRANSLITERATION.update(dict(zip("JKLMNPR", (1, 2, 3, 4, 5, 7, 9), strict=True)))
_TRANSLITERATION.update(dict(zip("STUVWXYZ", range(2, 10), strict=True)))
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(vin: str) -> str:
    """The ISO 3779 (North American) check character for position 9."""
    total = sum(_TRANSLITERATION[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def make_vin(index: int) -> str:
    """The `index`-th VIN of a simulated fleet: brand by index, model year R (2024), serial from index."""
    brand = index % len(WMIS)
    draft = f"{WMIS[brand]}{_MODELS[brand]}0R{'LPMSK'[brand]}{index % 1_000_000:06d}"
    return draft[:8] + check_digit(draft) + draft[9:]
