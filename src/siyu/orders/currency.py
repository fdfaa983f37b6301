"""Currency codes: what an order's ``currency`` may say, from an import or an ecommerce event.

Amounts are kept in the currency they were paid in; an unknown code would only make a total
that nobody can read, so it is refused where the order comes in.
"""

from __future__ import annotations

from typing import Any

# ISO 4217's codes in use, and CNH (the offshore yuan, which Chinese payment exports name).
_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNH CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XCD XCG XDR XOF XPD XPF
XPT YER ZAR ZMW ZWG ZWL
"""
CODES = frozenset(_CODES.split())
# How shops' exports and apps write the usual ones.
ALIASES = {
    "¥": "CNY", "￥": "CNY", "元": "CNY", "人民币": "CNY", "RMB": "CNY",
    "$": "USD", "US$": "USD", "美元": "USD", "HK$": "HKD", "港币": "HKD", "港元": "HKD",
}


def currency_code(value: Any) -> str | None:
    """The ISO code ``value`` names (any case, or an alias above), or None when it names none."""
    raw = str(value).strip()
    code = ALIASES.get(raw) or ALIASES.get(raw.upper()) or raw.upper()
    return code if code in CODES else None
