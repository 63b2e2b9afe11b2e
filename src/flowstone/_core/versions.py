"""Data versions: what a stored value was computed from, and whether it is still current.

The materializer and :meth:`Runtime.status <flowstone.Runtime.status>` share these rules:

* a value's *data version* is a digest of the asset's code version, its partition and the
  data versions of the inputs it was computed from (:func:`data_version`);
* an *optional* input counts only when it was present: a missing or skipped one (the
  branch a router did not choose, say) is left out, so it never makes its dependent stale;
* a stored value is current when its record has the version its inputs give now.
"""

from __future__ import annotations

from hashlib import blake2b as _blake2b
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .assets import AssetDef
    from .records import MaterializationRecord

__all__ = ["counts_optional_input", "data_version", "expected_version"]


def data_version(code_version: str, partition: str | None, inputs: Mapping[str, str]) -> str:
    """The version of a value computed by ``code_version`` for ``partition`` from ``inputs``."""
    # The digest of ``code_version``, then for the partition and each input (by name) a NUL
    # and ``partition`` or ``name=version``: one string hashed at once (a version stored by
    # any release of flowstone is the digest of these same bytes).
    if not inputs:
        text = f"{code_version}\x00{partition or ''}"
    elif len(inputs) == 1:  # (a chain: no sorting, no list)
        [(name, version)] = inputs.items()
        text = f"{code_version}\x00{partition or ''}\x00{name}={version}"
    else:
        text = f"{code_version}\x00{partition or ''}" + "".join(
            [f"\x00{name}={inputs[name]}" for name in sorted(inputs)]
        )
    return _blake2b(text.encode(), digest_size=10).hexdigest()


def counts_optional_input(
    dependency: str, record: MaterializationRecord | None, *, present: bool
) -> bool:
    """Whether an optional input counts toward a stored value's expected version.

    It counts when the stored value was computed with it (the record lists it), and, with
    no record to tell, when it has a value now (``present``). A run decides the same way
    from what it sees: an optional input that is skipped or missing in the run is left out.
    """
    if record is not None:
        return dependency in record.input_versions
    return present


def expected_version(
    asset_def: AssetDef[..., Any],
    partition: str | None,
    inputs: Mapping[str, str],
    record: MaterializationRecord | None,
) -> str:
    """The data version a run would give ``asset_def`` from inputs of these versions.

    An asset whose coordinator materializes some of its dependencies itself (a parallel
    join) keeps its stored version while the inputs it recorded are unchanged.
    """
    if (
        asset_def.owned_deps
        and record is not None
        and all(record.input_versions.get(d) == v for d, v in inputs.items())
    ):
        return record.data_version or ""
    return data_version(asset_def.code_version, partition, inputs)
