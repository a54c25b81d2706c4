"""A realistic, labelled population of travellers, with the alerts the detectors must give for it.

``simulate(days, travellers, seed, start)`` makes ``days`` days of traffic from ``start`` 00:00 WIB:
foreign visitors entering at Batam Centre, Soekarno-Hatta, Ngurah Rai and Kualanamu with
VISA_EXEMPT, VOA or VISITOR_VISA (``authorised_until`` = arrival date + ``[stay]`` days - 1),
staying at hotels in Batam, Bali, Jakarta and Medan, extending a VoA, leaving; ITAS workers of the
Mojokerto sponsor living at its company mess; Indonesian citizens departing and coming home. Then,
whatever ``travellers``, the second stage's cast: companies in Mojokerto, Batam and Jakarta employing
foreigners on ITAS (permit updates naming ``sponsor_id``, monthly ``sponsor_report`` rosters) and
three guesthouses whose guests are foreign residents. Each event is in the gateway's JSON form
(``schemas/validation.py``) with a unique client ``event_id`` and a ``reported_at`` for a
trusted-clock replay, both timestamps ISO 8601 with the source's own offset (WITA +08:00 in Bali,
WIB +07:00 elsewhere). The same arguments give the same output; the second stage is drawn after the
travellers, the citizens travelling in groups after the second stage, and the unreported whereabouts
(below) after the groups, so the events of each are what they were before the next existed (the
truth too, but where a later cast's check-ins change an establishment's report days).

Most travellers behave: they check in at the hotel they declared within hours, the hotel reports
within hours (crossings within minutes), they check out and leave before their permit ends.
Labelled minorities (``Simulation.scenarios`` names each traveller's) break one rule each:
overstayers who stay on (leaving, or deported, more than ``overstay.escalate_at_days`` and at most a
year after their permit ended), who are located at a hotel (and sent home within a month of it), who
are caught leaving (one of each kind past ``overstay.escalate_at_days`` when ``days`` allow); VoA
extensions granted before expiry and reported on time, or only 1-5 days into the overstay; check-ins
reported more than a day late;
declared hotels that never report (the traveller staying past the 48 h deadline, or leaving
before it); guests leaving without a CHECK_OUT or staying 2-4 days past their expected date; late
duplicate check-ins withdrawn by a CANCEL; room CORRECTIONs; citizens whose journey reaches the
TPPO threshold, or just misses it (scores 2-4, a passport issued 30 and 31 days before), some
trying again at another checkpoint (previous_delay) or at the same one.

The second stage (``Simulation.entities`` names each establishment's and sponsor's scenario;
``scenarios`` also names the people it adds). Each sponsor's ITAS are GRANTED by its office, a few
days after the arrival for holders who arrive in the story (authorised for a year, living at the
company's address), the same day for the others, already in Indonesia, who never cross (no arrival:
no person rule concerns them). From the month it became known, a sponsor reports each calendar
month during working hours before day ``sponsor.due_day`` of the next, its roster naming (with address
and job) whom its permits name at that moment, with JOINED/LEFT changes; PT Sinar Baja Mojokerto's
workers are the itas_worker travellers. Minorities: a sponsor that stops after its first report
(sponsor.overdue for each month due before the end); one whose second report comes 1-4 days after
the due day (the overdue stands: RULES.md withdraws none); the Mojokerto pattern of more foreigners
at work than on the books, at a small scale: a ceramics firm leaving five of its nine first
permit holders off every roster (roster_mismatch, HIGH); a Batam yard listing a worker without a
permit from it and keeping one whose permit it had CANCELLED (roster_mismatch); a CANCELLED permit
that its sponsor drops from the roster (no alert). The guesthouses report check-ins on most days
(never two days running without), then go silent: for good; until reminded 4-12 days after the
alert; or with a guest of the silence's last evening typed in the next morning, after the alert
(raised, then withdrawn). Their guests' check-ins and check-outs are reported within hours, so they
raise no person rule either.

Citizens travelling in groups (scenario ``<kind>:member``, or ``<kind>:late`` for one leaving two days
after the others), drawn last: for every 30 days (at least one), a group of each kind, new Indonesian
citizens leaving one checkpoint on one flight or ferry 4-50 minutes apart (so within a few hours, and
reported in the order they left), sharing an ``agent_reference``, ``group_reference`` and/or a group
``booking_reference`` (a booking reference not shared is their own; no reference is reused across
groups or by anyone else). With ``group_min_travellers`` = n: ``group_scam_route`` (n+1 to n+3 to KHM via
SGP/MYS/THA, one-way, a job offer: base 7 or 9, the person stage screens each, the group amends),
``group_job_offer`` (n to n+2 to Bangkok one-way with a job offer: base 4, or 6 with a new passport;
the group raises the 4s), ``group_umrah`` and ``group_tour`` (pilgrims and tourists with return
tickets: base 0, or 2 with a new passport, below the threshold with the group weight too),
``group_short`` (n-1 job-offer travellers: no indicator), ``group_straggler`` (n-1 on time and one
two days later: no indicator) and ``group_straggler_of_more`` (n on time, who gain it, and one two
days later, who does not).

Unreported whereabouts, drawn last (in addition to ``travellers``; ``whereabouts.unknown`` needs more
than ``whereabouts_silent_days`` days without a hotel or sponsor report): foreign tourists
(``whereabouts_villa``, 2 per 100 travellers) who spend 2-5 nights at hotels, then 16-22 days at a
private villa or with friends, then a hotel again for a few nights before leaving (the alert stands)
or go straight to the airport (a departure after the alert leaves it standing); a rarer few
(``whereabouts_late_register``, 0.4 per 100, at least one) whose 1-3 nights at a homestay inside the
silence are typed in, without an expected check-out date, on the morning after the alert (raised,
then withdrawn; they are back at a hotel, or leave, before a new silence could end); and PT Sekupang
Marine Electrical (``roster_gap``), whose three ITAS workers arrive in the story and live in company
housing that reports to nobody, one of them (``sponsored_gap_arrives``) left off its second monthly
roster, or its second and third, then listed again without a JOINED (sponsor.roster_mismatch for those
reports). A roster entry accounts for its worker until the sponsor's next report is due (day
``due_day`` of the second month after ``period_end``'s), so a worker listed on every monthly roster is
never silent; one left off a roster goes silent 14 days after the due date the omission let pass. Workers
living at a mess that reports their check-in with the permit's end as the expected check-out (the
Mojokerto itas_worker travellers) are accounted for throughout. Existing minorities give it too:
overstayers living privately after their hotels (before and after the hotel that locates them), and
private_address visitors staying 16 days or more.

The truth is not taken from the scenarios: :func:`ground_truth` applies ``streams/detect/RULES.md``
literally to the events themselves, one person's timeline at a time (facts as known at an instant
= events reported before it; timers at their deadlines; numbers from ``streams/rules.toml``). So it
also holds what the minorities cause by the way: ``permit.expiring`` for everyone in the country
at A - 7 days with that A current (overstayers and travellers leaving in the last week included),
``report.missing`` when a late report comes after the 48 h deadline too, ``overstay.located`` when
an overstayer moves to another hotel before leaving late, and so on.

What the truth holds
    Each alert raised and **not withdrawn** by ``end``, once per (rule, subject, window); an
    amendment (the overstay reaching 60 days) is the same alert. Raised-then-withdrawn alerts (an
    overstay whose extension is reported late, the report.late of a cancelled duplicate) are in
    ``Simulation.withdrawn`` instead. A tppo.screening label that involves the group indicator (raised
    by it or amended with it) carries the extra key ``"group": true``, which is not part of its
    identity. Subject: the person (``nationality``, ``document_number``) for
    overstay, overstay.at_exit, permit.expiring, overstay.located ("person and establishment"),
    tppo.screening and whereabouts.unknown; the establishment for report.late, report.missing (the
    declared one) and report.checkout_missing ("establishment and person"). Window: the A date for
    overstay and permit.expiring, W (``YYYY-MM-DD``) for whereabouts.unknown, else the ``event_id``
    the alert is about (check-in, arrival or departure). A whereabouts.unknown label carries the extra
    key ``"office"`` (the one RULES.md names), not part of its identity either.
    Second stage: ``{"establishment_id"}`` and the last report day (``YYYY-MM-DD``) for
    establishment.silent; ``{"sponsor_id"}`` and the month (``YYYY-MM``) for sponsor.overdue, the
    report's ``event_id`` for sponsor.roster_mismatch. Every establishment that meets the rule is in
    it, whatever its scenario: with about one check-in a day, an ordinary hotel of the traveller
    population goes silent (3 days) now and then too.

The horizon
    ``end`` is the last day at 23:00 WIB. Nothing is reported in its last 10 minutes and no
    deadline lies within an hour of it (crossings happen 02:00-22:00 local time, date deadlines
    are at 00:00 WIB), so a replay that ends with a clock tick at ``end`` (plus any lateness)
    gives exactly ``truth``. Stories go on past the horizon and are cut there: an overstayer is
    still in the country at the end, a stay's check-out may come later.

Readings of RULES.md, and cases never generated because RULES.md does not settle them
(:func:`ground_truth` raises :class:`AmbiguousCase` when it meets one)
    - overstay is WITHDRAWN "when a permit update reported later moves A past the alert's A (on a
      date not before the overstay began)": read as "the new A is a date not before the first day
      of the overstay", i.e. new A > alert's A. The late extensions here were granted before the
      old A ended, so reading the parenthesis as the update's own date would keep the overstay.
    - A timer whose moment has passed when it is set: no permit update or arrival becomes known
      after its A ended or after its A - 7 (when that is after the arrival), no permit shortens A,
      no check-out deadline lies before its check-in is known.
    - No new check-in of a late-extension holder between the old A and the late report (it would
      be an overstay.located, which no permit update withdraws).
    - report.missing "has not departed by then": no departure occurs before the deadline and is
      reported after it. "No CHECK_IN ... is known": no outcome hangs on a check-in cancelled
      before the deadline or on one from an earlier trip.
    - report.checkout_missing (a) "after the person's DEPARTURE (reported)": the deadline is taken
      as the departure's ``reported_at`` + grace, and no CHECK_OUT is reported between
      ``occurred_at`` + grace and that; the departure is never known before the check-in. A person
      stays at most once at an establishment (a cancelled duplicate of the same stay aside), so a
      CHECK_OUT closes one stay.
    - CORRECTION only changes the room of a check-in that causes no alert, within 24 h of it.
      CANCEL only withdraws a late duplicate of a stay already reported, before that stay's
      CHECK_OUT. A cancelled check-in's alerts raised before the CANCEL are withdrawn; its later
      deadlines raise nothing.
    - No event is reported exactly at a deadline (reports carry odd milliseconds, deadlines are
      whole seconds), so "passes" may mean > or >=; no check-in is exactly 24 h late.
    - Dates are WIB dates (departure date, passport age); crossings are never 22:00-02:00 local,
      so a Bali checkpoint's local date is the WIB date too. ``check_in_date`` is the hotel's.
    - tppo.screening: "another checkpoint" is another ``checkpoint_id``, "before" an earlier
      ``reported_at``; ``new_passport`` when departure date - issue date <= ``passport_new_days``.
      Its group indicator: see below.

The second stage's rules, as :func:`ground_truth` applies them (where RULES.md leaves room; a
detector must do the same to match the truth)
    Facts known at an instant are the events reported before it (ordered by ``reported_at``, then
    ``event_id``); only events reported before ``end`` count. Days are WIB dates.

    tppo.screening, group indicator
      - Facts: every departure whose ``traveller.nationality`` is IDN and which has ``departure``
        details, reported before ``end``, with its base score (the person stage's: every indicator
        but ``group_same_agent``, ``previous_delay`` included). Its references: each non-empty one of
        ``group_reference``, ``agent_reference``, ``booking_reference``, as ``group:X``, ``agent:X``,
        ``booking:X`` (the same value under two names is two references). A person is (nationality,
        document number).
      - The facts are released one at a time in (``reported_at``, ``event_id``) order; at each
        release only the facts released so far are known. For a reference R and a known departure
        a of R (the anchor), the window of a is the known departures x of R with
        ``a.occurred_at - group_window_hours <= x.occurred_at <= a.occurred_at`` (both ends
        included). When a departure d is released, every window of each of d's references that
        contains d is counted, i.e. the windows of d itself and of every known departure a of R
        with ``d.occurred_at <= a.occurred_at <= d.occurred_at + group_window_hours``; if one counts
        at least ``group_min_travellers`` distinct persons, every departure in it gains
        ``group_same_agent``, at this release (a departure already gained keeps it; it gains it once,
        whichever references and windows matched). So a later-reported departure makes the earlier
        ones of its window reach the count, each at its release. Nothing is ever lost.
      - A departure that gains it: base >= ``threshold``: the person stage's label, the same (rule,
        subject, window = the departure's ``event_id``), amended, ``"group": true`` in the truth.
        Base < threshold <= base + ``weights.group_same_agent``: a new tppo.screening label, subject
        the person, window the departure's ``event_id``, ``"group": true``. Otherwise nothing.
        ``group`` is an extra key of the truth; the label's identity is (rule, subject, window).
      - Never generated (:class:`AmbiguousCase`): two departures of one reference exactly
        ``group_window_hours`` apart; a case where counting only the window ending at the departure
        released (not also the windows of known later departures that it falls in) would give
        another set of departures (only when a departure is reported after a departure of the same
        reference that left later, within the window); a person leaving again, at another
        checkpoint, after a departure whose alert only the group stage raises (``previous_delay``
        would hang on the person stage knowing that alert). The generated groups leave 4-50
        minutes apart and crossings are reported within 3 minutes, so within a reference the
        release order is the departure order, and every group member leaves once.

    establishment.silent
      - A check-in's report day is the WIB date of its ``occurred_at``. Every CHECK_IN counts,
        including one later cancelled or corrected; CHECK_OUT, CORRECTION and CANCEL do not.
      - D = the establishment's distinct known report days, L = max D (the last report day: the
        window), F = min D. History: L - F >= ``min_history_days``. Regular: at least
        ``min_report_days`` days of D lie in L-27 .. L (the 28 days ending with L).
      - Median gap: the median of the differences between consecutive days of D (its whole history
        up to L); for an even number of differences, the mean of the two middle ones (Python's
        ``statistics.median``). N = max(``min_silent_days``, ceil(``silence_factor`` x median)), in
        floating point: gaps 1, 1, 2, 2 give 1.5 and N = ceil(4.5) = 5.
      - Raised at the first instant, at or after 00:00 WIB of day L + N, at which the facts known
        give this L, the history, the regularity and this N (N is taken from the facts known then:
        a late report of an older day may change it). If they come to hold only after that moment
        (a late report of an older day), it is raised at once, on that report. Once per window.
      - WITHDRAWN when a check-in of a day d with L < d < L + N (N as raised: the days before the
        alert's moment) becomes known after it, even if the establishment has reported a newer day
        meanwhile. A check-in of day L + N or later, however late, happened after the alert: the
        silence was real and the alert stands. After a withdrawal the newest day is d, and a new
        silence from it is judged as above (at once, if its moment has passed).
    sponsor.overdue
      - A sponsor becomes known at the ``reported_at`` of the first permit update naming it or of
        its first report, whichever is first; K = that moment's WIB month. For every month M after
        K whose due moment, 00:00 WIB of day ``due_day`` of M+1, is before ``end``: the alert when
        no report of the sponsor with ``period_end`` >= the last day of M was reported before the
        due moment. Never withdrawn: a late report leaves it standing.
    sponsor.roster_mismatch
      - On each report R: the facts are the permit updates naming R's sponsor reported before R;
        for each person (nationality, document number normalised: what ``person_key`` hashes) the
        latest by ``occurred_at``; expected are those whose latest is not CANCELLED and whose
        ``valid_until`` >= R's ``period_end`` (facts carry no ``valid_from``: a permit granted after
        the period but known by the report counts). The alert when the roster's people differ from
        the expected (omitted or unlisted, in either direction). Permit updates without a
        ``sponsor_id`` are no facts.
      - Never generated (:class:`AmbiguousCase`): a person with permits naming two sponsors (each
        sponsor's detector sees its own facts only, so "latest permit fact" would differ), two
        permit facts of a person at the same ``occurred_at``, a roster naming someone twice, a
        report or check-in reported exactly at a due moment or silence deadline.

whereabouts.unknown, as :func:`ground_truth` applies it (person stage; a detector must do the same)
    - Inputs: the person's own events and every roster entry of every sponsor report that names them
      (the person as other events group them: nationality and document number, upper-cased), known
      at the report's ``reported_at``, all released in (``reported_at``, event id) order. Only
      foreigners (not IDN). In the country: the latest known crossing (by ``occurred_at``) is an
      ARRIVAL, so nobody without a known crossing (resident guests, ITAS holders already in
      Indonesia) is ever alerted.
    - Sightings and the one day each covers (a day number: the WIB date of an instant, the date
      itself for ``check_in_date``, ``expected_check_out_date``, ``check_out_date``, ``period_end``):
      the latest known ARRIVAL (by ``occurred_at``; earlier arrivals are no sighting): its WIB date;
      each known CHECK_IN not cancelled: its ``check_in_date``, or while no CHECK_OUT has closed it,
      ``max(check_in_date, expected_check_out_date)`` (no expected date: the check-in date); a
      CORRECTION replaces the check-in's dates, a CANCEL removes it; each CHECK_OUT: its
      ``check_out_date``, and it closes the one known open check-in of the person at that
      establishment whose check-in date is not after it; each roster entry: ``period_end``.
    - W = the greatest day covered; the office = that of the greatest (day, id) among the sightings
      of day W, ids being the event ids (a check-in's own, also once corrected) and, for a roster
      entry, ``<report event id>|<person key>`` (the establishment's, the checkpoint's, the sponsor's
      office). Raised at 00:00 WIB of day W + ``whereabouts_silent_days`` + 1 (if before ``end``) when
      the events reported before that instant give this W and the person in the country; once per W.
    - WITHDRAWN at the first event reported after the alert (and before ``end``) that adds or
      changes a sighting so that it covers a day in (W, W + ``whereabouts_silent_days``]: a check-in,
      a check-out (and the check-in it closes), a correction, a roster entry, a later arrival. A
      sighting of a later day, or a departure, leaves it standing.
    - Never generated (:class:`AmbiguousCase`): a check-in (or correction) released after the alert
      whose check-in date lies inside the silence but which, still open, covers a later expected
      check-out date after it ("each covering a local day" says the expected date only: no
      withdrawal; "it was a late report, not silence" says the guest was seen inside the silence);
      a sighting inside the silence released after W has moved again since the alert (a later
      sighting or a CANCEL in between: "a sighting reported later" would withdraw, following W's own
      changes would not); a W (or a return to the country) known only after its deadline has passed;
      an event reported exactly at a deadline; a roster entry reported at the same instant as
      another event of the person, or an office that would hang on the person key; a CHECK_OUT that
      closes no known check-in, or two. An overstayer found at a hotel on the silence's last day is
      found the day after instead (a check-in of that evening can be reported after midnight).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import tomllib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.samples import CHECKPOINTS as _SAMPLE_CHECKPOINTS
from connectors.samples import ESTABLISHMENTS as _SAMPLE_ESTABLISHMENTS
from connectors.samples import SPONSOR
from schemas.person import CITIZEN, normalise_document_number
from schemas.validation import parse_timestamp_ms

RULES_PATH = Path(__file__).resolve().parent.parent / "streams" / "rules.toml"

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WIB_H = 7
WITA_H = 8
_EPOCH_ORD = date(1970, 1, 1).toordinal()

Event = dict[str, Any]


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rules:
    """The numbers of ``streams/rules.toml`` that the truth depends on."""

    version: str
    stay_days: dict[str, int]
    warn_before_days: int
    escalate_at_days: int
    hotel_deadline_ms: int
    checkout_grace_ms: int
    threshold: float
    passport_new_days: int
    previous_delay_days: int
    risk_countries: frozenset[str]
    moratorium_countries: frozenset[str]
    weights: dict[str, float]
    silent_min_history_days: int
    silent_min_report_days: int
    silence_factor: float
    min_silent_days: int
    sponsor_due_day: int
    omitted_high: int
    whereabouts_silent_days: int
    group_window_ms: int = 24 * HOUR
    group_min_travellers: int = 3


def load_rules(path: Path = RULES_PATH) -> Rules:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    tppo = raw["tppo"]
    return Rules(
        version=str(raw["version"]),
        stay_days={str(k): int(v) for k, v in raw["stay"].items()},
        warn_before_days=int(raw["overstay"]["warn_before_days"]),
        escalate_at_days=int(raw["overstay"]["escalate_at_days"]),
        hotel_deadline_ms=round(float(raw["reporting"]["hotel_deadline_hours"]) * HOUR),
        checkout_grace_ms=round(float(raw["reporting"]["checkout_grace_hours"]) * HOUR),
        threshold=float(tppo["threshold"]),
        passport_new_days=int(tppo["passport_new_days"]),
        previous_delay_days=int(tppo["previous_delay_days"]),
        risk_countries=frozenset(tppo["risk_countries"]),
        moratorium_countries=frozenset(tppo["moratorium_countries"]),
        weights={str(k): float(v) for k, v in tppo["weights"].items()},
        silent_min_history_days=int(raw["establishment_silent"]["min_history_days"]),
        silent_min_report_days=int(raw["establishment_silent"]["min_report_days"]),
        silence_factor=float(raw["establishment_silent"]["silence_factor"]),
        min_silent_days=int(raw["establishment_silent"]["min_silent_days"]),
        sponsor_due_day=int(raw["sponsor"]["due_day"]),
        omitted_high=int(raw["sponsor"]["omitted_high"]),
        whereabouts_silent_days=int(raw["reporting"]["whereabouts_silent_days"]),
        group_window_ms=round(float(tppo["group_window_hours"]) * HOUR),
        group_min_travellers=int(tppo["group_min_travellers"]),
    )


# ---------------------------------------------------------------- time


def _midnight(day: date, tz_h: int = WIB_H) -> int:
    """Epoch ms of ``day`` 00:00 local time (UTC+tz_h)."""
    return ((day.toordinal() - _EPOCH_ORD) * 86_400 - tz_h * 3600) * SECOND


def _local_date(ms: int, tz_h: int = WIB_H) -> date:
    return date.fromordinal(_EPOCH_ORD + (ms + tz_h * HOUR) // DAY)


def _seconds_of_day(ms: int, tz_h: int) -> int:
    return ((ms + tz_h * HOUR) % DAY) // SECOND


def _iso(ms: int, tz_h: int) -> str:
    local = ms + tz_h * HOUR
    days, rest = divmod(local, DAY)
    hour, rest = divmod(rest, HOUR)
    minute, rest = divmod(rest, MINUTE)
    sec, milli = divmod(rest, SECOND)
    frac = f".{milli:03d}" if milli else ""
    return f"{date.fromordinal(_EPOCH_ORD + days).isoformat()}T{hour:02d}:{minute:02d}:{sec:02d}{frac}+{tz_h:02d}:00"


# ---------------------------------------------------------------- places

BATAM_CENTRE = dict(_SAMPLE_CHECKPOINTS[0])
SOEKARNO_HATTA = dict(_SAMPLE_CHECKPOINTS[1])
NGURAH_RAI = {
    "checkpoint_id": "TPI-NGURAH-RAI",
    "name": "I Gusti Ngurah Rai International Airport",
    "kind": "AIRPORT",
    "office": "KANIM-NGURAH-RAI",
}
KUALANAMU = {
    "checkpoint_id": "TPI-KUALANAMU",
    "name": "Kualanamu International Airport",
    "kind": "AIRPORT",
    "office": "KANIM-MEDAN",
}
CHECKPOINTS = [BATAM_CENTRE, SOEKARNO_HATTA, NGURAH_RAI, KUALANAMU]

_EST = {e["establishment_id"]: dict(e) for e in _SAMPLE_ESTABLISHMENTS}


def _est(eid: str, name: str, region: str, office: str) -> dict[str, str]:
    return {"establishment_id": eid, "name": name, "region": region, "office": office}


ESTABLISHMENTS: list[dict[str, str]] = [
    _EST["EST-BTM-0001"],
    _EST["EST-BTM-0002"],
    _est("EST-BTM-0003", "Harbour Bay Residence", "Kota Batam", "KANIM-BATAM"),
    _est("EST-BTM-0004", "Nongsa Point Resort", "Kota Batam", "KANIM-BATAM"),
    _EST["EST-DPS-0001"],
    _est("EST-DPS-0002", "Seminyak Garden Villas", "Kabupaten Badung", "KANIM-NGURAH-RAI"),
    _est("EST-DPS-0003", "Ubud Rice Terrace Homestay", "Kabupaten Gianyar", "KANIM-DENPASAR"),
    _est("EST-DPS-0004", "Canggu Surf Hostel", "Kabupaten Badung", "KANIM-NGURAH-RAI"),
    _est("EST-JKT-0001", "Hotel Menteng Raya", "Kota Jakarta Pusat", "KANIM-JAKARTA-PUSAT"),
    _est("EST-JKT-0002", "Thamrin Business Suites", "Kota Jakarta Pusat", "KANIM-JAKARTA-PUSAT"),
    _est("EST-JKT-0003", "Kemang Serviced Residence", "Kota Jakarta Selatan", "KANIM-JAKARTA-SELATAN"),
    _est("EST-MDN-0001", "Hotel Deli Polonia", "Kota Medan", "KANIM-MEDAN"),
    _est("EST-MDN-0002", "Tuktuk Lakeside Guesthouse", "Kabupaten Samosir", "KANIM-PEMATANG-SIANTAR"),
    _EST["EST-MJK-0001"],
]
_BY_ID = {e["establishment_id"]: e for e in ESTABLISHMENTS}
MESS = _BY_ID["EST-MJK-0001"]
_WITA_REGIONS = {"Kabupaten Badung", "Kabupaten Gianyar", "Kota Denpasar"}


def _tz_of_establishment(est: dict[str, str]) -> int:
    return WITA_H if est["region"] in _WITA_REGIONS else WIB_H


def _tz_of_checkpoint(cp: dict[str, str]) -> int:
    return WITA_H if cp["checkpoint_id"] == NGURAH_RAI["checkpoint_id"] else WIB_H


@dataclass(frozen=True)
class _Region:
    checkpoint: dict[str, str]
    hotels: tuple[str, ...]
    transport: tuple[str, ...]
    nationalities: tuple[tuple[str, float], ...]
    trip_days: tuple[int, int]


_REGIONS: dict[str, _Region] = {
    "batam": _Region(
        BATAM_CENTRE,
        ("EST-BTM-0001", "EST-BTM-0002", "EST-BTM-0003", "EST-BTM-0004"),
        ("BATAMFAST 12", "MAJESTIC 0815", "SINDO 21", "HORIZON 07"),
        (("SGP", 45), ("MYS", 20), ("CHN", 10), ("IND", 8), ("KOR", 5), ("GBR", 4), ("PHL", 4), ("AUS", 4)),
        (1, 6),
    ),
    "bali": _Region(
        NGURAH_RAI,
        ("EST-DPS-0001", "EST-DPS-0002", "EST-DPS-0003", "EST-DPS-0004"),
        ("QF 43", "JQ 35", "SQ 946", "GA 715", "KE 629", "CX 785", "VA 41"),
        (
            ("AUS", 35),
            ("CHN", 10),
            ("IND", 8),
            ("GBR", 8),
            ("USA", 8),
            ("RUS", 8),
            ("FRA", 6),
            ("NLD", 5),
            ("DEU", 6),
            ("KOR", 3),
            ("JPN", 3),
        ),
        (4, 21),
    ),
    "jakarta": _Region(
        SOEKARNO_HATTA,
        ("EST-JKT-0001", "EST-JKT-0002", "EST-JKT-0003"),
        ("GA 826", "SQ 952", "JL 725", "KE 627", "CZ 387", "GA 87"),
        (("JPN", 20), ("KOR", 15), ("CHN", 15), ("SGP", 10), ("USA", 10), ("NLD", 10), ("IND", 10), ("MYS", 10)),
        (2, 12),
    ),
    "medan": _Region(
        KUALANAMU,
        ("EST-MDN-0001", "EST-MDN-0002"),
        ("MH 861", "AK 372", "SQ 926", "OD 326"),
        (("MYS", 60), ("SGP", 15), ("CHN", 10), ("NLD", 10), ("DEU", 5)),
        (3, 10),
    ),
}
_REGION_WEIGHTS = (("batam", 30), ("bali", 40), ("jakarta", 20), ("medan", 10))


def _next_month(first: date) -> date:
    """The first day of the month after the one ``first`` lies in."""
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _key_of(identity: dict[str, Any]) -> tuple[str, str]:
    """The person a report names: nationality and normalised document number (what person_key hashes)."""
    return str(identity["nationality"]).upper(), normalise_document_number(str(identity["document_number"]))


def _occ_key(body: Event) -> tuple[int, str]:
    return parse_timestamp_ms(body["occurred_at"]), str(body["event_id"])


def _longest(stays: list[_Stay]) -> _Stay:
    return max(stays, key=lambda s: (s.check_out or s.check_in + 365 * DAY) - s.check_in)


def _region_of(est: dict[str, str]) -> str:
    return next(k for k, v in _REGIONS.items() if est["establishment_id"] in v.hotels)


def _tz_of_office(office: str) -> int:
    return WITA_H if office in ("KANIM-NGURAH-RAI", "KANIM-DENPASAR") else WIB_H


_VISA_EXEMPT = frozenset({"SGP", "MYS", "THA", "PHL", "BRN", "VNM"})

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "SGP": (
        ("Wei Ming", "Hui Min", "Jun Jie", "Siew Ling", "Rajesh", "Nur Aisyah"),
        ("Tan", "Lim", "Lee", "Ng", "Goh"),
    ),
    "MYS": (
        ("Ahmad Faiz", "Nurul Huda", "Kok Wai", "Mei Ling", "Muthu", "Siti Aminah"),
        ("Ismail", "Hassan", "Chong", "Yap", "Raman", "Abdullah"),
    ),
    "CHN": (("Wei", "Fang", "Jun", "Li Na", "Hao", "Xiu Ying"), ("Wang", "Li", "Zhang", "Liu", "Chen", "Zhao")),
    "AUS": (("Olivia", "Jack", "Charlotte", "Liam", "Mia", "Noah"), ("Smith", "Jones", "Williams", "Brown", "Wilson")),
    "USA": (
        ("Emma", "James", "Ava", "Michael", "Sophia", "Ethan"),
        ("Johnson", "Miller", "Davis", "Garcia", "Anderson"),
    ),
    "GBR": (
        ("Oliver", "Amelia", "Harry", "Isla", "George", "Poppy"),
        ("Evans", "Thomas", "Roberts", "Walker", "Hughes"),
    ),
    "FRA": (
        ("Lucas", "Chloe", "Hugo", "Manon", "Louis", "Camille"),
        ("Martin", "Bernard", "Dubois", "Durand", "Moreau"),
    ),
    "NLD": (
        ("Sanne", "Daan", "Lotte", "Bram", "Femke", "Ruben"),
        ("de Vries", "Jansen", "van Dijk", "Bakker", "Visser"),
    ),
    "DEU": (
        ("Lukas", "Anna", "Felix", "Lea", "Jonas", "Marie"),
        ("Mueller", "Schmidt", "Schneider", "Fischer", "Weber"),
    ),
    "RUS": (
        ("Olga", "Dmitry", "Anna", "Sergey", "Elena", "Ivan"),
        ("Ivanov", "Smirnova", "Kuznetsov", "Popova", "Sokolov"),
    ),
    "KOR": (("Ji-ho", "Seo-yeon", "Min-jun", "Ha-eun", "Do-yoon", "Ji-woo"), ("Kim", "Lee", "Park", "Choi", "Jung")),
    "JPN": (("Yuki", "Haruto", "Sakura", "Ren", "Aoi", "Sota"), ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe")),
    "IND": (("Arjun", "Priya", "Rahul", "Ananya", "Vikram", "Sneha"), ("Sharma", "Patel", "Singh", "Iyer", "Reddy")),
    "PHL": (("Maria", "Jose", "Angel", "Mark", "Kristine", "John Paul"), ("Santos", "Reyes", "Cruz", "Bautista")),
    CITIZEN: (
        ("Siti", "Budi", "Dewi", "Agus", "Rina", "Eko", "Wahyu", "Nur", "Putri", "Andi"),
        ("Rahayu", "Santoso", "Lestari", "Saputra", "Wijaya", "Hidayat", "Kurniawan", "Susanti"),
    ),
}
_PRIVATE_ADDRESSES = (
    "Villa Sawah Indah, Jl. Raya Pengosekan, Ubud",
    "Jl. Pantai Berawa 12, Canggu",
    "Rumah keluarga, Jl. Sudirman 45, Batam",
    "Apartemen Kalibata City Tower C, Jakarta Selatan",
    "Jl. Gatot Subroto 201, Medan",
)


# ---------------------------------------------------------------- establishments and sponsors (second stage)


@dataclass(frozen=True)
class _QuietHotel:
    """A small guesthouse whose guests are foreign residents (no crossing in the story); it reports
    check-ins on most days, then goes silent: for good, until the office reminds it, or with a check-in
    of the silence's last evening typed in the next morning, after the silence alert (withdrawn)."""

    est: dict[str, str]
    scenario: str  # silent_for_good | silent_resumes | silent_late_report
    nationalities: tuple[tuple[str, float], ...]


_QUIET_HOTELS: tuple[_QuietHotel, ...] = (
    _QuietHotel(
        _est("EST-MJK-0002", "Hotel Raden Wijaya Trowulan", "Kabupaten Mojokerto", "KANIM-MALANG"),
        "silent_resumes",
        (("CHN", 40), ("KOR", 20), ("JPN", 15), ("IND", 15), ("MYS", 10)),
    ),
    _QuietHotel(
        _est("EST-JKT-0004", "Wisma Cikini Guesthouse", "Kota Jakarta Pusat", "KANIM-JAKARTA-PUSAT"),
        "silent_for_good",
        (("JPN", 25), ("KOR", 20), ("CHN", 15), ("USA", 10), ("NLD", 10), ("AUS", 10), ("IND", 10)),
    ),
    _QuietHotel(
        _est("EST-BTM-0005", "Sekupang Bay Guesthouse", "Kota Batam", "KANIM-BATAM"),
        "silent_late_report",
        (("SGP", 35), ("MYS", 25), ("CHN", 15), ("IND", 10), ("PHL", 10), ("KOR", 5)),
    ),
)


@dataclass(frozen=True)
class _SponsorSpec:
    """A company employing foreigners on ITAS it sponsors (``sponsor_id`` on their permits)."""

    sponsor: dict[str, str]
    scenario: str
    hires: int  # ITAS granted in the first two weeks
    later: int  # ... and later on
    arriving: float  # share of hires who arrive from abroad in the story (the others are already here)
    checkpoint: dict[str, str]
    nationalities: tuple[tuple[str, float], ...]
    address: str
    jobs: tuple[str, ...]
    work_location: str | None = None
    hidden: int = 0  # roster_omits: hires never put on the roster
    cancelled: int = 0  # permits cancelled (the worker leaves the company)
    gap: int = 0  # roster_gap: hires (after the hidden ones) left off some monthly rosters, then listed again


def _sponsor(sid: str, name: str, region: str, office: str) -> dict[str, str]:
    return {"sponsor_id": sid, "name": name, "region": region, "office": office}


_SPONSORS: tuple[_SponsorSpec, ...] = (
    _SponsorSpec(  # its ITAS workers are the itas_worker travellers
        dict(SPONSOR),
        "regular",
        0,
        0,
        1.0,
        SOEKARNO_HATTA,
        (("CHN", 1),),
        f"Mess {SPONSOR['name']}, Ngoro, Mojokerto",
        ("Furnace engineer", "Rolling mill technician", "Metallurgist", "Quality control supervisor"),
    ),
    _SponsorSpec(  # the Mojokerto pattern: more foreigners at work than on the sponsor's books
        _sponsor("SPN-MJK-0002", "PT Ngoro Keramik Industri", "Kabupaten Mojokerto", "KANIM-MALANG"),
        "roster_omits",
        9,
        2,
        0.0,
        SOEKARNO_HATTA,
        (("CHN", 75), ("IND", 15), ("KOR", 10)),
        "Perumahan Ngoro Industri Blok C, Mojokerto",
        ("Kiln operator", "Glaze technician", "Production supervisor", "Maintenance engineer"),
        "Kawasan Industri Ngoro, Mojokerto",
        hidden=5,
    ),
    _SponsorSpec(
        _sponsor("SPN-MJK-0003", "CV Trawas Mebel Jati", "Kabupaten Mojokerto", "KANIM-MALANG"),
        "stops_reporting",
        3,
        0,
        0.0,
        SOEKARNO_HATTA,
        (("CHN", 50), ("MYS", 30), ("IND", 20)),
        "Jl. Raya Trawas 88, Mojokerto",
        ("Furniture designer", "Export manager", "Finishing specialist"),
    ),
    _SponsorSpec(
        _sponsor("SPN-BTM-0001", "PT Batamindo Shipyard Engineering", "Kota Batam", "KANIM-BATAM"),
        "regular_with_cancellation",
        6,
        2,
        0.4,
        BATAM_CENTRE,
        (("SGP", 25), ("MYS", 20), ("IND", 20), ("PHL", 20), ("KOR", 15)),
        "Mess Batamindo, Jl. Brigjen Katamso, Tanjung Uncang, Batam",
        ("Naval architect", "Welding inspector", "Project engineer", "Safety officer", "Crane supervisor"),
        "Galangan Tanjung Uncang, Batam",
        cancelled=1,
    ),
    _SponsorSpec(
        _sponsor("SPN-BTM-0002", "PT Tanjung Uncang Offshore Fabrication", "Kota Batam", "KANIM-BATAM"),
        "roster_unlisted",
        4,
        1,
        0.0,
        BATAM_CENTRE,
        (("PHL", 40), ("IND", 30), ("MYS", 30)),
        "Asrama PT TUOF, Jl. Trans Barelang, Batam",
        ("Welding foreman", "Pipe fitter", "Rigging supervisor", "QA/QC inspector"),
        "Yard TUOF, Tanjung Uncang, Batam",
        cancelled=1,
    ),
    _SponsorSpec(
        _sponsor("SPN-JKT-0001", "PT Nusantara Data Teknologi", "Kota Jakarta Selatan", "KANIM-JAKARTA-SELATAN"),
        "reports_late",
        5,
        2,
        0.5,
        SOEKARNO_HATTA,
        (("JPN", 25), ("KOR", 20), ("IND", 25), ("SGP", 15), ("USA", 15)),
        "Apartemen Kemang Village Tower B, Jakarta Selatan",
        ("Software architect", "Data engineer", "Head of product", "Cloud consultant"),
        "Menara Sentraya lt. 21, Jakarta Selatan",
    ),
)


# drawn last (see _Generator.whereabouts_cast): its workers arrive and live in company housing that reports
# to nobody; the sponsor leaves one of them off one or two monthly rosters, then lists them again
_GAP_SPONSOR = _SponsorSpec(
    _sponsor("SPN-BTM-0003", "PT Sekupang Marine Electrical", "Kota Batam", "KANIM-BATAM"),
    "roster_gap",
    3,
    0,
    1.0,
    BATAM_CENTRE,
    (("PHL", 40), ("IND", 30), ("KOR", 30)),
    "Rumah dinas PT SME, Perumahan Sekupang Indah, Batam",
    ("Marine electrician", "Electrical supervisor", "Commissioning engineer"),
    "Galangan Sekupang, Batam",
    gap=1,
)


# ---------------------------------------------------------------- citizens travelling in groups


@dataclass(frozen=True)
class _GroupSpec:
    """Citizens leaving together through one checkpoint, sharing some of their references."""

    kind: str
    members: int  # leaving within a few hours of each other ...
    extra: int  # ... plus 0 to this many more
    late: int  # members leaving two days after the others (outside the window)
    regions: tuple[str, ...]
    shared: tuple[str, ...]  # which of agent, group, booking the members share
    profile: str  # see _Generator.group_journey
    new_passport: float  # share of members with a passport issued days before
    returns: bool


def _group_specs(rules: Rules) -> tuple[_GroupSpec, ...]:
    n = rules.group_min_travellers
    return (
        # base 7 or 9: the person stage screens each; the group indicator amends them
        _GroupSpec("group_scam_route", n + 1, 2, 0, ("batam",), ("agent", "group"), "scam_route", 0.5, False),
        # base 4 or 6: the group indicator raises the 4s (and amends the 6s)
        _GroupSpec("group_job_offer", n, 2, 0, ("jakarta", "medan"), ("agent", "booking"), "job_offer", 0.3, False),
        # base 0 or 2 (+1): ordinary tour groups never reach the threshold
        _GroupSpec("group_umrah", n + 1, 2, 0, ("jakarta", "medan"), ("agent", "group", "booking"), "umrah", 0.3, True),
        _GroupSpec("group_tour", n, 3, 0, ("jakarta", "bali"), ("group", "booking"), "tour", 0.2, True),
        # base 4, one traveller short of the count: no indicator
        _GroupSpec("group_short", n - 1, 0, 0, ("jakarta", "medan"), ("agent", "booking"), "job_offer", 0.0, False),
        # base 4, the last of the count leaves two days later: no indicator for anyone
        _GroupSpec("group_straggler", n - 1, 0, 1, ("jakarta", "medan"), ("agent",), "job_offer", 0.0, False),
        # base 4, the count on time and one more two days later: the others gain it, the latecomer does not
        _GroupSpec("group_straggler_of_more", n, 0, 1, ("jakarta", "medan"), ("agent",), "job_offer", 0.0, False),
    )


# ---------------------------------------------------------------- the result


@dataclass
class Simulation:
    """Events in replay order and the alerts the rules must give for them (see the module doc)."""

    events: list[dict[str, Any]]
    truth: list[dict[str, Any]]
    end: datetime
    rules_version: str
    withdrawn: list[dict[str, Any]] = field(default_factory=list)
    scenarios: dict[str, str] = field(default_factory=dict)  # "NAT:DOCUMENT" -> scenario of that person
    entities: dict[str, str] = field(default_factory=dict)  # establishment_id / sponsor_id -> its scenario

    def write(self, events_path: str | Path, truth_path: str | Path) -> None:
        """Both as JSON lines: ``{"kind", "event"}`` per event, one label per line."""
        for path, rows in ((events_path, self.events), (truth_path, self.truth)):
            with Path(path).open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    fh.write("\n")


class AmbiguousCase(ValueError):
    """The events hold a case whose alerts RULES.md does not settle (the simulator avoids them)."""


# ---------------------------------------------------------------- generation


@dataclass
class _Person:
    identity: dict[str, Any]
    used: set[str] = field(default_factory=set)  # establishments stayed at

    @property
    def key(self) -> str:
        return f"{self.identity['nationality']}:{self.identity['document_number']}"


@dataclass
class _Stay:
    est: dict[str, str]
    check_in: int  # occurred, ms
    check_out: int | None  # occurred, ms; None: not within the story
    expected_out: date
    reported: bool = True
    late_in: bool = False
    report_out: bool = True
    duplicate: bool = False
    correction: bool = False
    permit: str | None = None

    @property
    def tz(self) -> int:
        return _tz_of_establishment(self.est)


def _quota(travellers: int, share: float) -> int:
    n = round(travellers * share)
    return max(n, 1) if travellers >= 40 else n


_FOREIGN_SCENARIOS: tuple[tuple[str, float], ...] = (
    ("overstay_stays", 0.02),
    ("overstay_located", 0.015),
    ("overstay_exit", 0.025),
    ("voa_extension", 0.025),
    ("voa_extension_late", 0.015),
    ("hotel_late", 0.04),
    ("hotel_never_reports", 0.035),
    ("missing_departs_early", 0.02),
    ("no_checkout", 0.03),
    ("stayed_past_expected", 0.025),
    ("duplicate_cancelled", 0.02),
    ("itas_worker", 0.025),
    ("frequent_visitor", 0.03),
    ("private_address", 0.04),
    ("leaves_last_week", 0.08),
)
_CITIZEN_SCENARIOS: tuple[tuple[str, float], ...] = (
    ("tppo_fires", 0.045),
    ("tppo_near", 0.025),
    ("tppo_repeat", 0.015),
)
_CITIZEN_SHARE = 0.22
_STAY_ON_DAYS = 365  # an overstayer who stays on leaves (or is deported) at most this long after the permit
_DEPORTED_WITHIN_DAYS = 30  # an overstayer located at a hotel is sent home within this many days of leaving it
# foreigners whose whereabouts go unreported for more than whereabouts_silent_days, drawn last
_WHEREABOUTS_SCENARIOS: tuple[tuple[str, float], ...] = (
    ("whereabouts_villa", 0.02),
    ("whereabouts_late_register", 0.004),
)


class _Generator:
    def __init__(self, days: int, travellers: int, seed: int, start: date, rules: Rules) -> None:
        self.rng = random.Random(seed)
        self.days = days
        self.travellers = travellers
        self.start = start
        self.rules = rules
        self.end = _midnight(start + timedelta(days=days)) - HOUR
        self.out: list[tuple[int, str, str, Event]] = []
        self.scenarios: dict[str, str] = {}
        self._n = 0
        self._docs: set[str] = set()
        self._profiles: dict[tuple[str, ...], int] = {}
        self._repeats = 0
        self._escalated_stay = False
        self._escalated_exit = False
        self.entities: dict[str, str] = {}
        self.cancelled_staff: dict[str, set[tuple[str, str]]] = {}  # sponsor_id -> holders cancelled
        self.ghosts: dict[str, _Person] = {}  # sponsor_id -> a roster entry with no permit
        self.jobs: dict[tuple[str, str], str] = {}
        self._references: set[str] = set()  # booking, agent and group references given so far
        self.gaps: dict[str, range] = {}  # roster_gap sponsor_id -> indices of its reports leaving the gap off

    # ------------------------------------------------------------ small helpers

    def day(self, i: int) -> date:
        return self.start + timedelta(days=i)

    def day_index(self, ms: int, tz_h: int) -> int:
        return (_local_date(ms, tz_h) - self.start).days

    def at(self, i: int, seconds: int, tz_h: int) -> int:
        return _midnight(self.day(i), tz_h) + seconds * SECOND

    def secs(self, lo_h: float, hi_h: float) -> int:
        return self.rng.randrange(int(lo_h * 3600), int(hi_h * 3600))

    def delay(self, lo_s: int, hi_s: int) -> int:
        """A reporting delay; the odd milliseconds keep a report off every deadline (those are whole seconds)."""
        return self.rng.randrange(lo_s, hi_s) * SECOND + self.rng.randrange(1, 1000)

    def checkout_time(self, i: int, tz_h: int) -> int:
        return self.at(i, self.secs(7, 11.5), tz_h)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.rng.getrandbits(32):08x}-{self._n:06d}"

    def weighted(self, options: tuple[tuple[str, float], ...]) -> str:
        return self.rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]

    def person(self, nationality: str) -> _Person:
        r = self.rng
        given, surnames = _NAMES[nationality]
        while True:
            if nationality == CITIZEN:
                doc = f"{r.choice('BCEX')}{r.randrange(1_000_000, 9_999_999)}"
            else:
                doc = f"{r.choice('ABEKMNPSX')}{r.randrange(10_000_000, 99_999_999)}"
            if doc not in self._docs:
                self._docs.add(doc)
                break
        born = date(1962, 1, 1) + timedelta(days=r.randrange(365 * 42))
        return _Person(
            {
                "nationality": nationality,
                "document_type": "PASSPORT",
                "document_number": doc,
                "given_names": r.choice(given),
                "surname": r.choice(surnames),
                "date_of_birth": born.isoformat(),
            }
        )

    def emit(self, kind: str, body: Event, occurred: int, reported: int, tz_h: int) -> Event:
        body["occurred_at"] = _iso(occurred, tz_h)
        body["reported_at"] = _iso(reported, tz_h)
        self.out.append((reported, body["event_id"], kind, body))
        return body

    # ------------------------------------------------------------ events

    def crossing(
        self,
        p: _Person,
        cp: dict[str, str],
        direction: str,
        occurred: int,
        *,
        arrival: dict[str, Any] | None = None,
        departure: dict[str, Any] | None = None,
    ) -> Event:
        region = next(v for v in _REGIONS.values() if v.checkpoint["checkpoint_id"] == cp["checkpoint_id"])
        body: Event = {
            "event_id": self._id("arr" if direction == "ARRIVAL" else "dep"),
            "occurred_at": "",
            "reported_at": "",
            "direction": direction,
            "checkpoint": dict(cp),
            "traveller": dict(p.identity),
            "transport_reference": self.rng.choice(region.transport),
        }
        if arrival is not None:
            body["arrival"] = arrival
        if departure is not None:
            body["departure"] = departure
        return self.emit("border_crossing", body, occurred, occurred + self.delay(4, 180), _tz_of_checkpoint(cp))

    def guest_event(
        self, p: _Person, stay: _Stay, action: str, reported: int, room: str, corrects: str | None = None
    ) -> Event:
        prefix = {"CHECK_IN": "chk", "CHECK_OUT": "cko", "CORRECTION": "cor", "CANCEL": "cnl"}[action]
        body: Event = {"event_id": self._id(prefix), "occurred_at": "", "reported_at": "", "action": action}
        if corrects is not None:
            body["corrects_event_id"] = corrects
        body.update(
            {
                "establishment": dict(stay.est),
                "guest": dict(p.identity),
                "permit_type": stay.permit,
                "room": room,
                "check_in_date": _local_date(stay.check_in, stay.tz).isoformat(),
                "expected_check_out_date": stay.expected_out.isoformat(),
            }
        )
        occurred = stay.check_in
        if action == "CHECK_OUT":
            assert stay.check_out is not None
            body["check_out_date"] = _local_date(stay.check_out, stay.tz).isoformat()
            occurred = stay.check_out
        return self.emit("hotel_guest_event", body, occurred, reported, stay.tz)

    def office_hours(self, ms: int, tz_h: int) -> int:
        """``ms`` if it falls in office hours (08:00-16:00 local), else a moment early the next working morning."""
        sod = _seconds_of_day(ms, tz_h)
        if 8 * 3600 <= sod < 16 * 3600:
            return ms
        morning = ms - sod * SECOND + (0 if sod < 8 * 3600 else DAY)
        return morning + self.secs(8, 10) * SECOND + self.rng.randrange(1, 1000)

    def emit_stay(self, p: _Person, stay: _Stay) -> None:
        if not stay.reported:
            return
        r = self.rng
        room = f"Blok B-{r.randrange(1, 40)}" if stay.est is MESS else str(r.randrange(101, 720))
        if stay.late_in:
            reported = self.office_hours(stay.check_in + self.delay(25 * 3600, 60 * 3600), stay.tz)
        else:
            if r.random() < 0.85:
                reported = stay.check_in + self.delay(120, 3 * 3600)
            else:
                reported = stay.check_in + self.delay(3 * 3600, 12 * 3600)
            if stay.check_out is not None:  # on time means before the guest has gone (and left the country)
                reported = min(reported, max(stay.check_in + MINUTE, stay.check_out - 10 * MINUTE))
        check_in = self.guest_event(p, stay, "CHECK_IN", reported, room)
        last = reported
        if stay.correction:  # the front desk fixes the room number the same day
            fixed = room + "A" if stay.est is MESS else str(int(room) + r.choice((-2, -1, 1, 2, 100)))
            last = min(reported + self.delay(600, 5 * 3600), stay.check_in + 23 * HOUR + r.randrange(1, 1000))
            self.guest_event(p, stay, "CORRECTION", last, fixed, corrects=check_in["event_id"])
        if stay.duplicate:  # a batch re-upload sends the check-in again, late; the hotel withdraws it
            again = self.office_hours(stay.check_in + self.delay(26 * 3600, 50 * 3600), stay.tz)
            dup = self.guest_event(p, stay, "CHECK_IN", again, room)
            last = again + self.delay(1800, 6 * 3600)
            self.guest_event(p, stay, "CANCEL", last, room, corrects=dup["event_id"])
        if stay.check_out is not None and stay.report_out:
            out = max(stay.check_out + self.delay(120, 3 * 3600), last + self.delay(600, 3600))
            self.guest_event(p, stay, "CHECK_OUT", out, room)

    def extend(self, p: _Person, office: str, old_until: date, occurred: int, reported: int) -> date:
        new_until = old_until + timedelta(days=self.rules.stay_days["VOA"])
        body: Event = {
            "event_id": self._id("prm"),
            "occurred_at": "",
            "reported_at": "",
            "action": "EXTENDED",
            "permit_type": "VOA",
            "permit_number": f"VOA-{old_until.year}-{self.rng.randrange(100_000, 999_999)}",
            "holder": dict(p.identity),
            "valid_from": (old_until + timedelta(days=1)).isoformat(),
            "valid_until": new_until.isoformat(),
            "office": office,
        }
        self.emit("permit_update", body, occurred, reported, _tz_of_office(office))
        return new_until

    # ------------------------------------------------------------ a foreigner's trip

    def chain(
        self,
        p: _Person,
        regions: list[str],
        first: dict[str, str],
        first_in: int,
        last_day: int | None,
        n: int,
        permit: str,
        *,
        no_check_in: range = range(0),
        min_nights: int = 1,
    ) -> list[_Stay]:
        """Up to ``n`` consecutive hotel stays, the first at ``first`` from ``first_in``, the last
        checking out on day ``last_day`` (None: its check-out lies beyond the story). A stay's
        check-out day is the next one's check-in day; none of those falls in ``no_check_in``."""
        r = self.rng
        first_day = self.day_index(first_in, _tz_of_establishment(first))
        end_day = last_day if last_day is not None else first_day + r.randint(2, 10)
        nights = max(end_day - first_day, 1)
        allowed = [d for d in range(first_day + 1, first_day + nights) if d not in no_check_in]
        cuts = sorted(r.sample(allowed, min(n - 1, len(allowed))))
        bounds = [first_day, *cuts, first_day + nights]
        while len(bounds) > 2 and max(b - a for a, b in itertools.pairwise(bounds)) < min_nights:
            bounds.pop(r.randrange(1, len(bounds) - 1))  # at least one stay of min_nights
        stays: list[_Stay] = []
        check_in = first_in
        est = first
        for i in range(len(bounds) - 1):
            if i:
                region = regions[min(len(regions) - 1, i * len(regions) // (len(bounds) - 1))]
                free = [h for h in _REGIONS[region].hotels if h not in p.used]
                if not free:  # nowhere new to go: the previous stay lasts to the end
                    prev = stays[-1]
                    prev.check_out = None if last_day is None else self.checkout_time(end_day, prev.tz)
                    prev.expected_out = self.day(end_day)
                    break
                est = _BY_ID[r.choice(free)]
            p.used.add(est["establishment_id"])
            tz = _tz_of_establishment(est)
            out_day = bounds[i + 1]
            last = i == len(bounds) - 2
            check_out = None if last and last_day is None else self.checkout_time(out_day, tz)
            stays.append(_Stay(est, check_in, check_out, self.day(out_day), permit=permit))
            if check_out is None:
                break
            check_in = check_out + self.secs(2.5, 6) * SECOND
        return stays

    def trip(
        self,
        p: _Person,
        *,
        region: str,
        a0: int,
        permit: str,
        dep_day: int | None,
        n_stays: int,
        hotels_until: int | None = None,
        declare: bool = True,
        tweak: Callable[[list[_Stay]], None] | None = None,
        extension: tuple[int, int] | None = None,
        no_check_in: range = range(0),
        min_nights: int = 1,
    ) -> tuple[int, date, list[_Stay]]:
        """Arrive on day ``a0``, stay at ``n_stays`` hotels (the first one declared), leave on
        ``dep_day`` (None: not within the story). With ``hotels_until`` the last hotel night ends
        that day and the traveller lives at a private address afterwards."""
        r = self.rng
        reg = _REGIONS[region]
        tz = _tz_of_checkpoint(reg.checkpoint)
        last_hotel_day = hotels_until if hotels_until is not None else dep_day
        free = [h for h in reg.hotels if h not in p.used]
        first = None
        if n_stays > 0 and free and (last_hotel_day is None or last_hotel_day > a0):
            first = _BY_ID[r.choice(free)]
        arrived = self.at(a0, self.secs(6, 21), tz)
        until = self.day(a0) + timedelta(days=self.rules.stay_days[permit] - 1)
        details: dict[str, Any] = {"permit_type": permit, "authorised_until": until.isoformat()}
        if first is not None and declare:
            details["declared_establishment_id"] = first["establishment_id"]
        elif first is None:
            details["declared_address"] = r.choice(_PRIVATE_ADDRESSES)
        self.crossing(p, reg.checkpoint, "ARRIVAL", arrived, arrival=details)
        stays: list[_Stay] = []
        if first is not None:
            first_in = min(arrived + self.secs(1, 4) * SECOND, self.at(a0, 23 * 3600 + 1800, tz))
            regions = ["jakarta", "bali"] if region == "jakarta" and n_stays >= 2 and r.random() < 0.5 else [region]
            stays = self.chain(
                p,
                regions,
                first,
                first_in,
                last_hotel_day,
                n_stays,
                permit,
                no_check_in=no_check_in,
                min_nights=min_nights,
            )
        if tweak is not None:
            tweak(stays)
        if extension is not None:
            occurred, reported = extension
            on = [s for s in stays if s.check_in <= occurred and (s.check_out is None or s.check_out > occurred)]
            office = on[0].est["office"] if on else reg.checkpoint["office"]
            until = self.extend(p, office, until, occurred, reported)
        for stay in stays:
            self.emit_stay(p, stay)
        if dep_day is not None:
            if hotels_until is None and stays and stays[-1].check_out is not None:
                last = stays[-1]
                self.depart(p, _region_of(last.est), dep_day, last.check_out, arrived)
            else:
                self.depart(
                    p, region, dep_day, stays[-1].check_out if stays and stays[-1].check_out else arrived, arrived
                )
        return arrived, until, stays

    def depart(self, p: _Person, region: str, dep_day: int, after: int | None, arrived: int) -> int:
        cp = _REGIONS[region].checkpoint
        tz = _tz_of_checkpoint(cp)
        if after is not None and self.day_index(after, tz) == dep_day:
            occurred = min(after + self.secs(2, 7) * SECOND, self.at(dep_day, 21 * 3600 + 1800, tz))
        else:
            occurred = self.at(dep_day, self.secs(8, 21.5), tz)
        deadline = arrived + 2 * self.rules.hotel_deadline_ms
        if deadline - 15 * MINUTE <= occurred <= deadline + 5 * MINUTE:
            occurred = deadline - self.secs(0.5, 1) * SECOND  # not across the report.missing deadline
        assert after is None or occurred > after
        self.crossing(p, cp, "DEPARTURE", occurred)
        return occurred

    # ------------------------------------------------------------ foreign scenarios

    def foreigner(self, scenario: str) -> None:
        if scenario == "itas_worker":
            region, nationality = "jakarta", "CHN"
        elif scenario == "frequent_visitor":
            region, nationality = "batam", self.rng.choice(("SGP", "SGP", "MYS"))
        else:
            region = self.weighted(_REGION_WEIGHTS)
            options = _REGIONS[region].nationalities
            if scenario.startswith("voa_extension"):
                options = tuple(o for o in options if o[0] not in _VISA_EXEMPT)
            nationality = self.weighted(options)
        p = self.person(nationality)
        self.scenarios[p.key] = scenario
        handler: Callable[[_Person, str], None] = getattr(self, "_f_" + scenario)
        handler(p, region)

    def permit_for(self, p: _Person, *, visitor_visa: bool = True) -> str:
        if p.identity["nationality"] in _VISA_EXEMPT:
            return "VISA_EXEMPT"
        return "VISITOR_VISA" if visitor_visa and self.rng.random() < 0.15 else "VOA"

    def _fallback(self, p: _Person, region: str) -> None:
        self.scenarios[p.key] = "normal"
        self._f_normal(p, region)

    def _f_normal(self, p: _Person, region: str, *, last_week: bool = False) -> None:
        r = self.rng
        permit = self.permit_for(p)
        lo, hi = _REGIONS[region].trip_days
        length = self.rules.stay_days[permit] - r.randint(0, 8) if last_week else r.randint(lo, hi)
        a0 = r.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            for s in stays:
                if s.check_out is not None and s.check_out - s.check_in > DAY and r.random() < 0.06:
                    s.correction = True

        n = 1 if length <= 2 else r.choice((2, 2, 3, 3, 4))
        self.trip(p, region=region, a0=a0, permit=permit, dep_day=a0 + length - 1, n_stays=n, tweak=tweak)

    def _f_leaves_last_week(self, p: _Person, region: str) -> None:
        self._f_normal(p, region, last_week=True)

    def _f_private_address(self, p: _Person, region: str) -> None:
        r = self.rng
        lo, hi = _REGIONS[region].trip_days
        a0 = r.randrange(self.days)
        self.trip(p, region=region, a0=a0, permit=self.permit_for(p), dep_day=a0 + r.randint(lo, hi) - 1, n_stays=0)

    def _f_frequent_visitor(self, p: _Person, region: str) -> None:
        r = self.rng
        a0 = r.randrange(max(1, self.days - 20))
        back = a0 + r.randint(1, 3)
        self.trip(p, region=region, a0=a0, permit="VISA_EXEMPT", dep_day=back, n_stays=1)
        a1 = back + r.randint(5, 20)
        self.trip(
            p,
            region=region,
            a0=a1,
            permit="VISA_EXEMPT",
            dep_day=a1 + r.randint(1, 3),
            n_stays=1,
            declare=r.random() < 0.7,
        )

    def _overstay_start(self, stay: int, margin: int, escalate: str = "") -> tuple[int | None, bool]:
        """An arrival day whose stay ends at least ``margin`` days before the horizon's last day;
        once per ``escalate`` kind day 0, so that the overstay reaches escalate_at_days in time."""
        if escalate and stay - 1 + self.rules.escalate_at_days <= self.days - 1:
            flag = "_escalated_" + escalate
            if not getattr(self, flag):
                setattr(self, flag, True)
                return 0, True
        latest = self.days - 1 - stay - margin
        return (self.rng.randint(0, latest), False) if latest >= 0 else (None, False)

    def _f_overstay_stays(self, p: _Person, region: str) -> None:
        r = self.rng
        permit = self.permit_for(p, visitor_visa=False)
        stay = self.rules.stay_days[permit]
        a0, escalated = self._overstay_start(stay, 0, "stay")
        if a0 is None:
            return self._fallback(p, region)
        if escalated:
            self.scenarios[p.key] = "overstay_stays_escalated"
        until = a0 + stay - 1
        # months later they leave, or are deported: an overstayer does not stay for ever
        leaves = until + r.randint(self.rules.escalate_at_days + 1, _STAY_ON_DAYS)
        self.trip(
            p,
            region=region,
            a0=a0,
            permit=permit,
            dep_day=leaves if leaves <= self.days - 1 else None,
            n_stays=r.choice((1, 2)),
            hotels_until=max(a0 + 1, until - r.randint(3, 12)),
        )
        return None

    def _f_overstay_located(self, p: _Person, region: str) -> None:
        r = self.rng
        permit = self.permit_for(p, visitor_visa=False)
        stay = self.rules.stay_days[permit]
        a0, _ = self._overstay_start(stay, 1)
        if a0 is None:
            return self._fallback(p, region)
        until = a0 + stay - 1
        hotels_until = max(a0 + 1, until - r.randint(3, 12))
        arrived, _, _ = self.trip(
            p, region=region, a0=a0, permit=permit, dep_day=None, n_stays=1, hotels_until=hotels_until
        )
        found = until + r.randint(1, min(20, self.days - 1 - until))
        if found == hotels_until + self.rules.whereabouts_silent_days and found < self.days - 1:
            found += 1  # not on the silence's last day: reported after its alert, would it withdraw it?
        where = [h for reg in ("batam", "bali", "jakarta", "medan") for h in _REGIONS[reg].hotels if h not in p.used]
        est = _BY_ID[r.choice(where)]
        p.used.add(est["establishment_id"])
        tz = _tz_of_establishment(est)
        nights = r.randint(2, 8)
        out = self.checkout_time(found + nights, tz)
        self.emit_stay(
            p, _Stay(est, self.at(found, self.secs(13, 21), tz), out, self.day(found + nights), permit=permit)
        )
        deported = found + nights + r.randint(1, _DEPORTED_WITHIN_DAYS)  # found, they are sent home
        if deported <= self.days - 1:
            self.depart(p, _region_of(est), deported, out, arrived)
        return None

    def _f_overstay_exit(self, p: _Person, region: str) -> None:
        r = self.rng
        permit = self.permit_for(p, visitor_visa=False)
        stay = self.rules.stay_days[permit]
        over = r.randint(1, 25)
        a0, escalated = self._overstay_start(stay, over, "exit")
        if escalated:
            over = self.rules.escalate_at_days
            self.scenarios[p.key] = "overstay_exit_escalated"
        if a0 is None:
            over = 1
            a0, _ = self._overstay_start(stay, over)
        if a0 is None:
            return self._fallback(p, region)
        self.trip(p, region=region, a0=a0, permit=permit, dep_day=a0 + stay - 1 + over, n_stays=r.choice((1, 2, 3)))
        return None

    def _f_voa_extension(self, p: _Person, region: str, *, late: bool = False) -> None:
        r = self.rng
        stay = self.rules.stay_days["VOA"]
        latest = self.days - 2 - stay - (6 if late else 0)
        if latest < 0:
            return self._fallback(p, region)
        a0 = r.randint(0, latest)
        until = a0 + stay - 1
        tz = _tz_of_checkpoint(_REGIONS[region].checkpoint)
        occurred = self.at(until - r.randint(1, 12), self.secs(8, 15), tz)
        if late:  # typed in only days after the old permit ran out
            reported_day = until + 1 + r.randint(0, 4)
            reported = self.at(reported_day, self.secs(8, 16), tz) + r.randrange(1, 1000)
            dep_day = reported_day + r.randint(2, stay - 6)
            quiet = range(until + 1, reported_day + 1)
        else:
            reported = occurred + self.delay(60, 1800)
            dep_day = until + r.randint(3, stay)
            quiet = range(0)
        self.trip(
            p,
            region=region,
            a0=a0,
            permit="VOA",
            dep_day=dep_day,
            n_stays=r.choice((1, 2, 3)),
            extension=(occurred, reported),
            no_check_in=quiet,
        )
        return None

    def _f_voa_extension_late(self, p: _Person, region: str) -> None:
        self._f_voa_extension(p, region, late=True)

    def _f_hotel_late(self, p: _Person, region: str) -> None:
        """One stay of five nights or more is reported a day or more late (after the 48 h
        report.missing deadline too, when it is the declared hotel and late enough)."""
        r = self.rng
        a0 = r.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            _longest(stays).late_in = True

        self.trip(
            p,
            region=region,
            a0=a0,
            permit=self.permit_for(p),
            dep_day=a0 + r.randint(8, 16),
            n_stays=r.choice((1, 1, 2, 3)),
            tweak=tweak,
            min_nights=5,
        )

    def _f_hotel_never_reports(self, p: _Person, region: str) -> None:
        r = self.rng
        a0 = r.randrange(self.days)
        elsewhere = r.random() < 0.5

        def tweak(stays: list[_Stay]) -> None:
            others = [h for h in _REGIONS[region].hotels if h not in p.used]
            if elsewhere and others:  # slept at another hotel, which reports; the declared one never sees them
                stays[0].est = _BY_ID[r.choice(others)]
                p.used.add(stays[0].est["establishment_id"])
            else:
                stays[0].reported = False

        self.trip(
            p,
            region=region,
            a0=a0,
            permit=self.permit_for(p),
            dep_day=a0 + r.randint(3, 11),
            n_stays=r.choice((1, 2, 3)),
            tweak=tweak,
        )

    def _f_missing_departs_early(self, p: _Person, region: str) -> None:
        a0 = self.rng.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            for s in stays:
                s.reported = False

        self.trip(p, region=region, a0=a0, permit=self.permit_for(p), dep_day=a0 + 1, n_stays=1, tweak=tweak)

    def _f_no_checkout(self, p: _Person, region: str) -> None:
        r = self.rng
        lo, hi = _REGIONS[region].trip_days
        a0 = r.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            stays[-1].report_out = False

        self.trip(
            p,
            region=region,
            a0=a0,
            permit=self.permit_for(p),
            dep_day=a0 + r.randint(max(lo, 2), hi),
            n_stays=r.choice((1, 2, 3)),
            tweak=tweak,
        )

    def _f_stayed_past_expected(self, p: _Person, region: str) -> None:
        """The last stay lasts 2-4 days longer than the check-in said, and nobody updates it."""
        r = self.rng
        a0 = r.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            last = _longest(stays)
            assert last.check_out is not None
            out = _local_date(last.check_out, last.tz)
            k = min(r.randint(2, 4), (out - _local_date(last.check_in, last.tz)).days)
            last.expected_out = out - timedelta(days=k)

        self.trip(
            p,
            region=region,
            a0=a0,
            permit=self.permit_for(p),
            dep_day=a0 + r.randint(8, 16),
            n_stays=r.choice((1, 2, 3)),
            tweak=tweak,
            min_nights=4,
        )

    def _f_duplicate_cancelled(self, p: _Person, region: str) -> None:
        r = self.rng
        a0 = r.randrange(self.days)

        def tweak(stays: list[_Stay]) -> None:
            _longest(stays).duplicate = True

        self.trip(
            p,
            region=region,
            a0=a0,
            permit=self.permit_for(p),
            dep_day=a0 + r.randint(8, 16),
            n_stays=r.choice((1, 2, 3)),
            tweak=tweak,
            min_nights=5,
        )

    def _f_itas_worker(self, p: _Person, region: str) -> None:
        """A worker of the Mojokerto sponsor: arrives on an ITAS visa in Jakarta, lives at the company
        mess; the office issues the ITAS (same end date) days later. In the permit's last days the
        worker checks out of the mess and flies home from Jakarta the next day."""
        r = self.rng
        a0 = r.randrange(self.days)
        reg = _REGIONS[region]
        tz = _tz_of_checkpoint(reg.checkpoint)
        term = r.choice((179, 364))
        until = self.day(a0) + timedelta(days=term)
        leaves = a0 + term - r.randint(0, 3)  # the departure day, within the permit
        out = self.checkout_time(leaves - 1, WIB_H) if leaves <= self.days - 1 else None
        details = {
            "permit_type": "ITAS",
            "authorised_until": until.isoformat(),
            "declared_establishment_id": MESS["establishment_id"],
            "declared_address": f"Mess {SPONSOR['name']}, Ngoro, Mojokerto",
        }
        arrived = self.at(a0, self.secs(6, 21), tz)
        self.crossing(p, reg.checkpoint, "ARRIVAL", arrived, arrival=details)
        p.used.add(MESS["establishment_id"])
        self.emit_stay(p, _Stay(MESS, self.at(a0 + 1, self.secs(13, 20), WIB_H), out, until, permit="ITAS"))
        if out is not None:
            self.depart(p, region, leaves, out, arrived)
        issued = self.at(a0 + r.randint(3, 10), self.secs(8, 15), WIB_H)
        body: Event = {
            "event_id": self._id("prm"),
            "occurred_at": "",
            "reported_at": "",
            "action": "GRANTED",
            "permit_type": "ITAS",
            "permit_number": f"ITAS-{until.year}-{r.randrange(100_000, 999_999)}",
            "holder": dict(p.identity),
            "valid_from": self.day(a0).isoformat(),
            "valid_until": until.isoformat(),
            "sponsor_id": SPONSOR["sponsor_id"],
            "office": SPONSOR["office"],
        }
        self.emit("permit_update", body, issued, issued + self.delay(60, 1800), WIB_H)

    # ------------------------------------------------------------ citizens

    _CITIZEN_REGIONS = (("batam", 30), ("jakarta", 40), ("medan", 15), ("bali", 15))

    def citizen(self, scenario: str) -> None:
        p = self.person(CITIZEN)
        self.scenarios[p.key] = scenario
        handler: Callable[[_Person], None] = getattr(self, "_c_" + scenario)
        handler(p)

    def citizen_departure(self, p: _Person, region: str, day: int, journey: dict[str, Any]) -> None:
        cp = _REGIONS[region].checkpoint
        occurred = self.at(day, self.secs(8, 21.5), _tz_of_checkpoint(cp))
        journey = {k: v for k, v in journey.items() if v is not None}
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        journey["booking_reference"] = "".join(self.rng.choice(letters) for _ in range(6))
        self._references.add(journey["booking_reference"])
        self.crossing(p, cp, "DEPARTURE", occurred, departure=journey)

    def citizen_return(self, p: _Person, region: str, day: int) -> None:
        cp = _REGIONS[region].checkpoint
        self.crossing(p, cp, "ARRIVAL", self.at(day, self.secs(6, 21.5), _tz_of_checkpoint(cp)))

    def issued(self, day: int, age_days: int | None = None) -> str:
        age = age_days if age_days is not None else self.rng.randrange(90, 3000)
        return (self.day(day) - timedelta(days=age)).isoformat()

    def _c_ordinary(self, p: _Person) -> None:
        r = self.rng
        if r.random() < 0.4:  # Batam and Medan residents popping over to Singapore or Malaysia
            region = r.choice(("batam", "batam", "medan"))
            day = r.randrange(max(1, self.days // 3))
            passport = self.issued(day, r.randrange(200, 1500))
            for _trip in range(r.randint(2, 4)):
                dest, city = ("SGP", "Singapore") if region == "batam" and r.random() < 0.8 else ("MYS", "Johor Bahru")
                if region == "medan":
                    dest, city = "MYS", r.choice(("Kuala Lumpur", "George Town", "Melaka"))
                hop = {
                    "destination_country": dest,
                    "destination_city": city,
                    "return_ticket": True,
                    "purpose": r.choice(("TOURISM", "FAMILY", "BUSINESS", "MEDICAL")),
                    "passport_issued_on": passport,
                    "onward_route": [],
                }
                self.citizen_departure(p, region, day, hop)
                day += r.randint(1, 4)
                self.citizen_return(p, region, day)
                day += r.randint(5, 25)
            return
        region = self.weighted(self._CITIZEN_REGIONS)
        day = r.randrange(self.days)
        kind = r.random()
        returns = True
        journey: dict[str, Any]
        if kind < 0.15:
            journey = {
                "destination_country": "SAU",
                "destination_city": "Makkah",
                "purpose": "PILGRIMAGE",
                "return_ticket": True,
            }
        elif kind < 0.30:  # a migrant worker (PMI) with a placement record: one-way is normal for them
            dest, city = r.choice(
                (("TWN", "Taipei"), ("HKG", "Hong Kong"), ("KOR", "Ansan"), ("JPN", "Osaka"), ("MYS", "Kuala Lumpur"))
            )
            journey = {
                "destination_country": dest,
                "destination_city": city,
                "purpose": "WORK",
                "return_ticket": r.random() < 0.6,
                "pmi_placement_id": f"PMI-{r.randrange(10**9, 10**10)}",
            }
            returns = False
        elif kind < 0.40 and region == "medan":
            journey = {
                "destination_country": "MYS",
                "destination_city": "George Town",
                "purpose": "MEDICAL",
                "return_ticket": True,
            }
        else:
            dest, city = r.choice(
                (
                    ("SGP", "Singapore"),
                    ("MYS", "Kuala Lumpur"),
                    ("JPN", "Tokyo"),
                    ("KOR", "Seoul"),
                    ("AUS", "Perth"),
                    ("THA", "Bangkok"),
                    ("CHN", "Guangzhou"),
                    ("NLD", "Amsterdam"),
                )
            )
            journey = {
                "destination_country": dest,
                "destination_city": city,
                "purpose": r.choice(("TOURISM", "TOURISM", "FAMILY", "BUSINESS", "STUDY")),
                "return_ticket": r.choice((True, True, True, None)),
            }
        # a first passport now and then (2 points alone; never with a one-way ticket here)
        new = r.random() < 0.12 and journey["return_ticket"] is not False
        journey["passport_issued_on"] = self.issued(day, r.randint(3, 29) if new else None)
        journey["onward_route"] = []
        self.citizen_departure(p, region, day, journey)
        if returns:
            self.citizen_return(p, region, day + r.randint(3, 21))

    def journey(self, day: int, name: str, passport: str | None = None) -> dict[str, Any]:
        """Journeys of a known score (rules.toml weights: risk destination 3, one-way 2, new passport 2,
        tourist with work signs 2, PMI without placement 3, moratorium 2; threshold 5)."""
        r = self.rng
        old = passport or self.issued(day)
        new = self.issued(day, r.randint(2, 25))
        placement = f"PMI-{r.randrange(10**9, 10**10)}"
        profiles: dict[str, dict[str, Any]] = {
            # ---- at or above the threshold
            "scam_route": {
                "destination_country": "KHM",
                "destination_city": "Phnom Penh",
                "onward_route": ["SGP", "MYS", "THA"],
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": new,
                "job_offer_contact": True,
            },  # 3+2+2+2 = 9
            "khm_paid": {
                "destination_country": "KHM",
                "destination_city": "Sihanoukville",
                "return_ticket": True,
                "purpose": "TOURISM",
                "passport_issued_on": old,
                "employer_paid_travel": True,
            },  # 3+2
            "mmr_route": {
                "destination_country": "THA",
                "destination_city": "Mae Sot",
                "onward_route": ["MYS", "THA", "MMR"],
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": old,
            },  # 3+2
            "lao_new": {
                "destination_country": "LAO",
                "destination_city": "Bokeo",
                "onward_route": ["THA"],
                "return_ticket": True,
                "purpose": "BUSINESS",
                "passport_issued_on": new,
            },  # 3+2
            "illegal_pmi": {
                "destination_country": "MYS",
                "destination_city": "Johor Bahru",
                "return_ticket": False,
                "purpose": "WORK",
                "passport_issued_on": old,
            },  # 3+2
            "gulf_pmi": {
                "destination_country": "SAU",
                "destination_city": "Riyadh",
                "return_ticket": True,
                "purpose": "WORK",
                "passport_issued_on": old,
            },  # 3+2
            "job_offer": {
                "destination_country": "MYS",
                "destination_city": "Kuala Lumpur",
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": new,
                "job_offer_contact": True,
                "employer_paid_travel": True,
            },  # 2+2+2
            "gulf_placed": {
                "destination_country": "ARE",
                "destination_city": "Dubai",
                "return_ticket": False,
                "purpose": "WORK",
                "passport_issued_on": new,
                "pmi_placement_id": placement,
            },  # 2+2+2
            "khm_30_days": {
                "destination_country": "KHM",
                "destination_city": "Phnom Penh",
                "return_ticket": True,
                "purpose": "TOURISM",
                "passport_issued_on": self.issued(day, 30),
            },  # 3+2
            "khm_work": {
                "destination_country": "KHM",
                "destination_city": "Bavet",
                "return_ticket": True,
                "purpose": "WORK",
                "passport_issued_on": old,
            },  # 3+3
            # ---- below it
            "tha_offer": {
                "destination_country": "THA",
                "destination_city": "Bangkok",
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": old,
                "job_offer_contact": True,
            },  # 2+2
            "khm_tourist": {
                "destination_country": "KHM",
                "destination_city": "Siem Reap",
                "return_ticket": True,
                "purpose": "TOURISM",
                "passport_issued_on": old,
            },  # 3
            "sgp_new_one_way": {
                "destination_country": "SGP",
                "destination_city": "Singapore",
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": new,
            },  # 2+2
            "pmi_new_one_way": {
                "destination_country": "TWN",
                "destination_city": "Taichung",
                "return_ticket": False,
                "purpose": "WORK",
                "passport_issued_on": new,
                "pmi_placement_id": placement,
            },  # 2+2
            "khm_31_days": {
                "destination_country": "KHM",
                "destination_city": "Phnom Penh",
                "return_ticket": True,
                "purpose": "TOURISM",
                "passport_issued_on": self.issued(day, 31),
            },  # 3
            "gulf_placed_one_way": {
                "destination_country": "SAU",
                "destination_city": "Jeddah",
                "return_ticket": False,
                "purpose": "WORK",
                "passport_issued_on": old,
                "pmi_placement_id": placement,
            },  # 2+2
            "pmi_return": {
                "destination_country": "MYS",
                "destination_city": "Kuching",
                "return_ticket": True,
                "purpose": "WORK",
                "passport_issued_on": old,
            },  # 3
            "khm_not_asked": {
                "destination_country": "KHM",
                "destination_city": "Phnom Penh",
                "return_ticket": None,
                "purpose": "TOURISM",
                "passport_issued_on": old,
                "job_offer_contact": False,
            },  # 3
            "tha_one_way": {
                "destination_country": "THA",
                "destination_city": "Bangkok",
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": old,
            },  # 2
        }
        journey = dict(profiles[name])
        journey.setdefault("onward_route", [])
        return journey

    FIRING = (
        "scam_route",
        "khm_paid",
        "mmr_route",
        "lao_new",
        "illegal_pmi",
        "gulf_pmi",
        "job_offer",
        "gulf_placed",
        "khm_30_days",
        "khm_work",
    )
    BELOW = (
        "tha_offer",
        "khm_tourist",
        "sgp_new_one_way",
        "pmi_new_one_way",
        "khm_31_days",
        "gulf_placed_one_way",
        "pmi_return",
        "khm_not_asked",
    )

    def _next(self, names: tuple[str, ...]) -> str:
        """Each profile in turn, so that every one occurs once the population is large enough."""
        self._profiles[names] = self._profiles.get(names, -1) + 1
        return names[self._profiles[names] % len(names)]

    def _c_tppo_fires(self, p: _Person) -> None:
        day = self.rng.randrange(self.days)
        name = self._next(self.FIRING)
        self.scenarios[p.key] = "tppo_fires:" + name
        batam = name in ("scam_route", "illegal_pmi", "job_offer")
        region = "batam" if batam else self.weighted(self._CITIZEN_REGIONS)
        self.citizen_departure(p, region, day, self.journey(day, name))

    def _c_tppo_near(self, p: _Person) -> None:
        r = self.rng
        day = r.randrange(self.days)
        name = self._next(self.BELOW)
        self.scenarios[p.key] = "tppo_near:" + name
        region = self.weighted(self._CITIZEN_REGIONS)
        self.citizen_departure(p, region, day, self.journey(day, name))
        if r.random() < 0.5:
            self.citizen_return(p, region, day + r.randint(4, 20))

    def _c_tppo_repeat(self, p: _Person) -> None:
        """Screened (or not) at Batam Centre, tries again days later with a weaker story (one-way: 2)."""
        r = self.rng
        variant = ("another_checkpoint", "same_checkpoint", "first_below")[self._repeats % 3]
        self._repeats += 1
        self.scenarios[p.key] = "tppo_repeat:" + variant
        day = r.randrange(max(1, self.days - 12))
        passport = self.issued(day)
        first = "tha_offer" if variant == "first_below" else "khm_paid"
        self.citizen_departure(p, "batam", day, self.journey(day, first, passport))
        region = "batam" if variant == "same_checkpoint" else r.choice(("jakarta", "medan", "bali"))
        again = day + r.randint(2, 10)
        self.citizen_departure(p, region, again, self.journey(again, "tha_one_way", passport))

    # ------------------------------------------------------------ the population

    def run(self) -> None:
        n = self.travellers
        tags: list[tuple[str, str]] = []
        for name, share in _CITIZEN_SCENARIOS:
            tags += [("citizen", name)] * _quota(n, share)
        tags += [("citizen", "ordinary")] * max(0, round(n * _CITIZEN_SHARE) - len(tags))
        for name, share in _FOREIGN_SCENARIOS:
            tags += [("foreigner", name)] * _quota(n, share)
        tags += [("foreigner", "normal")] * max(0, n - len(tags))
        tags = tags[:n]
        self.rng.shuffle(tags)
        for who, scenario in tags:
            if who == "citizen":
                self.citizen(scenario)
            else:
                self.foreigner(scenario)
        self.second_stage()
        self.groups()
        self.whereabouts_cast()

    # ------------------------------------------------------------ unreported whereabouts (drawn last)

    def whereabouts_cast(self) -> None:
        """Drawn after everything else, so that the rest of the events stay as they were for a seed:
        foreigners who stay somewhere that reports to nobody for more than
        ``whereabouts_silent_days`` (a few per 100 travellers), and the roster_gap sponsor."""
        for name, share in _WHEREABOUTS_SCENARIOS:
            for _ in range(_quota(self.travellers, share)):
                self.foreigner(name)
        self.sponsor_staff(_GAP_SPONSOR)
        self.sponsor_reports(_GAP_SPONSOR)

    def _f_whereabouts_villa(self, p: _Person, region: str) -> None:
        """Two to five nights at hotels, then 16-22 days at a private villa or with friends (nobody reports
        them), then a hotel again for a few nights before leaving, or straight to the airport."""
        r = self.rng
        permit = self.permit_for(p)
        silent = self.rules.whereabouts_silent_days
        hotel = r.randint(2, 5)
        back = r.random() < 0.6
        nights = r.randint(1, 4) if back else 0
        # within the permit when it allows (not a story of overstaying)
        gap = r.randint(silent + 2, max(silent + 2, min(silent + 8, self.rules.stay_days[permit] - 2 - hotel - nights)))
        latest = self.days - 1 - hotel - silent - 2  # the silence's alert within the story when it can be
        a0 = r.randint(0, latest) if latest >= 0 else r.randrange(self.days)
        w = a0 + hotel
        arrived, _, _ = self.trip(
            p, region=region, a0=a0, permit=permit, dep_day=None, n_stays=r.choice((1, 1, 2)), hotels_until=w
        )
        self.reappear(p, region, arrived, w + gap, nights if back else 0, permit)

    def _f_whereabouts_late_register(self, p: _Person, region: str) -> None:
        """Hotels, then friends, then one to three nights at a homestay that types in its guest register
        (without an expected check-out date) on the morning after the silence's alert, then friends again;
        back at a hotel or leaving before a new silence could end."""
        r = self.rng
        permit = self.permit_for(p)
        silent = self.rules.whereabouts_silent_days
        stay = self.rules.stay_days[permit]
        hotel = r.randint(2, 4)
        latest = self.days - 1 - hotel - silent - 2
        a0 = r.randint(0, latest) if latest >= 0 else r.randrange(self.days)
        w = a0 + hotel
        arrived, _, _ = self.trip(p, region=region, a0=a0, permit=permit, dep_day=None, n_stays=1, hotels_until=w)
        free = [h for h in _REGIONS[region].hotels if h not in p.used]
        if not free:
            return self.reappear(p, region, arrived, w + silent + 2, 0, permit)
        est = _BY_ID[r.choice(free)]
        p.used.add(est["establishment_id"])
        tz = _tz_of_establishment(est)
        check_in = w + r.randint(max(1, silent - 8), max(1, silent - 5))
        out = check_in + r.randint(1, 3)  # <= w + silent - 2
        homestay = _Stay(est, self.at(check_in, self.secs(12, 20), tz), self.checkout_time(out, tz), self.day(out))
        homestay.permit = permit
        typed = self.at(w + silent + 1, self.secs(8, 11), tz) + r.randrange(1, 1000)  # after 00:00 WIB
        room = str(r.randrange(1, 12))
        for action, at in (("CHECK_IN", typed), ("CHECK_OUT", typed + self.delay(20, 300))):
            body = self.guest_event(p, homestay, action, at, room)
            del body["expected_check_out_date"]
        nights = r.randint(1, 3) if r.random() < 0.6 else 0
        again = r.randint(w + silent + 2, max(w + silent + 2, min(out + silent - 2, a0 + stay - 2 - nights)))
        self.reappear(p, region, arrived, again, nights, permit)
        return None

    def reappear(self, p: _Person, region: str, arrived: int, day: int, nights: int, permit: str) -> None:
        """Back at a hotel of ``region`` on ``day`` for ``nights`` nights, then leave; or (no nights, or
        no hotel left) leave on ``day``."""
        free = [h for h in _REGIONS[region].hotels if h not in p.used]
        if not nights or not free:
            self.depart(p, region, day, None, arrived)
            return
        est = _BY_ID[self.rng.choice(free)]
        p.used.add(est["establishment_id"])
        tz = _tz_of_establishment(est)
        out = self.checkout_time(day + nights, tz)
        self.emit_stay(p, _Stay(est, self.at(day, self.secs(13, 21), tz), out, self.day(day + nights), permit=permit))
        self.depart(p, _region_of(est), day + nights, out, arrived)

    # ------------------------------------------------------------ citizens travelling in groups

    def groups(self) -> None:
        """Drawn after everything else, so that the rest of the events and truth stay as they were for a seed.
        For every 30 days (at least one): a group of each kind of :func:`_group_specs`."""
        for _ in range(max(1, self.days // 30)):
            for spec in _group_specs(self.rules):
                self.group(spec)

    def reference(self, make: Callable[[], str]) -> str:
        while True:
            ref = make()
            if ref not in self._references:
                self._references.add(ref)
                return ref

    def booking(self) -> str:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return self.reference(lambda: "".join(self.rng.choice(letters) for _ in range(6)))

    def group(self, spec: _GroupSpec) -> None:
        r = self.rng
        region = r.choice(spec.regions)
        reg = _REGIONS[region]
        cp = reg.checkpoint
        tz = _tz_of_checkpoint(cp)
        day = r.randrange(max(1, self.days - 3))
        shared = {
            "agent_reference": self.reference(lambda: f"AGT-{r.randrange(1000, 10_000)}")
            if "agent" in spec.shared
            else None,
            "group_reference": self.reference(lambda: f"GRP-{day:03d}-{r.randrange(100, 1000)}")
            if "group" in spec.shared
            else None,
            "booking_reference": self.booking() if "booking" in spec.shared else None,
        }
        transport = r.choice(reg.transport)
        on_time = spec.members + r.randint(0, spec.extra)
        # one after another, at least 4 minutes apart (more than a crossing's reporting delay: the
        # group's departures are reported in the order they happened), within about 4 hours
        occurred = self.at(day, self.secs(8, 16.5), tz)
        times = []
        for _ in range(on_time):
            times.append(occurred)
            occurred += r.randrange(4 * 60, 50 * 60) * SECOND
        times += [self.at(day + 2, self.secs(8, 21.5), tz) for _ in range(spec.late)]  # > 34 h after the last
        for k, when in enumerate(times):
            p = self.person(CITIZEN)
            self.scenarios[p.key] = f"{spec.kind}:{'late' if k >= on_time else 'member'}"
            d = self.day_index(when, tz)
            journey = self.group_journey(spec, d)
            journey.update({name: ref for name, ref in shared.items() if ref is not None})
            journey.setdefault("booking_reference", self.booking())
            body = self.crossing(p, cp, "DEPARTURE", when, departure=journey)
            body["transport_reference"] = transport
            if spec.returns:
                self.citizen_return(p, region, d + r.randint(9, 14))

    def group_journey(self, spec: _GroupSpec, day: int) -> dict[str, Any]:
        """Scores (rules.toml weights): scam_route 3+2+2 (+2 new passport), job_offer 2+2 (+2),
        umrah and tour 0 (+2); the group indicator adds 1 (threshold 5)."""
        r = self.rng
        new = r.random() < spec.new_passport
        journey: dict[str, Any] = {
            "passport_issued_on": self.issued(day, r.randint(2, 25) if new else None),
            "onward_route": [],
        }
        if spec.profile == "scam_route":
            journey.update(
                {
                    "destination_country": "KHM",
                    "destination_city": "Phnom Penh",
                    "onward_route": ["SGP", "MYS", "THA"],
                    "return_ticket": False,
                    "purpose": "TOURISM",
                    "job_offer_contact": True,
                }
            )
        elif spec.profile == "job_offer":
            journey.update(
                {
                    "destination_country": "THA",
                    "destination_city": "Bangkok",
                    "return_ticket": False,
                    "purpose": "TOURISM",
                    "job_offer_contact": True,
                }
            )
        elif spec.profile == "umrah":
            journey.update(
                {
                    "destination_country": "SAU",
                    "destination_city": "Makkah",
                    "return_ticket": True,
                    "purpose": "PILGRIMAGE",
                    "employer_paid_travel": r.random() < 0.2,  # a sponsored pilgrimage: no work sign for it
                }
            )
        else:
            dest, city = r.choice((("JPN", "Osaka"), ("KOR", "Seoul"), ("CHN", "Guangzhou"), ("TUR", "Istanbul")))
            journey.update(
                {
                    "destination_country": dest,
                    "destination_city": city,
                    "return_ticket": True,
                    "purpose": "TOURISM",
                }
            )
        return journey

    # ------------------------------------------------------------ the second stage: quiet hotels and sponsors

    def second_stage(self) -> None:
        """Drawn after the travellers, so that their events (and truth) stay as they were for a seed."""
        for hotel in _QUIET_HOTELS:
            self.quiet_hotel(hotel)
        for spec in _SPONSORS:
            self.sponsor_staff(spec)
        for spec in _SPONSORS:
            self.sponsor_reports(spec)

    def report_days(self, first: int, last: int) -> list[int]:
        """Days with a check-in: most days, never two days in a row without one."""
        out: list[int] = []
        d = first
        while d <= last:
            out.append(d)
            d += self.rng.choice((1, 1, 1, 2))
        return out

    def resident_stay(self, hotel: _QuietHotel, check_in: int, reported: int | None = None) -> None:
        """A foreign resident (no crossing in the story) staying 1-3 nights, both movements reported within
        hours (``reported``: the check-in's report time instead)."""
        r = self.rng
        p = self.person(self.weighted(hotel.nationalities))
        self.scenarios[p.key] = "resident_guest"
        tz = _tz_of_establishment(hotel.est)
        out_day = self.day_index(check_in, tz) + r.randint(1, 3)
        permit = r.choice(("ITAS", "ITAS", "ITAS", "ITAP"))
        stay = _Stay(hotel.est, check_in, self.checkout_time(out_day, tz), self.day(out_day), permit=permit)
        room = str(r.randrange(1, 24))
        self.guest_event(p, stay, "CHECK_IN", reported or check_in + self.delay(120, 3 * 3600), room)
        assert stay.check_out is not None
        self.guest_event(p, stay, "CHECK_OUT", stay.check_out + self.delay(120, 3 * 3600), room)

    def quiet_hotel(self, hotel: _QuietHotel) -> None:
        r = self.rng
        tz = _tz_of_establishment(hotel.est)
        first = r.randint(0, 3)
        latest = self.days - (8 if hotel.scenario == "silent_for_good" else 12)
        if latest < first + 21:
            return  # too short a story for a history and a silence
        days = self.report_days(first, r.randint(first + 21, latest))
        n = silence_days(days, self.rules)
        if n is None:
            return
        self.entities[hotel.est["establishment_id"]] = hotel.scenario
        for d in days:
            for _ in range(r.choice((1, 1, 1, 2))):
                self.resident_stay(hotel, self.at(d, self.secs(12, 20), tz))
        last = days[-1]
        if hotel.scenario == "silent_for_good":
            return
        if hotel.scenario == "silent_resumes":  # the office phones; reporting resumes days after the alert
            again = last + n + r.randint(4, 12)
        else:  # a guest of the silence's last evening, typed in the next morning: after the alert
            late_in = self.at(last + n - 1, self.secs(19, 22.5), tz)
            self.resident_stay(hotel, late_in, self.at(last + n, self.secs(0.3, 7.5), tz) + r.randrange(1, 1000))
            again = last + n
        for d in self.report_days(again, self.days - 1):
            for _ in range(r.choice((1, 1, 1, 2))):
                self.resident_stay(hotel, self.at(d, self.secs(12, 20), tz))

    def sponsored_permit(
        self,
        p: _Person,
        spec: _SponsorSpec,
        action: str,
        occurred: int,
        number: str,
        valid_until: date,
        valid_from: date | None = None,
    ) -> Event:
        body: Event = {
            "event_id": self._id("prm"),
            "occurred_at": "",
            "reported_at": "",
            "action": action,
            "permit_type": "ITAS",
            "permit_number": number,
            "holder": dict(p.identity),
            "valid_from": valid_from.isoformat() if valid_from is not None else None,
            "valid_until": valid_until.isoformat(),
            "sponsor_id": spec.sponsor["sponsor_id"],
            "office": spec.sponsor["office"],
        }
        return self.emit("permit_update", body, occurred, occurred + self.delay(60, 1800), WIB_H)

    def sponsor_staff(self, spec: _SponsorSpec) -> None:
        """The sponsor's ITAS holders, GRANTED by its office: those who arrive in the story a few days
        after their arrival (authorised until the permit's end, living at the company's address; their
        ITAS runs for as many years as it takes to end after the story, so that no person rule concerns
        them); the others, already in Indonesia, never cross. Some of the latter are CANCELLED a month or two later
        (none who arrived: a cancellation shortening a known stay is a case the person rules leave open)."""
        r = self.rng
        sid = spec.sponsor["sponsor_id"]
        self.entities[sid] = spec.scenario
        plan = [r.randrange(min(14, self.days)) for _ in range(spec.hires)]
        if self.days > 14:
            plan += [r.randrange(14, self.days) for _ in range(spec.later)]
        may_leave: list[tuple[_Person, int, str]] = []
        for i, day in enumerate(plan):
            p = self.person(self.weighted(spec.nationalities))
            self.scenarios[p.key] = (
                "sponsored_unreported"
                if i < spec.hidden
                else "sponsored_gap"
                if i < spec.hidden + spec.gap
                else "sponsored"
            )
            number = f"ITAS-{self.day(day).year}-{r.randrange(100_000, 999_999)}"
            until = self.day(day) + timedelta(days=364)
            if r.random() < spec.arriving:
                self.scenarios[p.key] += "_arrives"
                while (until - self.start).days - self.rules.warn_before_days < self.days:
                    until += timedelta(days=365)  # an ITAS of several years: no warning within the story
                details = {
                    "permit_type": "ITAS",
                    "authorised_until": until.isoformat(),
                    "declared_address": spec.address,
                }
                tz = _tz_of_checkpoint(spec.checkpoint)
                self.crossing(p, spec.checkpoint, "ARRIVAL", self.at(day, self.secs(6, 21), tz), arrival=details)
                granted = self.at(day + r.randint(3, 10), self.secs(8, 15), WIB_H)
            else:
                granted = self.at(day, self.secs(8, 15), WIB_H)
                if spec.hidden <= i < spec.hires:
                    may_leave.append((p, day, number))
            self.sponsored_permit(p, spec, "GRANTED", granted, number, until, self.day(day))
        for p, day, number in may_leave[: spec.cancelled]:
            if day + 30 > self.days - 3:
                continue
            gone = r.randint(day + 30, min(day + 55, self.days - 3))  # after a report or two listing them
            self.scenarios[p.key] = "sponsored_cancelled"
            self.cancelled_staff.setdefault(sid, set()).add(_key_of(p.identity))
            occurred = self.at(gone, self.secs(8, 15), WIB_H)
            self.sponsored_permit(p, spec, "CANCELLED", occurred, number, self.day(gone + r.randint(7, 30)))
        if spec.scenario == "roster_unlisted":  # on its roster, without a permit from it (working on another stay)
            ghost = self.person(self.weighted(spec.nationalities))
            self.scenarios[ghost.key] = "unlisted_worker"
            self.ghosts[sid] = ghost

    def sponsor_reports(self, spec: _SponsorSpec) -> None:
        """Monthly, for the previous calendar month, at a working-hours moment of day 1 .. due_day - 1, from
        the month in which the sponsor became known (its first permit reported). The roster is whom its
        permits name at the report's moment, except where the scenario says otherwise."""
        r = self.rng
        sid = spec.sponsor["sponsor_id"]
        due = self.rules.sponsor_due_day
        cutoff = self.end - 10 * MINUTE
        facts = sorted(
            (rep, body["event_id"], body)
            for rep, _, kind, body in self.out
            if kind == "permit_update" and body.get("sponsor_id") == sid and rep < cutoff
        )
        if not facts:
            return
        known = _local_date(facts[0][0])
        period = date(known.year, known.month, 1)
        previous: dict[tuple[str, str], Event] | None = None
        if spec.scenario == "roster_gap":  # the second report, or the second and third, leave the gap off
            self.gaps[sid] = range(1, 1 + r.choice((1, 2)))
        for n in itertools.count():
            following = _next_month(period)
            late = spec.scenario == "reports_late" and n == 1
            day_of_month = r.randint(due + 1, due + 4) if late else r.randint(1, due - 1)
            occurred = self.at((following.replace(day=day_of_month) - self.start).days, self.secs(8, 16), WIB_H)
            reported = occurred + self.delay(5, 900)
            if reported >= cutoff:
                return
            eid = self._id("spr")
            known_facts = [body for rep, feid, body in facts if (rep, feid) < (reported, eid)]
            roster = self.roster(spec, known_facts, following - timedelta(days=1), n)
            changes = _changes(roster, previous, period, following - timedelta(days=1))
            if spec.scenario == "roster_gap" and n:  # the gap is left off and put back without a word
                changes = [c for c in changes if not self._gap(_key_of(c["foreigner"]))]
            body: Event = {
                "event_id": eid,
                "occurred_at": "",
                "reported_at": "",
                "sponsor": dict(spec.sponsor),
                "period_start": period.isoformat(),
                "period_end": (following - timedelta(days=1)).isoformat(),
                "roster": [
                    {
                        "foreigner": dict(roster[key]["holder"]),
                        "permit_number": roster[key]["permit_number"],
                        "address": spec.address,
                        "job_title": self.jobs.setdefault(key, r.choice(spec.jobs)),
                        **({"work_location": spec.work_location} if spec.work_location else {}),
                    }
                    for key in sorted(roster)
                ],
                "changes": changes,
            }
            self.emit("sponsor_report", body, occurred, reported, WIB_H)
            previous = roster
            if spec.scenario == "stops_reporting":
                return
            period = following

    def _gap(self, key: tuple[str, str]) -> bool:
        return self.scenarios.get(":".join(key), "").startswith("sponsored_gap")

    def roster(
        self, spec: _SponsorSpec, facts: list[Event], period_end: date, index: int = 0
    ) -> dict[tuple[str, str], Event]:
        """Whom the sponsor lists (person -> the permit it goes by): those whose latest permit names it,
        is not CANCELLED and runs to ``period_end`` -- less the hidden ones (roster_omits), plus the
        cancelled ones and a worker without a permit from it (roster_unlisted)."""
        sid = spec.sponsor["sponsor_id"]
        latest: dict[tuple[str, str], Event] = {}
        for body in facts:
            key = _key_of(body["holder"])
            if key not in latest or _occ_key(body) > _occ_key(latest[key]):
                latest[key] = body
        end = period_end.isoformat()
        roster = {k: b for k, b in latest.items() if b["action"] != "CANCELLED" and b["valid_until"] >= end}
        if spec.scenario == "roster_omits":
            roster = {k: b for k, b in roster.items() if self.scenarios[":".join(k)] != "sponsored_unreported"}
        if spec.scenario == "roster_gap" and index in self.gaps.get(sid, range(0)):
            roster = {k: b for k, b in roster.items() if not self._gap(k)}
        if spec.scenario == "roster_unlisted":
            roster |= {k: b for k, b in latest.items() if k in self.cancelled_staff.get(sid, set())}
            ghost = self.ghosts.get(sid)
            if ghost is not None:
                roster[_key_of(ghost.identity)] = {"holder": ghost.identity, "permit_number": None}
        return roster


def _changes(
    roster: dict[tuple[str, str], Event], previous: dict[tuple[str, str], Event] | None, start: date, end: date
) -> list[Event]:
    """JOINED for those new on the roster (on the first report: whose permit began in the period), LEFT
    for those dropped since the previous report."""
    first, last = start.isoformat(), end.isoformat()
    changes: list[Event] = []
    for key in sorted(roster):
        began = roster[key].get("valid_from") or first
        if (previous is None and began >= first) or (previous is not None and key not in previous):
            on = min(max(began, first), last)
            changes.append({"kind": "JOINED", "foreigner": dict(roster[key]["holder"]), "effective_on": on})
    for key in sorted(previous or {}):
        if key not in roster:
            left = (previous or {})[key]
            changes.append(
                {"kind": "LEFT", "foreigner": dict(left["holder"]), "effective_on": last, "detail": "permit cancelled"}
            )
    return changes


# ---------------------------------------------------------------- the truth: RULES.md, literally


@dataclass
class _E:
    kind: str
    eid: str
    occ: int
    rep: int
    body: Event

    @property
    def order(self) -> tuple[int, str]:
        return self.rep, self.eid


@dataclass(frozen=True)
class _Facts:
    in_country: bool
    until: date | None
    arrival_at: int | None


@dataclass
class _Label:
    rule: str
    subject: dict[str, str]
    window: str
    at: int
    withdrawn_at: int | None = None
    group: bool = False  # tppo.screening with the group indicator (raised by it, or amended)
    office: str | None = None  # whereabouts.unknown: the office RULES.md names (not part of the identity)

    def as_truth(self) -> dict[str, Any]:
        truth: dict[str, Any] = {"rule_id": self.rule, "subject": dict(self.subject), "window": self.window}
        if self.group:
            truth["group"] = True
        if self.office is not None:
            truth["office"] = self.office
        return truth


def _person_of(kind: str, body: Event) -> tuple[str, str]:
    who = (
        body["traveller"]
        if kind == "border_crossing"
        else body["guest"]
        if kind == "hotel_guest_event"
        else body["holder"]
    )
    return str(who["nationality"]).upper(), str(who["document_number"]).upper()


class _Timeline:
    """One person's events in processing order, and their facts as known at any instant."""

    def __init__(
        self, person: tuple[str, str], events: list[_E], rules: Rules, end: int, rosters: list[_E] | None = None
    ) -> None:
        self.person = person
        self.rosters = rosters or []  # the roster entries naming this person (kind "roster_entry")
        self.subject = {"nationality": person[0], "document_number": person[1]}
        self.events = sorted(events, key=lambda e: e.order)
        self.reps = [e.rep for e in self.events]
        self.rules = rules
        self.end = end
        self.cancelled = {
            e.body["corrects_event_id"]: e
            for e in self.events
            if e.kind == "hotel_guest_event" and e.body["action"] == "CANCEL"
        }
        self.states = self._states()
        self.labels: list[_Label] = []
        self.corrected: set[str] = set()
        self.departures: list[_Departure] = []  # citizen departures with journey details (tppo facts)

    def _states(self) -> list[_Facts]:
        crossings: list[_E] = []
        permits: list[_E] = []
        states = [_Facts(False, None, None)]
        for e in self.events:
            if e.kind == "border_crossing":
                crossings.append(e)
            elif e.kind == "permit_update":
                permits.append(e)
            if e.kind in ("border_crossing", "permit_update"):
                states.append(self._facts(crossings, permits))
            else:
                states.append(states[-1])
        return states

    def _facts(self, crossings: list[_E], permits: list[_E]) -> _Facts:
        if not crossings:
            return _Facts(False, None, None)
        latest = max(crossings, key=lambda c: (c.occ, c.eid))
        in_country = latest.body["direction"] == "ARRIVAL"
        arrivals = [c for c in crossings if c.body["direction"] == "ARRIVAL"]
        if not arrivals or self.person[0] == CITIZEN:
            return _Facts(in_country, None, None)
        arrival = max(arrivals, key=lambda c: (c.occ, c.eid))
        later = [p for p in permits if p.occ >= arrival.occ]
        if later:
            until = date.fromisoformat(max(later, key=lambda p: (p.occ, p.eid)).body["valid_until"])
        else:
            until = date.fromisoformat(arrival.body["arrival"]["authorised_until"])
        return _Facts(in_country, until, arrival.occ)

    def known(self, t: int) -> int:
        """How many events are known when the watermark passes ``t`` (reported before it)."""
        i = bisect_left(self.reps, t)
        if i < len(self.reps) and self.reps[i] == t:
            raise AmbiguousCase(f"{self.person}: event {self.events[i].eid} reported exactly at a deadline")
        return i

    def at(self, t: int) -> _Facts:
        return self.states[self.known(t)]

    def add(self, rule: str, window: str, at: int, subject: dict[str, str] | None = None) -> _Label:
        label = _Label(rule, subject or self.subject, window, at)
        self.labels.append(label)
        return label

    # ------------------------------------------------------------ rules

    def evaluate(self) -> list[_Label]:
        self._check_inputs()
        if self.person[0] == CITIZEN:
            self._tppo()
        else:
            self._overstay()
            self._permit_expiring()
            self._at_exit()
            self._hotel_rules()
            self._report_missing()
            self._whereabouts()
        return self.labels

    def _check_inputs(self) -> None:
        crossings = [e for e in self.events if e.kind == "border_crossing"]
        for a, b in itertools.pairwise(crossings):
            if b.occ < a.occ:
                raise AmbiguousCase(f"{self.person}: crossings reported out of order")
        for c in crossings:
            tz_h = int(c.body["occurred_at"][-6:-3])
            if _local_date(c.occ, tz_h) != _local_date(c.occ):
                raise AmbiguousCase(f"{self.person}: crossing {c.eid} on another local date than in WIB")
        # A never shortened, never known only after it ended (or after its warning, if that is after the arrival)
        for i, e in enumerate(self.events):
            before, after = self.states[i], self.states[i + 1]
            if after.until is None or after.until == before.until:
                continue
            if e.kind == "permit_update" and before.until is not None and after.until < before.until:
                raise AmbiguousCase(f"{self.person}: permit {e.eid} shortens the stay")
            if after.in_country and _midnight(after.until + timedelta(days=1)) <= e.rep:
                raise AmbiguousCase(f"{self.person}: authorised stay known only after it ended ({e.eid})")
            warn = _midnight(after.until - timedelta(days=self.rules.warn_before_days))
            if after.in_country and after.arrival_at is not None and after.arrival_at < warn <= e.rep:
                raise AmbiguousCase(f"{self.person}: authorised stay known only after its warning ({e.eid})")

    def _candidates(self) -> list[date]:
        return sorted({s.until for s in self.states if s.until is not None})

    def _overstay(self) -> None:
        for until in self._candidates():
            t = _midnight(until + timedelta(days=1))
            if t >= self.end:
                continue
            k = self.known(t)
            facts = self.states[k]
            if not (facts.in_country and facts.until == until):
                continue
            label = self.add("overstay", until.isoformat(), t)
            for j in range(k, len(self.events)):
                e = self.events[j]
                new = self.states[j + 1].until
                if e.kind == "permit_update" and new is not None and new > until:
                    label.withdrawn_at = e.rep
                    break

    def _permit_expiring(self) -> None:
        for until in self._candidates():
            t = _midnight(until - timedelta(days=self.rules.warn_before_days))
            if t >= self.end:
                continue
            facts = self.at(t)
            if facts.in_country and facts.until == until and facts.arrival_at is not None and facts.arrival_at < t:
                self.add("permit.expiring", until.isoformat(), t)

    def _at_exit(self) -> None:
        for i, e in enumerate(self.events):
            if e.kind != "border_crossing" or e.body["direction"] != "DEPARTURE":
                continue
            until = self.states[i + 1].until
            if until is not None and _local_date(e.occ) > until:
                self.add("overstay.at_exit", e.eid, e.rep)

    def _check_ins(self) -> list[tuple[int, _E]]:
        return [
            (i, e)
            for i, e in enumerate(self.events)
            if e.kind == "hotel_guest_event" and e.body["action"] == "CHECK_IN"
        ]

    def _hotel_rules(self) -> None:
        rules = self.rules
        hotel = [e for e in self.events if e.kind == "hotel_guest_event"]
        for e in hotel:
            action = e.body["action"]
            if action == "CORRECTION":
                self._check_correction(e)
            if action == "CANCEL":
                target = next((c for c in hotel if c.eid == e.body["corrects_event_id"]), None)
                if target is None or target.body["action"] != "CHECK_IN" or target.rep >= e.rep:
                    raise AmbiguousCase(f"{self.person}: CANCEL {e.eid} of no check-in known before it")
        stays: dict[str, set[str]] = defaultdict(set)
        for _, c in self._check_ins():
            stays[c.body["establishment"]["establishment_id"]].add(c.body["check_in_date"])
        if any(len(dates) > 1 for dates in stays.values()):
            raise AmbiguousCase(f"{self.person}: two stays at one establishment")
        for i, c in self._check_ins():
            est = {"establishment_id": c.body["establishment"]["establishment_id"]}
            delay = c.rep - c.occ
            if delay == rules.hotel_deadline_ms:
                raise AmbiguousCase(f"{self.person}: check-in {c.eid} reported exactly at the deadline")
            if delay > rules.hotel_deadline_ms:
                self.add("report.late", c.eid, c.rep, est)
            facts = self.states[i + 1]
            check_in_date = date.fromisoformat(c.body["check_in_date"])
            if facts.in_country and facts.until is not None and check_in_date > facts.until:
                self.add("overstay.located", c.eid, c.rep)
            self._checkout_missing(c, est)
            cancel = self.cancelled.get(c.eid)
            if cancel is not None:  # what it raised is withdrawn; what it would raise later, never raised
                mine = [label for label in self.labels if label.window == c.eid]
                self.labels = [label for label in self.labels if label.window != c.eid or label.at < cancel.rep]
                for label in mine:
                    label.withdrawn_at = cancel.rep
        if any(label.window in self.corrected for label in self.labels):
            raise AmbiguousCase(f"{self.person}: a corrected check-in raises an alert")

    def _check_correction(self, e: _E) -> None:
        target = next((c for c in self.events if c.eid == e.body["corrects_event_id"]), None)
        if target is None or target.body["action"] != "CHECK_IN":
            raise AmbiguousCase(f"{self.person}: CORRECTION {e.eid} of no check-in")
        same = {k: v for k, v in target.body.items() if k not in ("event_id", "reported_at", "action", "room")}
        new = {
            k: v
            for k, v in e.body.items()
            if k not in ("event_id", "reported_at", "action", "room", "corrects_event_id")
        }
        if same != new or e.rep - target.occ >= self.rules.hotel_deadline_ms:
            raise AmbiguousCase(f"{self.person}: CORRECTION {e.eid} changes more than the room, or late")
        self.corrected.add(target.eid)

    def _checkout_missing(self, c: _E, est: dict[str, str]) -> None:
        rules = self.rules
        x = est["establishment_id"]
        deadlines: list[int] = []
        expected = c.body.get("expected_check_out_date")
        if expected:
            deadlines.append(_midnight(date.fromisoformat(expected) + timedelta(days=1)) + rules.checkout_grace_ms)
        departures = [
            e
            for e in self.events
            if e.kind == "border_crossing" and e.body["direction"] == "DEPARTURE" and e.occ > c.occ
        ]
        check_outs = [
            e
            for e in self.events
            if e.kind == "hotel_guest_event"
            and e.body["action"] == "CHECK_OUT"
            and e.body["establishment"]["establishment_id"] == x
            and e.occ >= c.occ
        ]
        if departures:
            dep = min(departures, key=lambda d: (d.occ, d.eid))
            if dep.rep < c.rep:
                raise AmbiguousCase(f"{self.person}: departure {dep.eid} known before check-in {c.eid}")
            lo, hi = dep.occ + rules.checkout_grace_ms, dep.rep + rules.checkout_grace_ms
            if any(lo <= o.rep <= hi for o in check_outs):
                raise AmbiguousCase(f"{self.person}: check-out around the departure deadline of {c.eid}")
            deadlines.append(hi)
        if not deadlines:
            return
        deadline = min(deadlines)
        if deadline <= c.rep:
            raise AmbiguousCase(f"{self.person}: check-out deadline of {c.eid} before it was reported")
        if deadline >= self.end:
            return
        self.known(deadline)  # no report exactly at it
        if not any(o.rep < deadline for o in check_outs):
            self.add("report.checkout_missing", c.eid, deadline, est)

    def _report_missing(self) -> None:
        rules = self.rules
        for a in self.events:
            if a.kind != "border_crossing" or a.body["direction"] != "ARRIVAL":
                continue
            x = (a.body.get("arrival") or {}).get("declared_establishment_id")
            if not x:
                continue
            t = a.occ + 2 * rules.hotel_deadline_ms
            if t >= self.end:
                continue
            k = self.known(t)
            known = self.events[:k]
            at_x = [
                e
                for e in known
                if e.kind == "hotel_guest_event"
                and e.body["action"] == "CHECK_IN"
                and e.body["establishment"]["establishment_id"] == x
            ]
            strict = [
                e for e in at_x if e.occ >= a.occ and not (e.eid in self.cancelled and self.cancelled[e.eid].rep < t)
            ]
            if bool(at_x) != bool(strict):
                raise AmbiguousCase(f"{self.person}: report.missing of {a.eid} hangs on a cancelled or old check-in")
            for d in self.events:
                if (
                    d.kind == "border_crossing"
                    and d.body["direction"] == "DEPARTURE"
                    and d.occ > a.occ
                    and d.occ < t <= d.rep
                ):
                    raise AmbiguousCase(f"{self.person}: departure {d.eid} straddles the deadline of {a.eid}")
            departed = any(
                e.kind == "border_crossing" and e.body["direction"] == "DEPARTURE" and e.occ > a.occ for e in known
            )
            if not at_x and not departed:
                self.add("report.missing", a.eid, t, {"establishment_id": x})

    def _whereabouts(self) -> None:
        """whereabouts.unknown (see the module doc): the person's events and the roster entries naming
        them, released in (reported_at, event id) order; after each, the sightings known and W."""
        silent = self.rules.whereabouts_silent_days
        items = sorted(self.events + self.rosters, key=lambda e: e.order)
        for a, b in itertools.pairwise(items):
            if a.rep == b.rep and "roster_entry" in (a.kind, b.kind):
                raise AmbiguousCase(f"{self.person}: a roster entry reported at the same instant as {b.eid}")
        stays: dict[str, _Sighted] = {}  # check-in event id -> the stay it reports
        fixed: dict[str, tuple[int, str]] = {}  # check-out or roster sighting id -> (day, office)
        arrival: tuple[str, int, str] | None = None  # latest arrival: (event id, day, office)
        crossings: list[_E] = []
        states: list[_Whereabouts] = [_Whereabouts(None, None, False)]
        fresh: list[list[tuple[int, int | None]]] = []  # per item: (day newly covered, its check-in date)
        for e in items:
            new: list[tuple[int, int | None]] = []
            if e.kind == "border_crossing":
                crossings.append(e)
                latest = max((c for c in crossings if c.body["direction"] == "ARRIVAL"), key=_occ_order, default=None)
                if latest is not None and (arrival is None or arrival[0] != latest.eid):
                    arrival = (latest.eid, _wib_day(latest.occ), latest.body["checkpoint"]["office"])
                    new.append((arrival[1], None))
            elif e.kind == "roster_entry":
                fixed[e.eid + "|"] = (e.body["day"], e.body["office"])
                new.append((e.body["day"], None))
            elif e.kind == "hotel_guest_event":
                new += self._sighting(e, stays, fixed)
            states.append(self._accounted(stays, fixed, arrival, crossings))
            fresh.append(new)
        reps = [e.rep for e in items]
        for j, e in enumerate(items):  # a new count whose moment has passed already
            before, after = states[j], states[j + 1]
            moved = after.w != before.w or not before.in_country
            if after.in_country and after.w is not None and moved and _day_start(after.w + silent + 1) <= e.rep:
                raise AmbiguousCase(f"{self.person}: a silence from {_show_day(after.w)} known after it ended")
        for w in sorted({st.w for st in states if st.w is not None}):
            t = _day_start(w + silent + 1)
            if t >= self.end:
                continue
            k = bisect_left(reps, t)
            if k < len(reps) and reps[k] == t:
                raise AmbiguousCase(f"{self.person}: {items[k].eid} reported exactly at a whereabouts deadline")
            st = states[k]
            if st.w != w or not st.in_country:
                continue
            label = self.add("whereabouts.unknown", _show_day(w), t)
            label.office = st.office
            for j in range(k, len(items)):
                if items[j].rep >= self.end:
                    break
                inside = False
                for day, check_in in fresh[j]:
                    if check_in is not None and w < check_in <= w + silent < day:
                        raise AmbiguousCase(f"{self.person}: stay {items[j].eid} from inside the silence past it")
                    inside |= w < day <= w + silent
                if inside:
                    if states[j].w != w:
                        raise AmbiguousCase(f"{self.person}: late sighting {items[j].eid} after W moved")
                    label.withdrawn_at = items[j].rep
                    break

    def _sighting(
        self, e: _E, stays: dict[str, _Sighted], fixed: dict[str, tuple[int, str]]
    ) -> list[tuple[int, int | None]]:
        """Apply a hotel guest event to the sightings; the days it newly covers (with the check-in date)."""
        body = e.body
        action = body["action"]
        if action == "CHECK_IN":
            stay = stays[e.eid] = _Sighted(
                body["establishment"]["establishment_id"],
                body["establishment"]["office"],
                _iso_day(body["check_in_date"]),
                _iso_day(body["expected_check_out_date"]) if body.get("expected_check_out_date") else None,
            )
            return [(stay.day, stay.check_in)]
        target = stays.get(str(body.get("corrects_event_id") or ""))
        if action == "CANCEL":
            if target is None:
                raise AmbiguousCase(f"{self.person}: CANCEL {e.eid} of no check-in known before it")
            target.cancelled = True
            return []
        if action == "CORRECTION":
            if target is None:
                raise AmbiguousCase(f"{self.person}: CORRECTION {e.eid} of no check-in known before it")
            target.check_in = _iso_day(body["check_in_date"])
            target.expected = _iso_day(body["expected_check_out_date"]) if body.get("expected_check_out_date") else None
            return [] if target.cancelled else [(target.day, target.check_in)]
        if action != "CHECK_OUT" or not body.get("check_out_date"):
            raise AmbiguousCase(f"{self.person}: guest event {e.eid} ({action}) without a date it covers")
        out = _iso_day(body["check_out_date"])
        est = body["establishment"]["establishment_id"]
        open_stays = [
            s
            for s in stays.values()
            if s.establishment == est and not s.cancelled and not s.closed and s.check_in <= out
        ]
        if len(open_stays) != 1:
            raise AmbiguousCase(f"{self.person}: CHECK_OUT {e.eid} closes {len(open_stays)} known stays")
        open_stays[0].closed = True
        fixed[e.eid] = (out, body["establishment"]["office"])
        return [(out, None), (open_stays[0].day, None)]

    def _accounted(
        self,
        stays: dict[str, _Sighted],
        fixed: dict[str, tuple[int, str]],
        arrival: tuple[str, int, str] | None,
        crossings: list[_E],
    ) -> _Whereabouts:
        """W and its office (the greatest (day, sighting id)) from the sightings, and whether in the country."""
        seen: list[tuple[int, str, str]] = [(day, sid, office) for sid, (day, office) in fixed.items()]
        seen += [(s.day, eid, s.office) for eid, s in stays.items() if not s.cancelled]
        if arrival is not None:
            seen.append((arrival[1], arrival[0], arrival[2]))
        in_country = bool(crossings) and max(crossings, key=_occ_order).body["direction"] == "ARRIVAL"
        if not seen:
            return _Whereabouts(None, None, in_country)
        w = max(day for day, _, _ in seen)
        on_w = [(sid, office) for day, sid, office in seen if day == w]
        for sid, _ in on_w:  # a roster entry's id is "<report event id>|<person key>": is the key ever decisive?
            if sid.endswith("|") and any(other != sid and other.startswith(sid) for other, _ in on_w):
                raise AmbiguousCase(f"{self.person}: the office of {_show_day(w)} hangs on a person key")
        return _Whereabouts(w, max(on_w)[1], in_country)

    def _tppo(self) -> None:
        rules = self.rules
        w = rules.weights
        raised: list[_E] = []
        for e in self.events:
            if e.kind != "border_crossing" or e.body["direction"] != "DEPARTURE" or not e.body.get("departure"):
                continue
            j = e.body["departure"]
            score = 0.0
            route = [str(c).upper() for c in j.get("onward_route") or []]
            if str(j["destination_country"]).upper() in rules.risk_countries or any(
                c in rules.risk_countries for c in route
            ):
                score += w["risk_destination"]
            if j.get("return_ticket") is False:
                score += w["one_way"]
            issued = j.get("passport_issued_on")
            if issued:
                age = (_local_date(e.occ) - date.fromisoformat(issued)).days
                if age < 0:
                    raise AmbiguousCase(f"{self.person}: passport issued after the departure {e.eid}")
                if age <= rules.passport_new_days:
                    score += w["new_passport"]
            purpose = str(j.get("purpose") or "OTHER").upper()
            if purpose == "TOURISM" and (j.get("job_offer_contact") is True or j.get("employer_paid_travel") is True):
                score += w["tourist_with_work_signs"]
            if purpose == "WORK" and not j.get("pmi_placement_id"):
                score += w["pmi_without_placement"]
            if purpose == "WORK" and str(j["destination_country"]).upper() in rules.moratorium_countries:
                score += w["moratorium_destination"]
            checkpoint = e.body["checkpoint"]["checkpoint_id"]
            if any(
                r.body["checkpoint"]["checkpoint_id"] != checkpoint
                and (_local_date(e.occ) - _local_date(r.occ)).days <= rules.previous_delay_days
                for r in raised
            ):
                score += w["previous_delay"]
            label = None
            if score >= rules.threshold:
                raised.append(e)
                label = self.add("tppo.screening", e.eid, e.rep)
            if self.person[0] == CITIZEN:
                self.departures.append(_Departure(e, self.person, self.subject, score, label))


@dataclass
class _Sighted:
    """A check-in as whereabouts sees it: the day it covers (check-in date, or while open the expected
    check-out date when that is later)."""

    establishment: str
    office: str
    check_in: int
    expected: int | None
    closed: bool = False
    cancelled: bool = False

    @property
    def day(self) -> int:
        if self.closed or self.expected is None:
            return self.check_in
        return max(self.check_in, self.expected)


@dataclass(frozen=True)
class _Whereabouts:
    w: int | None  # accounted until (WIB day number)
    office: str | None  # of the sighting that covers w
    in_country: bool


def _occ_order(e: _E) -> tuple[int, str]:
    return e.occ, e.eid


def _iso_day(text: str) -> int:
    return date.fromisoformat(text).toordinal() - _EPOCH_ORD


@dataclass
class _Departure:
    """A citizen's DEPARTURE with journey details: the fact the person stage forwards to the group stage."""

    e: _E
    person: tuple[str, str]
    subject: dict[str, str]
    base: float  # its score without the group indicator
    label: _Label | None  # the person stage's alert (base score at the threshold)

    @property
    def references(self) -> list[str]:
        j = self.e.body["departure"]
        return [
            f"{name}:{j[name + '_reference']}" for name in ("group", "agent", "booking") if j.get(name + "_reference")
        ]


def _windows(known: list[_Departure], anchors: list[_Departure], rules: Rules) -> set[str]:
    """The departures of one reference in a window of ``rules.group_window_ms`` up to and including an
    anchor's ``occurred_at`` that holds ``group_min_travellers`` distinct people or more."""
    out: set[str] = set()
    for a in anchors:
        inside = [x for x in known if a.e.occ - rules.group_window_ms <= x.e.occ <= a.e.occ]
        if len({x.person for x in inside}) >= rules.group_min_travellers:
            out |= {x.e.eid for x in inside}
    return out


def _group_labels(departures: list[_Departure], end: int, rules: Rules) -> list[_Label]:
    """tppo.screening's group indicator (see the module doc): marks the person stage's labels it amends
    and returns the labels it raises."""
    window = rules.group_window_ms
    known: dict[str, list[_Departure]] = defaultdict(list)
    gained: dict[str, int] = {}  # event id -> the moment it gained the indicator
    anchored: set[str] = set()  # the same, counting only windows that end at the departure released
    by_id = {d.e.eid: d for d in departures}
    for d in sorted(departures, key=lambda d: d.e.order):
        if d.e.rep >= end:
            break
        for ref in d.references:
            same = known[ref]
            if any(abs(x.e.occ - d.e.occ) == window for x in same):
                raise AmbiguousCase(f"{ref}: two departures exactly {window} ms apart")
            same.append(d)
            anchors = [a for a in same if d.e.occ <= a.e.occ <= d.e.occ + window]
            for eid in _windows(same, anchors, rules):
                gained.setdefault(eid, d.e.rep)
            anchored |= _windows(same, [d], rules)
    if set(gained) != anchored:
        raise AmbiguousCase("a departure reported after a later one of its group changes who gains the indicator")
    labels: list[_Label] = []
    for eid, at in gained.items():
        d = by_id[eid]
        if d.label is not None:
            d.label.group = True  # AMENDED: same alert
            continue
        if d.base + rules.weights["group_same_agent"] < rules.threshold:
            continue
        checkpoint = d.e.body["checkpoint"]["checkpoint_id"]
        for other in departures:
            if (
                other.person == d.person
                and other.e.order > d.e.order
                and other.e.body["checkpoint"]["checkpoint_id"] != checkpoint
            ):  # previous_delay: does the person stage know of the group stage's alert?
                raise AmbiguousCase(f"{d.person}: departs again after a screening raised by the group stage")
        labels.append(_Label("tppo.screening", d.subject, eid, at, group=True))
    return labels


def _roster_covers(period_end: str, due_day: int) -> int:
    """The last day a roster entry accounts for its person: the day its sponsor's next report is due,
    ``due_day`` of the second month after the month of ``period_end``."""
    end = date.fromisoformat(period_end)
    month = end.month + 2
    year = end.year + (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, due_day).toordinal() - _EPOCH_ORD


def _rosters(events: list[dict[str, Any]], rules: Rules) -> dict[tuple[str, str], list[_E]]:
    """Each roster entry of each sponsor report, as the roster router forwards it to the person it names:
    the report's event id, ``reported_at``, the day it covers to (:func:`_roster_covers`), the sponsor's office."""
    people: dict[tuple[str, str], list[_E]] = defaultdict(list)
    for item in events:
        if item["kind"] != "sponsor_report":
            continue
        body = item["event"]
        rep = parse_timestamp_ms(body["reported_at"])
        fact = {"day": _roster_covers(body["period_end"], rules.sponsor_due_day), "office": body["sponsor"]["office"]}
        for entry in body["roster"]:
            who = _person_of("hotel_guest_event", {"guest": entry["foreigner"]})
            people[who].append(_E("roster_entry", body["event_id"], parse_timestamp_ms(body["occurred_at"]), rep, fact))
    return people


def _parse(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[_E]]:
    people: dict[tuple[str, str], list[_E]] = defaultdict(list)
    for item in events:
        kind, body = item["kind"], item["event"]
        if kind not in ("border_crossing", "hotel_guest_event", "permit_update"):
            continue
        e = _E(
            kind,
            body["event_id"],
            parse_timestamp_ms(body["occurred_at"]),
            parse_timestamp_ms(body["reported_at"]),
            body,
        )
        people[_person_of(kind, body)].append(e)
    return people


# ---------------------------------------------------------------- the truth: establishments and sponsors


def silence_days(days: list[int], rules: Rules) -> int | None:
    """Days without a check-in that make silent an establishment with these distinct report days (WIB
    dates as day numbers, ascending), or None while it lacks the history (see the module doc)."""
    if not days:
        return None
    last = days[-1]
    if last - days[0] < rules.silent_min_history_days:
        return None
    if sum(1 for d in days if d > last - 28) < rules.silent_min_report_days:
        return None
    gaps = [b - a for a, b in itertools.pairwise(days)]
    if not gaps:
        return rules.min_silent_days
    return max(rules.min_silent_days, math.ceil(rules.silence_factor * statistics.median(gaps)))


def _wib_day(ms: int) -> int:
    return (ms + WIB_H * HOUR) // DAY


def _day_start(day: int) -> int:
    return day * DAY - WIB_H * HOUR


def _show_day(day: int) -> str:
    return date.fromordinal(_EPOCH_ORD + day).isoformat()


def _silent(establishment: str, check_ins: list[tuple[int, str, int]], rules: Rules, end: int) -> list[_Label]:
    """establishment.silent for one establishment's (reported_at, event_id, WIB day) check-ins, known by
    ``end``: at every instant, the facts known then decide (see the module doc)."""
    subject = {"establishment_id": establishment}
    check_ins = sorted(check_ins)
    labels: list[_Label] = []
    raised: list[tuple[_Label, int, int]] = []  # label, last report day, silence days
    days: list[int] = []
    for k in range(len(check_ins) + 1):
        since: int | None = None
        if k:
            since, _, d = check_ins[k - 1]
            for label, last, silence in raised:
                if label.withdrawn_at is None and last < d < last + silence:
                    label.withdrawn_at = since  # a check-in of a day inside the silence, reported late
            i = bisect_left(days, d)
            if i == len(days) or days[i] != d:
                days.insert(i, d)
        until = check_ins[k][0] if k < len(check_ins) else end
        if not days or any(last == days[-1] for _, last, _ in raised):
            continue
        n = silence_days(days, rules)
        if n is None:
            continue
        deadline = _day_start(days[-1] + n)
        if deadline in (since, until):
            raise AmbiguousCase(f"{establishment}: a check-in reported exactly at a silence deadline")
        moment = deadline if since is None or deadline > since else since  # passed already: at once
        if moment < until and moment < end:
            label = _Label("establishment.silent", subject, _show_day(days[-1]), moment)
            labels.append(label)
            raised.append((label, days[-1], n))
    return labels


def _sponsor_labels(sponsor: str, facts: list[_E], reports: list[_E], rules: Rules, end: int) -> list[_Label]:
    """sponsor.overdue and sponsor.roster_mismatch for one sponsor's permit facts and reports known by ``end``."""
    subject = {"sponsor_id": sponsor}
    labels: list[_Label] = []
    first = min(e.order for e in facts + reports)[0]
    known = _local_date(first)
    month = _next_month(date(known.year, known.month, 1))
    while True:
        following = _next_month(month)
        due = _midnight(following.replace(day=rules.sponsor_due_day))
        if due >= end:
            break
        last_day = (following - timedelta(days=1)).isoformat()
        if any(r.rep == due for r in reports):
            raise AmbiguousCase(f"{sponsor}: a report reported exactly at a due moment")
        if not any(r.body["period_end"] >= last_day and r.rep < due for r in reports):
            labels.append(_Label("sponsor.overdue", subject, month.strftime("%Y-%m"), due))
        month = following
    for r in reports:
        latest: dict[tuple[str, str], _E] = {}
        for f in facts:
            if f.order >= r.order:
                continue
            key = _key_of(f.body["holder"])
            other = latest.get(key)
            if other is not None and other.occ == f.occ:
                raise AmbiguousCase(f"{sponsor}: two permits of {key} at the same moment")
            if other is None or f.occ > other.occ:
                latest[key] = f
        period_end = r.body["period_end"]
        expected = {
            k for k, f in latest.items() if f.body["action"] != "CANCELLED" and f.body["valid_until"] >= period_end
        }
        listed = [_key_of(entry["foreigner"]) for entry in r.body["roster"]]
        if len(set(listed)) != len(listed):
            raise AmbiguousCase(f"{sponsor}: report {r.eid} lists a foreigner twice")
        if set(listed) != expected:
            labels.append(_Label("sponsor.roster_mismatch", subject, r.eid, r.rep))
    return labels


def _entity_labels(events: list[dict[str, Any]], end: int, rules: Rules) -> list[_Label]:
    check_ins: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    facts: dict[str, list[_E]] = defaultdict(list)
    reports: dict[str, list[_E]] = defaultdict(list)
    sponsors_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in events:
        kind, body = item["kind"], item["event"]
        if kind not in ("hotel_guest_event", "permit_update", "sponsor_report"):
            continue
        if kind == "hotel_guest_event" and body["action"] != "CHECK_IN":
            continue
        if kind == "permit_update" and not body.get("sponsor_id"):
            continue
        rep = parse_timestamp_ms(body["reported_at"])
        if rep >= end:
            continue
        e = _E(kind, body["event_id"], parse_timestamp_ms(body["occurred_at"]), rep, body)
        if kind == "hotel_guest_event":
            check_ins[body["establishment"]["establishment_id"]].append((rep, e.eid, _wib_day(e.occ)))
        elif kind == "permit_update":
            facts[body["sponsor_id"]].append(e)
            sponsors_of[_key_of(body["holder"])].add(body["sponsor_id"])
        else:
            reports[body["sponsor"]["sponsor_id"]].append(e)
    for person, sponsors in sponsors_of.items():
        if len(sponsors) > 1:
            raise AmbiguousCase(f"{person}: permits naming two sponsors ({', '.join(sorted(sponsors))})")
    labels: list[_Label] = []
    for establishment, items in sorted(check_ins.items()):
        labels += _silent(establishment, items, rules, end)
    for sponsor in sorted(facts.keys() | reports.keys()):
        labels += _sponsor_labels(
            sponsor, facts.get(sponsor, []), sorted(reports.get(sponsor, []), key=lambda e: e.order), rules, end
        )
    return labels


def _evaluate(events: list[dict[str, Any]], end: int, rules: Rules) -> list[_Label]:
    labels: list[_Label] = []
    departures: list[_Departure] = []
    rosters = _rosters(events, rules)
    for person, evs in sorted(_parse(events).items()):
        timeline = _Timeline(person, evs, rules, end, rosters.get(person))
        labels += timeline.evaluate()
        departures += timeline.departures
    labels += _group_labels(departures, end, rules)
    labels += _entity_labels(events, end, rules)
    labels.sort(key=lambda lb: (lb.at, lb.rule, lb.window, json.dumps(lb.subject, sort_keys=True)))
    return labels


def ground_truth(
    events: list[dict[str, Any]], end: datetime, rules: Rules | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(alerts standing at ``end``, alerts raised and withdrawn by then) for ``{"kind", "event"}`` items.

    Raises :class:`AmbiguousCase` for input whose alerts RULES.md does not settle."""
    labels = _evaluate(events, int(end.timestamp() * 1000), rules or load_rules())
    truth = [lb.as_truth() for lb in labels if lb.withdrawn_at is None]
    withdrawn = [lb.as_truth() for lb in labels if lb.withdrawn_at is not None]
    return truth, withdrawn


# ---------------------------------------------------------------- entry point


def simulate(days: int, travellers: int, seed: int, start: date, *, rules: Rules | None = None) -> Simulation:
    """``travellers`` travellers, and the second stage's sponsors and guesthouses, the groups and the
    unreported whereabouts (in proportion, drawn last), over ``days`` days from ``start`` (00:00 WIB);
    see the module doc."""
    if days < 1 or travellers < 0:
        raise ValueError("days must be at least 1 and travellers not negative")
    rules = rules or load_rules()
    gen = _Generator(days, travellers, seed, start, rules)
    gen.run()
    cutoff = gen.end - 10 * MINUTE
    kept = sorted((row for row in gen.out if row[0] < cutoff), key=lambda row: (row[0], row[1]))
    events = [{"kind": kind, "event": body} for _, _, kind, body in kept]
    end = datetime.fromtimestamp(gen.end / 1000, tz=UTC)
    truth, withdrawn = ground_truth(events, end, rules)
    return Simulation(events, truth, end, rules.version, withdrawn, dict(gen.scenarios), dict(gen.entities))


def write_simulation(
    days: int, travellers: int, seed: int, start: date, events_path: str | Path, truth_path: str | Path
) -> Simulation:
    """Simulate and write the files `pora replay` and `pora evaluate` read; the events file ends
    with a clock tick at the end of the period, which the truth assumes."""
    sim = simulate(days, travellers, seed, start)
    sim.write(events_path, truth_path)
    with Path(events_path).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "clock_tick", "at": sim.end.isoformat()}) + "\n")
    return sim
