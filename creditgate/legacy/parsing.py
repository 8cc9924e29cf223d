"""Reading a legacy export (docs/legacy-format.md) into checked, typed values.

Pure functions: nothing here touches the database. Every problem is collected with the JSON
path of the offending value (`$.constants.image_models[2].credits_per_image`), so an operator
fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from creditgate.catalog import crypto
from creditgate.catalog.models import ModelType, QualityTier
from creditgate.core.errors import InvalidRequest

FORMAT_VERSION = 1

_KEY_FIELD = re.compile(r"^(?P<provider>[a-z][a-z0-9_-]{0,31})_api_key$")
_SETTINGS_FIELDS = {"default_text_model", "default_image_model", "image_quality_models", "image_style",
                    "max_in_article_images", "temperature"}
_COMMON_MODEL_FIELDS = {"model_name", "provider", "display_name", "is_active", "is_default", "retires_on"}
_TEXT_MODEL_FIELDS = _COMMON_MODEL_FIELDS | {"input_usd_per_1m_tokens", "output_usd_per_1m_tokens"}
_IMAGE_MODEL_FIELDS = _COMMON_MODEL_FIELDS | {"credits_per_image", "usd_per_image", "quality_tier"}
_COST_ROW_FIELDS = {"operation_type", "model_name", "tokens_per_credit", "is_active"}
_TOP_LEVEL_FIELDS = {"version", "global_integration_settings", "constants", "credit_cost_config"}
_MISSING = object()
_MAX_RATE = 2_147_483_647  # the largest value every supported database stores in the rate columns


class LegacyConfigError(InvalidRequest):
    """The export cannot be imported; `details["errors"]` lists every problem with its JSON path."""

    code = "invalid_legacy_config"

    def __init__(self, errors: list[dict[str, Any]]):
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['path']}: {first['message']}{more}", details={"errors": errors})
        self.errors = errors


@dataclass(frozen=True)
class LegacyKey:
    provider_id: str
    api_key: str
    path: str


@dataclass(frozen=True)
class LegacyModel:
    model_name: str
    model_type: str
    provider_id: str
    path: str
    display_name: str | None = None
    tokens_per_credit: int | None = None
    credits_per_image: int | None = None
    input_usd_per_1m_tokens: Decimal | None = None
    output_usd_per_1m_tokens: Decimal | None = None
    usd_per_image: Decimal | None = None
    quality_tier: str | None = None
    is_active: bool = True
    retires_on: dt.date | None = None


@dataclass
class LegacyExport:
    keys: list[LegacyKey] = field(default_factory=list)          # providers we have an adapter for
    unused_keys: list[LegacyKey] = field(default_factory=list)   # reported, never imported
    models: dict[str, LegacyModel] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)       # model_type -> model_name
    settings: dict[str, Any] = field(default_factory=dict)       # only the fields the file gives
    ignored: list[str] = field(default_factory=list)             # e.g. inactive CreditCostConfig rows


class _DuplicateKeys(dict):
    """A JSON object that remembers keys given twice (json.loads would silently keep the last)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = _DuplicateKeys()
    dups = []
    for key, value in pairs:
        if key in obj:
            dups.append(key)
        obj[key] = value
    obj.duplicates = tuple(dups)
    return obj


def legacy_json_load(*, text: str | bytes) -> Any:
    """Decode an export's text, keeping track of duplicated keys for the validator."""
    try:
        return json.loads(text, object_pairs_hook=_object_pairs)
    except UnicodeDecodeError:
        raise LegacyConfigError([{"path": "$", "message": "the file is not UTF-8 text"}]) from None
    except json.JSONDecodeError as exc:
        raise LegacyConfigError([{"path": "$", "message": f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                                          f"column {exc.colno}"}]) from None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def fail(self, path: str, message: str, value: Any = _MISSING, *, secret: bool = False) -> None:
        entry: dict[str, Any] = {"path": path, "message": message}
        if value is not _MISSING:
            shown = crypto.mask(value) if secret and isinstance(value, str) else ("(hidden)" if secret else value)
            entry["value"] = shown
            entry["message"] = f"{message} (got {_shown(shown)})"
        self.errors.append(entry)

    def obj(self, value: Any, path: str, *, allowed: set[str] | None, required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object, not {_json_type(value)}")
            return None
        for dup in getattr(value, "duplicates", ()):
            self.fail(f"{path}.{dup}", "is given twice")
        for name in required:
            if name not in value:
                self.fail(f"{path}.{name}", "is required")
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    self.fail(f"{path}.{name}", "is not a field of this format")
        return value

    def array(self, value: Any, path: str) -> list | None:
        if not isinstance(value, list):
            self.fail(path, f"must be an array, not {_json_type(value)}")
            return None
        return value

    def text(self, value: Any, path: str, *, max_length: int = 100, secret: bool = False) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string", value, secret=secret)
            return None
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters", value, secret=secret)
            return None
        return value.strip()

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, "must be true or false", value)
            return None
        return value

    def positive_int(self, value: Any, path: str) -> int | None:
        # bool is an int in Python, and Python's json accepts NaN and Infinity: none of them is a rate.
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and 0 < value <= _MAX_RATE and value == int(value))
        if not ok:
            self.fail(path, f"must be a positive whole number (at most {_MAX_RATE})", value)
            return None
        return int(value)

    def int_between(self, value: Any, path: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be a whole number from {low} to {high}", value)
            return None
        return value

    def decimal(self, value: Any, path: str, *, low: Decimal, high: Decimal, places: int) -> Decimal | None:
        # Strings are accepted so an exporter can write prices without float rounding.
        number: Decimal | None = None
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite() or not low <= number <= high:
            self.fail(path, f"must be a number from {low} to {high}", value)
            return None
        if number != number.quantize(Decimal(1).scaleb(-places)):
            self.fail(path, f"must have at most {places} decimal places", value)
            return None
        return number.quantize(Decimal(1).scaleb(-places))

    def date(self, value: Any, path: str) -> dt.date | None:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(path, "must be a date written YYYY-MM-DD", value)
        return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object", _DuplicateKeys: "an object"}.get(type(value), type(value).__name__)


def legacy_export_parse(*, data: Any, importable_providers: frozenset[str]) -> LegacyExport:
    """Check an export and return what it means, or raise LegacyConfigError naming every problem.

    `importable_providers` are the providers the service has an adapter for: keys of any other
    provider are collected as unused (reported, not imported), a model of any other provider is
    an error (the service could not call it).
    """
    check = _Checker()
    export = LegacyExport()
    root = check.obj(data, "$", allowed=_TOP_LEVEL_FIELDS, required=tuple(sorted(_TOP_LEVEL_FIELDS)))
    if root is None:
        raise LegacyConfigError(check.errors)
    if "version" in root and (isinstance(root["version"], bool) or root["version"] != FORMAT_VERSION):
        check.fail("$.version", f"must be {FORMAT_VERSION}, the only version this command reads", root["version"])

    claims = _Claims()
    if "constants" in root:
        _parse_constants(check, root["constants"], export, importable_providers, claims)
    token_rates = _parse_cost_rows(check, root.get("credit_cost_config", []), export) \
        if "credit_cost_config" in root else {}
    if "global_integration_settings" in root:
        _parse_settings(check, root["global_integration_settings"], export, importable_providers, claims)
    _resolve_text_rates(check, export, token_rates, claims.broken)
    claims.resolve(check, export)
    if check.errors:
        raise LegacyConfigError(check.errors)
    return export


class _Claims:
    """Defaults and tiers can be stated in two places of the old layout; they must agree."""

    def __init__(self) -> None:
        self.defaults: dict[str, list[tuple[str, str]]] = {}  # model_type -> [(model_name, path)]
        self.tiers: dict[str, list[tuple[str, str]]] = {}     # tier -> [(model_name, path)]
        self.named: list[tuple[str, str, str]] = []           # (model_name, expected type, path)
        self.broken: set[str] = set()  # entries already reported: references to them add only noise

    def resolve(self, check: _Checker, export: LegacyExport) -> None:
        for name, expected_type, path in self.named:
            model = export.models.get(name)
            section = "text_models" if expected_type == ModelType.TEXT else "image_models"
            if name in self.broken:
                continue
            if model is None:
                check.fail(path, f"names a model that has no entry in $.constants.{section}, so it has no "
                                 f"provider or rate", name)
            elif model.model_type != expected_type:
                check.fail(path, f"names a model that is not a {expected_type} model", name)
        for model_type, claims in self.defaults.items():
            names = {n for n, _ in claims}
            if len(names) > 1:
                where = ", ".join(f"{p} = {_shown(n)}" for n, p in claims)
                check.fail(claims[0][1], f"two legacy defaults for {model_type} models: {where}")
            else:
                export.defaults[model_type] = claims[0][0]
        tier_of: dict[str, tuple[str, str]] = {}
        for tier, claims in self.tiers.items():
            names = {n for n, _ in claims}
            if len(names) > 1:
                where = ", ".join(f"{p} = {_shown(n)}" for n, p in claims)
                check.fail(claims[0][1], f"tier {tier!r} is claimed by more than one model: {where}")
                continue
            name, path = claims[0]
            if name in tier_of and tier_of[name][0] != tier:
                check.fail(path, f"model {name!r} is claimed for two tiers: {tier_of[name][0]!r} "
                                 f"({tier_of[name][1]}) and {tier!r}")
                continue
            tier_of[name] = (tier, path)
        for name, (tier, _) in tier_of.items():
            model = export.models.get(name)
            if model is not None and model.model_type == ModelType.IMAGE:
                export.models[name] = _replace(model, quality_tier=tier)


def _replace(model: LegacyModel, **changes: Any) -> LegacyModel:
    return dataclasses.replace(model, **changes)


def _parse_constants(check: _Checker, value: Any, export: LegacyExport, providers: frozenset[str],
                     claims: _Claims) -> None:
    constants = check.obj(value, "$.constants", allowed={"text_models", "image_models"},
                          required=("text_models", "image_models"))
    if constants is None:
        return
    for section, model_type, allowed in (("text_models", ModelType.TEXT, _TEXT_MODEL_FIELDS),
                                         ("image_models", ModelType.IMAGE, _IMAGE_MODEL_FIELDS)):
        if section not in constants:
            continue
        entries = check.array(constants[section], f"$.constants.{section}")
        for i, entry in enumerate(entries or []):
            path = f"$.constants.{section}[{i}]"
            model = _parse_model(check, entry, path, model_type, allowed, providers, claims)
            if model is None:
                if isinstance(entry, dict) and isinstance(entry.get("model_name"), str):
                    claims.broken.add(entry["model_name"].strip())
                continue
            if model.model_name in export.models:
                check.fail(f"{path}.model_name", f"is already given at {export.models[model.model_name].path}",
                           model.model_name)
                continue
            export.models[model.model_name] = model


def _parse_model(check: _Checker, entry: Any, path: str, model_type: str, allowed: set[str],
                 providers: frozenset[str], claims: _Claims) -> LegacyModel | None:
    required = ("model_name", "provider") + (("credits_per_image",) if model_type == ModelType.IMAGE else ())
    obj = check.obj(entry, path, allowed=allowed, required=required)
    if obj is None:
        return None
    errors_before = len(check.errors)
    name = check.text(obj.get("model_name"), f"{path}.model_name") if "model_name" in obj else None
    provider = check.text(obj.get("provider"), f"{path}.provider", max_length=32) if "provider" in obj else None
    if provider is not None and provider not in providers:
        check.fail(f"{path}.provider", f"is an unknown provider; this service can use: "
                                       f"{', '.join(sorted(providers))}", provider)
    fields: dict[str, Any] = {}
    if "display_name" in obj:
        fields["display_name"] = check.text(obj["display_name"], f"{path}.display_name")
    if "is_active" in obj:
        fields["is_active"] = check.boolean(obj["is_active"], f"{path}.is_active")
    if "retires_on" in obj and obj["retires_on"] is not None:
        fields["retires_on"] = check.date(obj["retires_on"], f"{path}.retires_on")
    is_default = check.boolean(obj["is_default"], f"{path}.is_default") if "is_default" in obj else False
    if model_type == ModelType.IMAGE:
        if "credits_per_image" in obj:
            fields["credits_per_image"] = check.positive_int(obj["credits_per_image"], f"{path}.credits_per_image")
        if obj.get("usd_per_image") is not None:
            fields["usd_per_image"] = check.decimal(obj["usd_per_image"], f"{path}.usd_per_image",
                                                    low=Decimal(0), high=Decimal(999999), places=4)
        if obj.get("quality_tier") is not None:
            tier = obj["quality_tier"]
            if tier not in QualityTier.values:
                check.fail(f"{path}.quality_tier", f"must be one of {', '.join(QualityTier.values)}", tier)
            elif name:
                claims.tiers.setdefault(tier, []).append((name, f"{path}.quality_tier"))
    else:
        for price in ("input_usd_per_1m_tokens", "output_usd_per_1m_tokens"):
            if obj.get(price) is not None:
                fields[price] = check.decimal(obj[price], f"{path}.{price}", low=Decimal(0), high=Decimal(999999),
                                              places=4)
    if len(check.errors) > errors_before or not name or not provider:
        return None
    if is_default:
        claims.defaults.setdefault(model_type, []).append((name, f"{path}.is_default"))
    return LegacyModel(model_name=name, model_type=model_type, provider_id=provider, path=path,
                       **{k: v for k, v in fields.items() if v is not None})


def _parse_cost_rows(check: _Checker, value: Any, export: LegacyExport) -> dict[str, list[tuple[int, str]]]:
    """CreditCostConfig rows -> {model_name or "": [(tokens_per_credit, path)]}; "" = per operation."""
    rates: dict[str, list[tuple[int, str]]] = {}
    rows = check.array(value, "$.credit_cost_config")
    for i, row in enumerate(rows or []):
        path = f"$.credit_cost_config[{i}]"
        obj = check.obj(row, path, allowed=_COST_ROW_FIELDS, required=("tokens_per_credit",))
        if obj is None:
            continue
        model_name = obj.get("model_name")
        if model_name is not None:
            model_name = check.text(model_name, f"{path}.model_name")
        elif "operation_type" not in obj:
            check.fail(path, "needs a model_name (a rate for one text model) or an operation_type "
                             "(a rate for every text model)")
        operation = obj.get("operation_type")
        if operation is not None:
            check.text(operation, f"{path}.operation_type")
        active = check.boolean(obj["is_active"], f"{path}.is_active") if "is_active" in obj else True
        rate = check.positive_int(obj["tokens_per_credit"], f"{path}.tokens_per_credit") \
            if "tokens_per_credit" in obj else None
        if active is False:
            export.ignored.append(f"{path} (operation {operation or '-'}, model {model_name or '-'}): "
                                  f"inactive CreditCostConfig row")
            continue
        if rate is not None and (model_name or operation):
            rates.setdefault(model_name or "", []).append((rate, f"{path}.tokens_per_credit"))
    return rates


def _resolve_text_rates(check: _Checker, export: LegacyExport, rates: dict[str, list[tuple[int, str]]],
                        broken: set[str]) -> None:
    for name in rates:
        if name in broken:
            continue
        if name and name not in export.models:
            path = rates[name][0][1].rsplit(".", 1)[0] + ".model_name"
            check.fail(path, "names a model that has no entry in $.constants.text_models", name)
        elif name and export.models[name].model_type != ModelType.TEXT:
            path = rates[name][0][1].rsplit(".", 1)[0] + ".model_name"
            check.fail(path, "gives a token rate to an image model (image models are priced per image)", name)
    per_operation = rates.get("", [])
    for name, model in list(export.models.items()):
        if model.model_type != ModelType.TEXT:
            continue
        own = rates.get(name, [])
        candidates = own or per_operation
        values = {r for r, _ in candidates}
        if not values:
            check.fail(f"{model.path}.model_name", "is a text model with no rate: add a $.credit_cost_config row "
                                                   "with its model_name or an operation_type", name)
        elif len(values) > 1:
            where = ", ".join(f"{p} = {r}" for r, p in candidates)
            check.fail(candidates[0][1], f"text model {name!r} has more than one rate ({where}); add one "
                                         f"$.credit_cost_config row with its model_name to choose")
        else:
            export.models[name] = _replace(model, tokens_per_credit=values.pop())


def _parse_settings(check: _Checker, value: Any, export: LegacyExport, providers: frozenset[str],
                    claims: _Claims) -> None:
    base = "$.global_integration_settings"
    obj = check.obj(value, base, allowed=None)
    if obj is None:
        return
    for name, field_value in obj.items():
        path = f"{base}.{name}"
        key_match = _KEY_FIELD.match(name)
        if key_match:
            provider = key_match.group("provider")
            if field_value is None or field_value == "":
                continue  # an empty key field in the old singleton: nothing to move
            key = check.text(field_value, path, max_length=500, secret=True)
            if key is not None:
                target = export.keys if provider in providers else export.unused_keys
                target.append(LegacyKey(provider_id=provider, api_key=key, path=path))
        elif name not in _SETTINGS_FIELDS:
            check.fail(path, "is not a field of this format")
    for model_type, name in ((ModelType.TEXT, "default_text_model"), (ModelType.IMAGE, "default_image_model")):
        if obj.get(name) is not None:
            model_name = check.text(obj[name], f"{base}.{name}")
            if model_name:
                claims.defaults.setdefault(model_type, []).insert(0, (model_name, f"{base}.{name}"))
                claims.named.append((model_name, model_type, f"{base}.{name}"))
    if obj.get("image_quality_models") is not None:
        tiers = check.obj(obj["image_quality_models"], f"{base}.image_quality_models", allowed=set(QualityTier.values))
        for tier, model_name in (tiers or {}).items():
            if tier not in QualityTier.values:
                continue
            path = f"{base}.image_quality_models.{tier}"
            if model_name is None:
                continue
            model_name = check.text(model_name, path)
            if model_name:
                claims.tiers.setdefault(tier, []).insert(0, (model_name, path))
                claims.named.append((model_name, ModelType.IMAGE, path))
    if "image_style" in obj:
        style = check.text(obj["image_style"], f"{base}.image_style", max_length=200)
        if style is not None:
            export.settings["image_style"] = style
    if "max_in_article_images" in obj:
        count = check.int_between(obj["max_in_article_images"], f"{base}.max_in_article_images", 0, 20)
        if count is not None:
            export.settings["max_in_article_images"] = count
    if "temperature" in obj:
        temperature = check.decimal(obj["temperature"], f"{base}.temperature", low=Decimal(0), high=Decimal(2),
                                    places=2)
        if temperature is not None:
            export.settings["temperature"] = temperature
