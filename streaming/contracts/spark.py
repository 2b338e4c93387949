"""A contract compiled into Spark: schemas to parse with, and one column expression per rule.

Everything here is built from Spark's own functions (from_json, rlike, isin, ...): checking a
record costs no Python call, whatever the batch size.

`check_records` turns raw Kafka values into typed columns plus two arrays of
struct<rule, message>: `_errors` (the record goes to quarantine) and `_warnings` (the row is
kept and the warning counted).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streaming.contracts.model import Contract, Criticality, FieldSchema, VersionSchema, describe

CORRUPT = "_corrupt_record"
ERRORS, WARNINGS, VERSION = "_errors", "_warnings", "_version"
RECORD_RULES = ("record.null_value", "record.utf8", "record.json", "record.version")
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
REASONS_TYPE = "array<struct<rule:string,message:string>>"
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT,
    # 1 to 9 fraction digits (Debezium sends 6), then Z or an offset.
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS][XXX]",
}


def spark_type(field: FieldSchema) -> DataType:
    """The Spark type a field's values take in silver."""
    if field.spark_type:
        named = {
            "string": StringType(),
            "int": IntegerType(),
            "long": LongType(),
            "double": DoubleType(),
            "boolean": BooleanType(),
            "date": DateType(),
            "timestamp": TimestampType(),
        }
        decimal = _DECIMAL.match(field.spark_type.strip())
        if decimal:
            return DecimalType(int(decimal.group(1)), int(decimal.group(2)))
        if field.spark_type in named:
            return named[field.spark_type]
        raise ValueError(f"x-spark-type '{field.spark_type}' is not one headwater knows")
    kind = field.value_type
    if kind == "string":
        return {"date-time": TimestampType(), "date": DateType()}.get(
            field.format or "", StringType()
        )
    return {"integer": IntegerType(), "number": DoubleType(), "boolean": BooleanType()}[kind]


def silver_schema(contract: Contract) -> StructType:
    """The union of every version's fields, typed: a field added in v2 is null in v1 rows."""
    seen: dict[str, DataType] = {}
    for number, version in contract.versions.items():
        for name, field in version.properties.items():
            kind = spark_type(field)
            if name in seen and seen[name] != kind:
                raise ValueError(
                    f"field '{name}' is {seen[name].simpleString()} in an earlier version but "
                    f"{kind.simpleString()} in version {number}"
                )
            seen[name] = kind
    return StructType([StructField(n, t, True) for n, t in seen.items()])


def with_corrupt(schema: StructType) -> StructType:
    return StructType([*schema.fields, StructField(CORRUPT, StringType(), True)])


def raw_schema(schema: StructType) -> StructType:
    return StructType([StructField(f.name, StringType(), True) for f in schema.fields])


@dataclass(frozen=True)
class Rule:
    """One rule of one contract version, compiled."""

    id: str
    version: int
    criticality: Criticality
    violated: Column
    message: Column


def text_of(*parts: Column | str) -> Column:
    return F.concat(*[p if isinstance(p, Column) else F.lit(p) for p in parts])


def field_rules(contract: Contract, raw: Column, typed: Column, text: Column) -> list[Rule]:
    """Every rule of every version, as columns over the raw (all-string) and typed parses and
    the record's JSON text."""
    return [
        rule
        for number, version in contract.versions.items()
        for rule in version_rules(version, number, raw, typed, contract.criticality, text)
    ]


ADDITIONAL = "additionalProperties"


def additional_fields_rule(
    version: VersionSchema, number: int, text: Column, criticality: Mapping[str, Criticality]
) -> Rule | None:
    """With `additionalProperties: false`, the rule that the JSON object `text` names no
    field beyond the schema's properties (a column added upstream, say)."""
    if version.additional_properties:
        return None
    extra = F.array_except(
        F.coalesce(F.json_object_keys(text), F.array().cast("array<string>")),
        F.array(*[F.lit(name) for name in version.properties]),
    )
    return Rule(
        ADDITIONAL,
        number,
        criticality.get(ADDITIONAL) or "error",
        F.size(extra) > 0,
        text_of(
            "fields not in the contract (additionalProperties: false): ",
            F.array_join(extra, ", "),
            "; add them to the contract's properties, then rebuild from bronze",
        ),
    )


def version_rules(
    version: VersionSchema,
    number: int,
    raw: Column,
    typed: Column,
    criticality: Mapping[str, Criticality],
    text: Column | None = None,
) -> list[Rule]:
    """The rules of one JSON Schema object, as columns over its raw and typed parses (and,
    for additionalProperties, its JSON text)."""
    rules: list[Rule] = []
    if text is not None and (extra := additional_fields_rule(version, number, text, criticality)):
        rules.append(extra)
    for name, field in version.properties.items():
        r, t = raw[name], typed[name]
        shown = t.cast("string")
        checks: list[tuple[str, Column, Column]] = []
        if name in version.required and not field.nullable:
            checks.append(("required", r.isNull(), text_of(f"{name}: required")))
        kind = spark_type(field)
        if not isinstance(kind, StringType):
            checks.append(
                (
                    "type",
                    r.isNotNull() & (t.isNull() | _not_text_form(field, r)),
                    text_of(f"{name}: ", r, f" is not a valid {_type_name(field, kind)}"),
                )
            )
        if field.format == "uuid":
            checks.append(("format", ~t.rlike(_UUID), text_of(f"{name}: ", t, " is not a UUID")))
        if field.enum is not None:
            allowed = ", ".join(describe(v) for v in field.enum)
            checks.append(
                (
                    "enum",
                    ~t.isin(list(field.enum)),
                    text_of(f"{name}: ", shown, f" is not one of {allowed}"),
                )
            )
        if field.const is not None:
            checks.append(
                (
                    "const",
                    t != F.lit(field.const),
                    text_of(f"{name}: ", shown, f" is not {describe(field.const)}"),
                )
            )
        for keyword, bound, broken in (
            ("minimum", field.minimum, operator.lt),
            ("maximum", field.maximum, operator.gt),
            ("exclusiveMinimum", field.exclusiveMinimum, operator.le),
            ("exclusiveMaximum", field.exclusiveMaximum, operator.ge),
        ):
            if bound is not None:
                checks.append(
                    (
                        keyword,
                        broken(t, F.lit(bound)),
                        text_of(f"{name}: ", shown, f" breaks {keyword} {bound:g}"),
                    )
                )
        if field.minLength is not None:
            checks.append(
                (
                    "minLength",
                    F.length(t) < field.minLength,
                    text_of(f"{name}: shorter than {field.minLength} characters"),
                )
            )
        if field.maxLength is not None:
            checks.append(
                (
                    "maxLength",
                    F.length(t) > field.maxLength,
                    text_of(f"{name}: longer than {field.maxLength} characters"),
                )
            )
        if field.pattern is not None:
            checks.append(
                (
                    "pattern",
                    ~t.rlike(field.pattern),
                    text_of(f"{name}: ", t, f" does not match {field.pattern}"),
                )
            )
        for keyword, violated, message in checks:
            rule_id = f"{name}.{keyword}"
            level = criticality.get(rule_id) or field.criticality or "error"
            rules.append(Rule(rule_id, number, level, F.coalesce(violated, F.lit(False)), message))
    return rules


def _not_text_form(field: FieldSchema, raw: Column) -> Column:
    """True where a date or date-time field's raw text is not in ISO-8601 form: Spark's JSON
    reader would otherwise take a number (-1) as seconds since 1970."""
    pattern = {"date-time": _ISO_DATE_TIME, "date": _ISO_DATE}.get(field.format or "")
    return ~raw.rlike(pattern) if pattern else F.lit(False)


def _type_name(field: FieldSchema, kind: DataType) -> str:
    if field.format == "date-time":
        return "ISO-8601 date-time"
    return kind.simpleString()


def reasons_of(pairs: list[tuple[Column, str, Column]]) -> Column:
    """array<struct<rule, message>> of the rules whose condition holds."""
    if not pairs:
        return F.array().cast(REASONS_TYPE)
    entries = [
        F.when(cond, F.struct(F.lit(rule).alias("rule"), msg.alias("message")))
        for cond, rule, msg in pairs
    ]
    # The cast makes the struct's fields nullable: Delta refuses NOT NULL inside arrays.
    return F.filter(F.array(*entries), lambda e: e.isNotNull()).cast(REASONS_TYPE)


@dataclass(frozen=True)
class CompiledContract:
    """A contract as Spark columns, built once and applied to every batch (building the
    rule expressions costs about a second of Py4J calls)."""

    raw: Column
    typed: Column
    added: tuple[Column, ...]
    errors: Column
    warnings: Column

    def apply(self, records: DataFrame) -> DataFrame:
        """`records` plus the typed fields, `_version`, `_errors` and `_warnings`."""
        return (
            records.withColumn("_raw", self.raw)
            .withColumn("_typed", self.typed)
            .select("*", *self.added)
            .withColumn(ERRORS, self.errors)
            .withColumn(WARNINGS, self.warnings)
            .drop("_raw", "_typed")
        )


def check_records(records: DataFrame, contract: Contract, value_column: str = "value") -> DataFrame:
    """`records` plus the contract's typed fields, `_version`, `_errors` and `_warnings`.

    Record-level problems (null value, invalid UTF-8, not a JSON object, unknown version)
    replace field-level ones: a record that cannot be read has no fields to judge.
    """
    return compile_contract(contract, value_column).apply(records)


_COMPILED: dict[tuple[int, str, str], CompiledContract] = {}


def compile_contract(contract: Contract, value_column: str = "value") -> CompiledContract:
    """The columns `check_records` adds, for reuse across batches; built once per contract
    and JVM (every stream start, table creation and rebuild of the same contract shares it)."""
    from pyspark import SparkContext

    # Columns are expressions in the JVM: valid for as long as its gateway, across sessions.
    key = (id(SparkContext._gateway), contract.model_dump_json(), value_column)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(contract, value_column)
    return _COMPILED[key]


def _compile(contract: Contract, value_column: str) -> CompiledContract:
    schema = silver_schema(contract)
    value = F.col(value_column)
    text = value.cast("string")
    raw = F.from_json(text, with_corrupt(raw_schema(schema)), JSON_OPTIONS)
    typed = F.from_json(text, with_corrupt(schema), JSON_OPTIONS)
    version_field = contract.fields.version
    known = sorted(contract.versions)
    r, t = F.col("_raw"), F.col("_typed")
    version = t[version_field]
    unreadable = value.isNull() | ~F.is_valid_utf8(text) | r.isNull() | r[CORRUPT].isNotNull()
    record_level = reasons_of(
        [
            (value.isNull(), "record.null_value", F.lit("record: the value is null")),
            (
                value.isNotNull() & ~F.is_valid_utf8(text),
                "record.utf8",
                F.lit("record: the value is not valid UTF-8"),
            ),
            (
                value.isNotNull() & F.is_valid_utf8(text) & (r.isNull() | r[CORRUPT].isNotNull()),
                "record.json",
                F.lit("record: the value is not a JSON object"),
            ),
            (
                ~unreadable & r[version_field].isNull(),
                f"{version_field}.required",
                F.lit(f"{version_field}: required (it chooses the contract version)"),
            ),
            (
                ~unreadable
                & r[version_field].isNotNull()
                & ~F.coalesce(version.isin(known), F.lit(False)),
                "record.version",
                text_of(
                    f"{version_field}: ",
                    r[version_field],
                    f" is not a version of the contract (known: {', '.join(map(str, known))})",
                ),
            ),
        ]
    )
    rules = field_rules(contract, r, t, text)

    def by_level(level: Criticality) -> Column:
        return reasons_of(
            [
                ((version == F.lit(rule.version)) & rule.violated, rule.id, rule.message)
                for rule in rules
                if rule.criticality == level
            ]
        )

    errors = F.when(F.size(record_level) > 0, record_level).otherwise(by_level("error"))
    warnings = F.when(F.size(record_level) > 0, F.array().cast(REASONS_TYPE)).otherwise(
        by_level("warn")
    )
    typed_fields = [t[f.name].alias(f.name) for f in schema.fields]
    return CompiledContract(raw, typed, (*typed_fields, version.alias(VERSION)), errors, warnings)
