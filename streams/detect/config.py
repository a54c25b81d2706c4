"""The versioned rule configuration (`streams/rules.toml`), loaded into a typed object."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeConfig(_Strict):
    lateness_seconds: float = Field(ge=0)


class OverstayConfig(_Strict):
    charge_per_day_idr: int = Field(gt=0)
    escalate_at_days: int = Field(gt=0)
    warn_before_days: int = Field(ge=0)


class ReportingConfig(_Strict):
    hotel_deadline_hours: float = Field(gt=0)
    checkout_grace_hours: float = Field(ge=0)
    whereabouts_silent_days: int = Field(gt=0)


class EstablishmentSilentConfig(_Strict):
    min_history_days: int = Field(ge=0)
    min_report_days: int = Field(ge=1)
    silence_factor: float = Field(gt=0)
    min_silent_days: int = Field(ge=1)


class SponsorConfig(_Strict):
    due_day: int = Field(ge=1, le=28)
    omitted_high: int = Field(ge=1)


class TppoWeights(_Strict):
    risk_destination: float
    one_way: float
    new_passport: float
    tourist_with_work_signs: float
    group_same_agent: float
    pmi_without_placement: float
    moratorium_destination: float
    previous_delay: float


class TppoConfig(_Strict):
    threshold: float = Field(gt=0)
    passport_new_days: int = Field(ge=0)
    previous_delay_days: int = Field(ge=0)
    group_window_hours: float = Field(gt=0)
    group_min_travellers: int = Field(ge=2)
    risk_countries: frozenset[str]
    moratorium_countries: frozenset[str]
    weights: TppoWeights


class RetentionConfig(_Strict):
    days: int = Field(ge=1)


class RulesConfig(_Strict):
    version: str = Field(min_length=1)
    time: TimeConfig
    stay: dict[str, int]
    overstay: OverstayConfig
    reporting: ReportingConfig
    establishment_silent: EstablishmentSilentConfig
    sponsor: SponsorConfig
    tppo: TppoConfig
    retention: RetentionConfig


def load_rules(path: Path | None = None) -> RulesConfig:
    """Read and check a rules file; a wrong or missing number is an error naming it."""
    source = path or DEFAULT_RULES
    with source.open("rb") as fh:
        return RulesConfig.model_validate(tomllib.load(fh))


@cache
def default_rules() -> RulesConfig:
    return load_rules()
