"""Typed inputs: ``class Input(schema.Schema): image_url = schema.String()``.

A handler declared with ``inputs=Input`` receives an ``Input`` instance; a payload that does not
match is refused before the handler runs (422 ``INPUT_INVALID`` naming the field).
"""
from __future__ import annotations

from typing import Any, ClassVar

_MISSING = object()


class SchemaError(ValueError):
    """A payload that does not match its schema; ``str()`` names the field."""


class Field:
    type_name = "value"

    def __init__(self, required: bool = True, default: Any = _MISSING, description: str | None = None) -> None:
        self.required = required and default is _MISSING
        self.default = default
        self.description = description
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def check(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        return {}


class String(Field):
    type_name = "string"

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, str):
            raise SchemaError(f"{where}: expected a string, got {_kind(value)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string"}


class Integer(Field):
    type_name = "integer"

    def check(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise SchemaError(f"{where}: expected an integer, got {_kind(value)}")
        return int(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer"}


class Float(Field):
    type_name = "number"

    def check(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {_kind(value)}")
        return float(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number"}


class Boolean(Field):
    type_name = "boolean"

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: expected true or false, got {_kind(value)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class Json(Field):
    """Any JSON value (object, list, string, number, boolean, null)."""
    type_name = "json"

    def check(self, value: Any, where: str) -> Any:
        return value


class List(Field):
    type_name = "array"

    def __init__(self, item: Field | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {_kind(value)}")
        if self.item is None:
            return value
        return [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", **({"items": self.item.json_schema()} if self.item else {})}


class Object(Field):
    """A nested object: ``Object(OtherSchema)`` gives an ``OtherSchema`` instance; ``Object()`` a plain dict."""
    type_name = "object"

    def __init__(self, schema: type["Schema"] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema = schema

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {_kind(value)}")
        return self.schema._parse(value, where + ".") if self.schema else value

    def json_schema(self) -> dict[str, Any]:
        return self.schema.json_schema() if self.schema else {"type": "object"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class Schema:
    """Subclass with fields as class attributes. Instances expose the parsed values as attributes."""

    _fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "_fields", {}))
        fields.update({k: v for k, v in vars(cls).items() if isinstance(v, Field)})
        cls._fields = fields

    def __init__(self, **values: Any) -> None:
        parsed = type(self)._parse(values, "")
        self.__dict__.update(parsed.__dict__)

    @classmethod
    def _parse(cls, payload: Any, prefix: str) -> "Schema":
        if not isinstance(payload, dict):
            raise SchemaError(f"{prefix.rstrip('.') or 'input'}: expected an object, got {_kind(payload)}")
        unknown = sorted(set(payload) - set(cls._fields))
        if unknown:
            raise SchemaError(f"{prefix}{unknown[0]}: unknown field; expected one of {', '.join(sorted(cls._fields)) or '(none)'}")
        instance = cls.__new__(cls)
        for name, f in cls._fields.items():
            if name in payload:
                instance.__dict__[name] = f.check(payload[name], prefix + name)
            elif f.required:
                raise SchemaError(f"{prefix}{name}: required {f.type_name} is missing")
            else:
                instance.__dict__[name] = None if f.default is _MISSING else f.default
        return instance

    @classmethod
    def from_dict(cls, payload: Any) -> "Schema":
        """Parses a payload, raising :class:`SchemaError` naming the first field that does not match."""
        return cls._parse(payload, "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in type(self)._fields:
            value = self.__dict__.get(name)
            out[name] = value.to_dict() if isinstance(value, Schema) else value
        return out

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "object", "properties": {n: f.json_schema() for n, f in cls._fields.items()},
                "required": [n for n, f in cls._fields.items() if f.required], "additionalProperties": False}

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()  # type: ignore[union-attr]
