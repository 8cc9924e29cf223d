"""import_legacy_config: move an installation of the old layout into the catalog.

The import is computed as a plan (what each row would become) before anything is written, so the
dry run and the real run print the same report, and a refused import writes nothing. The rules
an operator needs to know are in docs/legacy-format.md ("How the import decides").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from creditgate.catalog import crypto
from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import (
    AIModelConfig,
    GlobalIntegrationSettings,
    ImageTier,
    IntegrationProvider,
    ModelType,
)
from creditgate.legacy.parsing import LegacyConfigError, LegacyExport, LegacyModel, legacy_export_parse

# Used only if creditgate.providers.registry cannot be imported (it is where adapters are listed):
# the providers the service ships adapters for, plus those already in the IntegrationProvider table.
FALLBACK_IMPORTABLE_PROVIDERS = frozenset({"openai", "runware"})

PROVIDERS_TABLE = "IntegrationProvider"
TIERS_TABLE = "ImageTier"
MODELS_TABLE = "AIModelConfig"
SETTINGS_TABLE = "GlobalIntegrationSettings"

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"

# Fields of a model row the import owns; everything else (sizes, parameters, notes) is left alone.
# An image model's credit rate is its tier's: it goes to ImageTier, not to the model row.
_MODEL_PRICE_FIELDS = ("tokens_per_credit", "input_usd_per_1m_tokens", "output_usd_per_1m_tokens", "usd_per_image")
# How the report names a field (the tier is stored as the tier's key).
_SHOWN = {"quality_tier_id": "quality_tier", "provider_id": "provider_id"}


@dataclass
class RowChange:
    action: str
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (before, after), display values

    def line(self) -> str:
        if self.action == UNCHANGED:
            return f"  = {self.key}: unchanged"
        if self.action == CREATE:
            shown = ", ".join(f"{name}={after}" for name, (_, after) in self.fields.items())
            return f"  + {self.key}: create ({shown})"
        shown = ", ".join(f"{name}: {before} -> {after}" for name, (before, after) in self.fields.items())
        return f"  ~ {self.key}: {shown}"


@dataclass
class ImportReport:
    dry_run: bool
    tables: dict[str, list[RowChange]] = field(
        default_factory=lambda: {PROVIDERS_TABLE: [], TIERS_TABLE: [], MODELS_TABLE: [], SETTINGS_TABLE: []})
    not_imported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for rows in self.tables.values() for row in rows if row.action == action)

    @property
    def changed(self) -> bool:
        return any(row.action != UNCHANGED for rows in self.tables.values() for row in rows)

    def lines(self) -> list[str]:
        if self.dry_run:
            head = "Dry run: nothing was written. This is what an import would do."
        else:
            head = "Imported in one transaction." if self.changed else "Imported: the catalog already matched the file."
        out = [head]
        for table, rows in self.tables.items():
            out.append(f"{table}:")
            out.extend(row.line() for row in rows) if rows else out.append("  (nothing in the file)")
        if self.not_imported:
            out.append("Not imported:")
            out.extend(f"  - {item}" for item in self.not_imported)
        if self.warnings:
            out.append("Warnings:")
            out.extend(f"  ! {item}" for item in self.warnings)
        verb = ("would create", "would change") if self.dry_run else ("created", "changed")
        out.append(f"Summary: {self.count(CREATE)} {verb[0]}, {self.count(UPDATE)} {verb[1]}, "
                   f"{self.count(UNCHANGED)} unchanged.")
        return out


def importable_provider_ids() -> frozenset[str]:
    """Providers the service can call: those with an adapter in the provider registry."""
    try:
        from creditgate.providers.registry import ADAPTERS
    except ImportError:
        existing = IntegrationProvider.objects.values_list("provider_id", flat=True)
        return FALLBACK_IMPORTABLE_PROVIDERS | frozenset(existing)
    return frozenset(ADAPTERS)


def legacy_import(*, data: dict, dry_run: bool) -> ImportReport:
    """Import a decoded legacy export. Raises LegacyConfigError (nothing written) if it cannot be."""
    export = legacy_export_parse(data=data, importable_providers=importable_provider_ids())
    if dry_run:
        return _plan(export, dry_run=True).report
    with transaction.atomic():
        # Lock the catalog rows the plan reads, so a concurrent admin edit cannot slip between
        # planning and writing and make the printed report untrue.
        list(AIModelConfig.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        plan = _plan(export, dry_run=False)
        plan.apply()
    return plan.report


@dataclass
class _Plan:
    report: ImportReport
    providers: list[tuple[IntegrationProvider, bool]] = field(default_factory=list)   # (row, is new)
    tiers: list[ImageTier] = field(default_factory=list)
    models: list[tuple[AIModelConfig, bool]] = field(default_factory=list)
    defaults_cleared: list[AIModelConfig] = field(default_factory=list)
    settings: GlobalIntegrationSettings | None = None

    def apply(self) -> None:
        for provider, _ in self.providers:
            provider.save()
        for tier in self.tiers:  # before the models that name them
            tier.save()
        # Clear replaced defaults first: the database allows one default per type at any moment.
        for model in self.defaults_cleared:
            model.save(update_fields=["is_default", "updated_at"])
        for model, _ in self.models:
            model.save()
        if self.settings is not None:
            self.settings.save()


def _plan(export: LegacyExport, *, dry_run: bool) -> _Plan:
    plan = _Plan(report=ImportReport(dry_run=dry_run))
    for key in export.unused_keys:
        plan.report.not_imported.append(
            f"{key.provider_id} API key {crypto.mask(key.api_key)} ({key.path}): this service has no adapter "
            f"for {key.provider_id}")
    plan.report.not_imported.extend(export.ignored)
    _plan_providers(export, plan)
    _plan_tiers(export, plan)
    _plan_models(export, plan)
    _plan_settings(export, plan)
    return plan


def _plan_providers(export: LegacyExport, plan: _Plan) -> None:
    keys = {k.provider_id: k.api_key for k in export.keys}
    wanted = list(dict.fromkeys([k.provider_id for k in export.keys]
                                + [m.provider_id for m in export.models.values()]))
    existing = IntegrationProvider.objects.in_bulk(wanted)
    for provider_id in wanted:
        row = existing.get(provider_id)
        key = keys.get(provider_id)
        if row is None:
            row = IntegrationProvider(provider_id=provider_id)
            if key:
                row.set_api_key(key)
            plan.providers.append((row, True))
            plan.report.tables[PROVIDERS_TABLE].append(RowChange(
                CREATE, provider_id, {"api_key": (None, crypto.mask(key) if key else "(none)")}))
            continue
        current = _current_key(row)
        if key and current != key:
            before = row.api_key_hint or ("(none)" if not row.has_key else "(set)")
            row.set_api_key(key)
            plan.providers.append((row, False))
            plan.report.tables[PROVIDERS_TABLE].append(RowChange(
                UPDATE, provider_id, {"api_key": (before, crypto.mask(key))}))
        else:
            plan.report.tables[PROVIDERS_TABLE].append(RowChange(UNCHANGED, provider_id))


def _current_key(row: IntegrationProvider) -> str | None:
    try:
        return row.get_api_key()
    except crypto.KeyDecryptionError:
        return None  # unreadable under today's keys: the file's key replaces it


def _plan_tiers(export: LegacyExport, plan: _Plan) -> None:
    """A tier's price is the file's rate of the model the file puts in that tier: what users paid
    for the tier in the old layout (every model of a tier is now sold at the tier's price)."""
    existing = ImageTier.objects.in_bulk()
    for name, legacy in export.models.items():
        if legacy.model_type != ModelType.IMAGE or legacy.credits_per_image is None:
            continue
        tier = legacy.quality_tier
        if tier is None:
            plan.report.warnings.append(
                f"{name} has no tier: its credits_per_image ({legacy.credits_per_image}) is not imported. An image "
                f"model is sold at its tier's price; give it a tier in the admin to serve it.")
            continue
        row = existing.get(tier)
        if row is None:
            plan.tiers.append(ImageTier(tier=tier, credits_per_image=legacy.credits_per_image))
            plan.report.tables[TIERS_TABLE].append(RowChange(
                CREATE, tier, {"credits_per_image": (None, str(legacy.credits_per_image))}))
        elif row.credits_per_image != legacy.credits_per_image:
            before = row.credits_per_image
            row.credits_per_image = legacy.credits_per_image
            plan.tiers.append(row)
            plan.report.tables[TIERS_TABLE].append(RowChange(
                UPDATE, tier, {"credits_per_image": (str(before), str(legacy.credits_per_image))}))
        else:
            plan.report.tables[TIERS_TABLE].append(RowChange(UNCHANGED, tier))


def _plan_models(export: LegacyExport, plan: _Plan) -> None:
    today = timezone.localdate()
    existing = {m.model_name: m for m in AIModelConfig.objects.filter(model_name__in=list(export.models))}
    # Who serves each tier now. The import never takes a tier from its current active models.
    tier_holders: dict[str, list[str]] = {}
    for tier, name in (AIModelConfig.objects.filter(is_active=True, quality_tier__isnull=False)
                       .order_by("priority", "model_name").values_list("quality_tier", "model_name")):
        tier_holders.setdefault(tier, []).append(name)
    errors = [{"path": f"{m.path}.model_name",
               "message": f"is a {existing[name].model_type} model in the catalog but a {m.model_type} model in "
                          f"the file (got {name!r})", "value": name}
              for name, m in export.models.items() if name in existing and existing[name].model_type != m.model_type]
    if errors:
        raise LegacyConfigError(errors)

    targets: dict[str, dict[str, Any]] = {}
    for name, legacy in export.models.items():
        targets[name] = _model_target(legacy, existing.get(name), tier_holders, today, plan.report)
    _assign_defaults(export, existing, targets, plan)

    for name, legacy in export.models.items():
        row = existing.get(name)
        target = targets[name]
        if row is None:
            row = AIModelConfig(model_name=name, display_name=legacy.display_name or name,
                                model_type=legacy.model_type, **target)
            plan.models.append((row, True))
            shown = {"model_type": (None, legacy.model_type)}
            shown.update({_SHOWN.get(k, k): (None, _display(v)) for k, v in target.items() if v is not None})
            plan.report.tables[MODELS_TABLE].append(RowChange(CREATE, name, shown))
            continue
        diff = {_SHOWN.get(k, k): (_display(_value(row, k)), _display(v)) for k, v in target.items()
                if _value(row, k) != v}
        if diff:
            for k, v in target.items():
                setattr(row, k, v)
            plan.models.append((row, False))
            plan.report.tables[MODELS_TABLE].append(RowChange(UPDATE, name, diff))
        else:
            plan.report.tables[MODELS_TABLE].append(RowChange(UNCHANGED, name))


def _model_target(legacy: LegacyModel, row: AIModelConfig | None, tier_holders: dict[str, list[str]],
                  today: dt.date, report: ImportReport) -> dict[str, Any]:
    """The values of the import's fields for one model (is_default is decided afterwards)."""
    target: dict[str, Any] = {"provider_id": legacy.provider_id}
    for price in _MODEL_PRICE_FIELDS:
        value = getattr(legacy, price)
        if value is not None or price == "tokens_per_credit":
            target[price] = value
    if legacy.retires_on is not None:
        target["retires_on"] = legacy.retires_on
    retires_on = legacy.retires_on or (row.retires_on if row else None)
    retired = retires_on is not None and retires_on <= today

    if row is not None and row.is_active:
        # An active model keeps its tier and stays active: moving or deactivating it could leave a
        # tier unserved or make the outcome depend on the order of rows.
        if legacy.model_type == ModelType.IMAGE:
            tier = row.quality_tier_id
            if tier is None and legacy.quality_tier and set(tier_holders.get(legacy.quality_tier, [])) <= {
                    row.model_name}:
                tier = legacy.quality_tier
            elif legacy.quality_tier != tier:
                report.warnings.append(f"{row.model_name} keeps tier {tier or '(none)'}: it is active, and the import "
                                       f"does not move an active model (the file says "
                                       f"{legacy.quality_tier or '(none)'}).")
            target["quality_tier_id"] = tier
        if not legacy.is_active:
            report.warnings.append(f"{row.model_name} stays active: the import never deactivates a model; "
                                   f"deactivate it in the admin if you mean to.")
        target["is_active"] = True
        return target

    tier = (legacy.quality_tier or (row.quality_tier_id if row else None)) \
        if legacy.model_type == ModelType.IMAGE else None
    holder = ", ".join(tier_holders[tier]) if tier and tier_holders.get(tier) else None
    active = legacy.is_active and not retired and holder is None
    if legacy.model_type == ModelType.IMAGE:
        target["quality_tier_id"] = tier
    target["is_active"] = active
    if legacy.is_active and retired and retires_on is not None:  # (retired says it is not None)
        report.warnings.append(f"{legacy.model_name} {'stays' if row else 'is imported'} inactive: "
                               f"its provider retired it on {retires_on.isoformat()}."
                               + (f" Tier {tier} stays with {holder}." if holder else
                                  f" Tier {tier} has no active model: choose one in the admin." if tier else ""))
    elif legacy.is_active and holder is not None:
        report.warnings.append(f"{legacy.model_name} {'stays' if row else 'is imported'} inactive: "
                               f"tier {tier} is served by {holder}, and the import does not change who serves a tier. "
                               f"Activate it in the admin (as a backup, or first by priority) if you want it.")
    return target


def _assign_defaults(export: LegacyExport, existing: dict[str, AIModelConfig], targets: dict[str, dict[str, Any]],
                     plan: _Plan) -> None:
    current = {m.model_type: m for m in AIModelConfig.objects.filter(is_default=True)}
    for name in export.models:
        row = existing.get(name)
        # Default flags are only changed by the legacy default choice below.
        targets[name]["is_default"] = bool(row and row.is_default)
    for model_type, name in export.defaults.items():
        holder = current.get(model_type)
        if not targets[name]["is_active"]:
            kept = f"; {holder.model_name} stays the default" if holder else "; there is no default"
            plan.report.warnings.append(f"The legacy default {model_type} model {name} is not made the default: "
                                        f"it is imported inactive{kept}.")
            targets[name]["is_default"] = bool(holder and holder.model_name == name)
            continue
        targets[name]["is_default"] = True
        if holder is not None and holder.model_name != name:
            if holder.model_name in targets:
                targets[holder.model_name]["is_default"] = False
            holder.is_default = False
            plan.defaults_cleared.append(holder)
            if holder.model_name not in export.models:
                plan.report.tables[MODELS_TABLE].append(
                    RowChange(UPDATE, holder.model_name, {"is_default": (True, False)}))


def _plan_settings(export: LegacyExport, plan: _Plan) -> None:
    if not export.settings:
        return
    if plan.report.dry_run:
        # global_settings_get() would create the singleton; a dry run writes nothing.
        row = GlobalIntegrationSettings.objects.filter(pk=GlobalIntegrationSettings.SINGLETON_ID).first()
        is_new = row is None
        row = row or GlobalIntegrationSettings()
    else:
        is_new = not GlobalIntegrationSettings.objects.filter(pk=GlobalIntegrationSettings.SINGLETON_ID).exists()
        row = catalog_selectors.global_settings_get()
    diff = {}
    for name, value in export.settings.items():
        before = _value(row, name)
        if before != value or is_new:
            diff[name] = (_display(before), _display(value))
            setattr(row, name, value)
    key = "settings"
    if diff:
        plan.settings = row
        plan.report.tables[SETTINGS_TABLE].append(RowChange(CREATE if is_new else UPDATE, key, diff))
    else:
        plan.report.tables[SETTINGS_TABLE].append(RowChange(UNCHANGED, key))


def _value(row: Any, name: str) -> Any:
    value = getattr(row, name)
    if name == "temperature" and value is not None:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if isinstance(value, Decimal) or name.endswith("usd_per_1m_tokens") or name == "usd_per_image":
        return None if value is None else Decimal(str(value)).quantize(Decimal("0.0001"))
    return value


def _display(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
