"""How modelyard writes a byte count for people: one formatter for the CLI, lineage labels and
image sizes, so the same blob never reads "1.0 MB" in one place and "976.6 KB" in another.

Decimal SI units (1 kB = 1000 B), as ``docker images``, ``du --si`` and file managers print
them, so an image size here matches what Docker says about the same image.
"""

from __future__ import annotations

from modelyard.errors import InvalidValue

_UNITS = ("kB", "MB", "GB", "TB", "PB")


def format_size(size: int | float) -> str:
    """``"512 B"``, ``"1.2 MB"``: whole bytes below 1 kB, one decimal above, never ``1000.0``."""
    if size < 0:
        raise InvalidValue(f"a size cannot be negative (got {size!r})")
    if size < 1000:
        return f"{int(size)} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1000
        if round(value, 1) < 1000 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
