"""The schema compatibility gate: each contract version against the one before it.

- backward: a reader of the new version reads data written under the old one, so the new
  version may not require a field the old one lacked, change a type, or tighten a rule;
- forward: a reader of the old version reads new data, so the new version may not drop or
  relax a field the old one required, change a type, or loosen a rule;
- full: both; none: no check.

The version field itself (schema_version) changes its `const` by design and is exempt.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from streaming.contracts.model import Contract, FieldSchema, VersionSchema
from streaming.contracts.spark import spark_type


def problems(contract: Contract) -> list[str]:
    """Every breaking change between consecutive versions, one sentence each."""
    if contract.compatibility == "none":
        return []
    found: list[str] = []
    numbers = sorted(contract.versions)
    for old_n, new_n in itertools.pairwise(numbers):
        old, new = contract.versions[old_n], contract.versions[new_n]
        prefix = f"{contract.topic} v{new_n} is not {{mode}} compatible with v{old_n}"
        modes = (
            ("backward", "forward")
            if contract.compatibility == "full"
            else (contract.compatibility,)
        )
        for mode in modes:
            check = _backward if mode == "backward" else _forward
            for reason in check(old, new, contract.fields.version):
                found.append(f"{prefix.format(mode=mode)}: {reason}")
    return found


def _backward(old: VersionSchema, new: VersionSchema, version_field: str) -> Iterator[str]:
    for name in new.required:
        if name not in old.properties or name not in old.required:
            yield f"field '{name}' is required in the new version but data of the old one may lack it"
    for name, field in new.properties.items():
        if name in old.properties and name != version_field:
            yield from _same_type(name, old.properties[name], field)
            yield from _not_tighter(
                name, old.properties[name], field, "the new version rejects old data"
            )


def _forward(old: VersionSchema, new: VersionSchema, version_field: str) -> Iterator[str]:
    for name in old.required:
        if name not in new.properties or name not in new.required:
            yield f"field '{name}' is required by old readers but the new version may leave it out"
    for name, field in old.properties.items():
        if name in new.properties and name != version_field:
            yield from _same_type(name, field, new.properties[name])
            yield from _not_tighter(
                name, new.properties[name], field, "old readers reject new data"
            )


def _same_type(name: str, old: FieldSchema, new: FieldSchema) -> Iterator[str]:
    if spark_type(old) != spark_type(new):
        yield (
            f"field '{name}' changes type from {spark_type(old).simpleString()} "
            f"to {spark_type(new).simpleString()}"
        )
    if old.nullable and not new.nullable:
        yield f"field '{name}' may be null in one version but not in the other"


def _not_tighter(name: str, loose: FieldSchema, strict: FieldSchema, why: str) -> Iterator[str]:
    """Reasons `strict` accepts less than `loose` (with `why` it matters)."""
    if strict.enum is not None and (loose.enum is None or not set(loose.enum) <= set(strict.enum)):
        dropped = sorted(map(str, set(loose.enum or ()) - set(strict.enum))) or ["(any value)"]
        yield f"field '{name}' allows fewer values ({', '.join(dropped)} no longer): {why}"
    for keyword, higher_is_stricter in (
        ("minimum", True),
        ("exclusiveMinimum", True),
        ("minLength", True),
        ("maximum", False),
        ("exclusiveMaximum", False),
        ("maxLength", False),
    ):
        a, b = getattr(loose, keyword), getattr(strict, keyword)
        if b is not None and (a is None or (b > a if higher_is_stricter else b < a)):
            yield f"field '{name}' {keyword} goes from {a} to {b}: {why}"
    if strict.pattern is not None and strict.pattern != loose.pattern:
        yield f"field '{name}' pattern changes to {strict.pattern}: {why}"
    if strict.const is not None and strict.const != loose.const:
        yield f"field '{name}' const changes to {strict.const!r}: {why}"
    if strict.format is not None and strict.format != loose.format:
        yield f"field '{name}' format changes to {strict.format}: {why}"
