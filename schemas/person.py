"""Who a traveller is, without saying who: the pseudonymous person key and identity normalisation.

The key is an HMAC-SHA256 of nationality and document number under a secret that only the
gateway holds, so analytics can join a traveller's crossings, stays and permits without names or
document numbers, and nobody without the secret can test a guessed passport number against it.
Date of birth is left out of the key on purpose: agency reports and some hotel registers lack it,
and a key that changed with its presence would split one traveller in two.
"""

from __future__ import annotations

import hmac
import re

import pycountry

# ICAO 9303 codes that are valid on travel documents but are not ISO 3166 countries.
_ICAO_EXTRA = {"XXA", "XXB", "XXC", "XXX", "UNO", "UNA", "UNK", "EUE", "RKS", "GBD", "GBN", "GBO", "GBP", "GBS"}
COUNTRY_CODES: frozenset[str] = frozenset({c.alpha_3 for c in pycountry.countries} | _ICAO_EXTRA)
CITIZEN = "IDN"

_DOC_STRIP = re.compile(r"[\s\-<]+")
_DOC_VALID = re.compile(r"^[A-Z0-9]{3,20}$")


def normalise_document_number(raw: str) -> str:
    """'a 123-456<<' and 'A123456' are the same passport."""
    return _DOC_STRIP.sub("", raw).upper()


def valid_document_number(normalised: str) -> bool:
    return _DOC_VALID.match(normalised) is not None


def person_key(secret: bytes, nationality: str, document_number: str) -> str:
    return normalised_person_key(secret, nationality.upper(), normalise_document_number(document_number))


def normalised_person_key(secret: bytes, nationality: str, document_number: str) -> str:
    """person_key for values already normalised (as the validator leaves them)."""
    return "pk_" + hmac.digest(secret, f"{nationality}|{document_number}".encode(), "sha256").hex()[:32]
