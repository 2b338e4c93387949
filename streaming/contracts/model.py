"""Event contracts: conf/contracts/<topic>.yaml, one JSON Schema per version.

headwater compiles a subset of JSON Schema (draft 2020-12) into Spark types and column
expressions; a keyword outside that subset is refused when the contract loads, so a contract
never says more than the pipeline enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streaming.config import parse_file
from streaming.errors import ConfigError

JsonType = Literal["string", "integer", "number", "boolean", "null"]
Criticality = Literal["error", "warn"]
Compatibility = Literal["backward", "forward", "full", "none"]


class FieldSchema(BaseModel):
    """One property of an event: its JSON type and the rules on its value."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: JsonType | tuple[JsonType, ...]
    description: str | None = None
    format: Literal["uuid", "date-time", "date"] | None = None
    enum: tuple[str | int | float, ...] | None = None
    const: str | int | float | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | None = None
    exclusiveMaximum: float | None = None
    minLength: Annotated[int, Field(ge=0)] | None = None
    maxLength: Annotated[int, Field(ge=0)] | None = None
    pattern: str | None = None
    spark_type: str | None = Field(None, alias="x-spark-type")
    criticality: Criticality | None = Field(None, alias="x-criticality")

    @property
    def json_types(self) -> tuple[JsonType, ...]:
        return self.type if isinstance(self.type, tuple) else (self.type,)

    @property
    def value_type(self) -> JsonType:
        """The non-null JSON type of the field."""
        kinds = [t for t in self.json_types if t != "null"]
        if len(kinds) != 1:
            raise ValueError("a field has exactly one non-null type (plus optionally 'null')")
        return kinds[0]

    @property
    def nullable(self) -> bool:
        return "null" in self.json_types

    @model_validator(mode="after")
    def _one_value_type(self) -> FieldSchema:
        _ = self.value_type
        return self


class VersionSchema(BaseModel):
    """One version of an event contract: a JSON Schema of an object."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_uri: str | None = Field(None, alias="$schema")
    title: str | None = None
    description: str | None = None
    type: Literal["object"] = "object"
    required: tuple[str, ...] = ()
    properties: dict[str, FieldSchema]
    # false: a record with a field the schema does not name breaks rule additionalProperties
    # (quarantined unless `criticality` makes it a warning); true: such fields are ignored.
    additional_properties: bool = Field(True, alias="additionalProperties")

    @model_validator(mode="after")
    def _required_are_properties(self) -> VersionSchema:
        unknown = [r for r in self.required if r not in self.properties]
        if unknown:
            raise ValueError(
                f"required names fields with no properties entry: {', '.join(unknown)}"
            )
        return self


class ContractFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = "event_id"
    event_time: str = "event_time"
    version: str = "schema_version"


class Contract(BaseModel):
    """The versioned contract of one event topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    kind: Literal["events"] = "events"
    silver_table: str
    compatibility: Compatibility = "backward"
    fields: ContractFields = ContractFields()
    criticality: dict[str, Criticality] = Field(default_factory=dict)
    versions: dict[int, VersionSchema]

    @field_validator("versions")
    @classmethod
    def _some_versions(cls, value: dict[int, VersionSchema]) -> dict[int, VersionSchema]:
        if not value:
            raise ValueError("list at least one version")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _key_fields_in_every_version(self) -> Contract:
        for number, version in self.versions.items():
            for role, name in self.fields.model_dump().items():
                if name not in version.required:
                    raise ValueError(
                        f"version {number} must require field '{name}' (the contract's {role})"
                    )
            if version.properties[self.fields.event_time].format != "date-time":
                raise ValueError(
                    f"version {number}: field '{self.fields.event_time}' must have format date-time"
                )
            if version.properties[self.fields.version].value_type != "integer":
                raise ValueError(
                    f"version {number}: field '{self.fields.version}' must be an integer"
                )
        return self

    @property
    def latest(self) -> int:
        return max(self.versions)


class CdcContract(BaseModel):
    """The contract of a Debezium change-data-capture topic: the table's row and its key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    kind: Literal["cdc"]
    silver_table: str
    key: str
    criticality: dict[str, Criticality] = Field(default_factory=dict)
    row: VersionSchema

    @model_validator(mode="after")
    def _key_is_required(self) -> CdcContract:
        if self.key not in self.row.required:
            raise ValueError(f"row must require the key field '{self.key}'")
        return self


def contract_path(conf_dir: Path, topic: str) -> Path:
    return conf_dir / "contracts" / f"{topic}.yaml"


def load_contract(conf_dir: Path, topic: str) -> Contract:
    """The contract of `topic` from conf/contracts/<topic>.yaml.

    Raises ConfigError naming the file and field when it is missing or invalid.
    """
    path = contract_path(conf_dir, topic)
    contract = parse_file(Contract, path)
    if contract.topic != topic:
        raise ConfigError(
            f"{path}: field 'topic' is '{contract.topic}' but the file is for '{topic}'"
        )
    return contract


def describe(value: Any) -> str:
    """A value as a contract message shows it."""
    return repr(value) if isinstance(value, str) else str(value)


def load_cdc_contract(conf_dir: Path, topic: str) -> CdcContract:
    """The CDC contract of `topic`; ConfigError naming the file and field when invalid."""
    path = contract_path(conf_dir, topic)
    contract = parse_file(CdcContract, path)
    if contract.topic != topic:
        raise ConfigError(
            f"{path}: field 'topic' is '{contract.topic}' but the file is for '{topic}'"
        )
    return contract
