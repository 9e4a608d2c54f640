"""Exact unit conversion (rational numbers, no floats): the tables and the conversion behind ``convert_units``.

Shared by the native ``convert_units`` tool and the calculator MCP server.
"""

from __future__ import annotations

import re
from fractions import Fraction

from tierflow.tools.errors import ToolInputError

MAX_VALUE_CHARS = 60
MAX_MAGNITUDE = Fraction(10) ** 60

# Factor to the dimension's base unit (m, kg, s, m², m³, byte, m/s), exact.
UNITS: dict[str, dict[str, Fraction]] = {
    "length": {"m": Fraction(1), "km": Fraction(1000), "cm": Fraction(1, 100), "mm": Fraction(1, 1000),
               "um": Fraction(1, 10**6), "nm": Fraction(1, 10**9), "in": Fraction(254, 10000),
               "ft": Fraction(3048, 10000), "yd": Fraction(9144, 10000), "mi": Fraction(1609344, 1000),
               "nmi": Fraction(1852)},
    "mass": {"kg": Fraction(1), "g": Fraction(1, 1000), "mg": Fraction(1, 10**6), "t": Fraction(1000),
             "lb": Fraction(45359237, 10**8), "oz": Fraction(45359237, 16 * 10**8)},
    "time": {"s": Fraction(1), "ms": Fraction(1, 1000), "min": Fraction(60), "h": Fraction(3600),
             "day": Fraction(86400), "week": Fraction(604800)},
    "area": {"m2": Fraction(1), "km2": Fraction(10**6), "cm2": Fraction(1, 10**4), "ha": Fraction(10**4),
             "acre": Fraction(40468564224, 10**7), "ft2": Fraction(3048, 10000) ** 2},
    "volume": {"m3": Fraction(1), "l": Fraction(1, 1000), "ml": Fraction(1, 10**6),
               "gal": Fraction(3785411784, 10**12), "qt": Fraction(946352946, 10**12),
               "pt": Fraction(473176473, 10**12), "cup": Fraction(2365882365, 10**13),
               "floz": Fraction(295735295625, 10**16)},
    "data": {"B": Fraction(1), "bit": Fraction(1, 8), "KB": Fraction(10**3), "MB": Fraction(10**6),
             "GB": Fraction(10**9), "TB": Fraction(10**12), "KiB": Fraction(2**10), "MiB": Fraction(2**20),
             "GiB": Fraction(2**30), "TiB": Fraction(2**40)},
    "speed": {"m/s": Fraction(1), "km/h": Fraction(1000, 3600), "mph": Fraction(1609344, 3600 * 1000),
              "kn": Fraction(1852, 3600)},
}
TEMPERATURES = {"C", "F", "K"}
_ALIASES = {"meter": "m", "metre": "m", "meters": "m", "kilometer": "km", "kilometers": "km", "inch": "in",
            "inches": "in", "foot": "ft", "feet": "ft", "mile": "mi", "miles": "mi", "kilogram": "kg",
            "kilograms": "kg", "gram": "g", "grams": "g", "pound": "lb", "pounds": "lb", "lbs": "lb",
            "ounce": "oz", "second": "s", "seconds": "s", "minute": "min", "minutes": "min", "hour": "h",
            "hours": "h", "days": "day", "weeks": "week", "liter": "l", "litre": "l", "liters": "l", "L": "l",
            "gallon": "gal", "gallons": "gal", "°C": "C", "celsius": "C", "°F": "F", "fahrenheit": "F",
            "kelvin": "K", "kmh": "km/h", "kph": "km/h", "knots": "kn", "metres": "m", "kilometre": "km",
            "kilometres": "km", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
            "millimeter": "mm", "millimeters": "mm", "yard": "yd", "yards": "yd", "ounces": "oz", "litres": "l",
            "milliliter": "ml", "milliliters": "ml", "day": "day", "week": "week", "tonne": "t", "tonnes": "t"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?(/[1-9]\d*)?$")


def parse_value(text: str) -> Fraction:
    """An exact number from '12', '-0.25', '1e3' or '7/8'; bounded in length and magnitude."""
    text = str(text).strip().replace("_", "")
    if not text or len(text) > MAX_VALUE_CHARS or not _NUMBER.match(text):
        raise ToolInputError(f"value must be a number like 12, -0.25, 1e3 or 7/8 (at most {MAX_VALUE_CHARS} "
                             f"characters), got {text[:80]!r}")
    value = Fraction(text)
    if abs(value) > MAX_MAGNITUDE:
        raise ToolInputError("value is larger than 1e60")
    return value


def unit_name(name: str) -> str:
    """The canonical unit for ``name`` (aliases such as 'miles' or '°C' accepted); unknown units raise."""
    key = str(name).strip()
    key = _ALIASES.get(key, _ALIASES.get(key.lower(), key))
    if key in TEMPERATURES:
        return key
    for table in UNITS.values():
        if key in table:
            return key
    lowered = {u.lower(): u for table in UNITS.values() for u in table}
    if key.lower() in lowered and key.lower() not in {"mb", "gb", "kb", "tb", "b"}:
        return lowered[key.lower()]
    raise ToolInputError(f"unknown unit {name!r}; known: {', '.join(sorted(known_units()))}")


def known_units() -> list[str]:
    return [u for table in UNITS.values() for u in table] + sorted(TEMPERATURES)


def convert(value: Fraction, source: str, target: str) -> Fraction:
    """``value`` in ``source`` units expressed in ``target`` units, exactly."""
    src, dst = unit_name(source), unit_name(target)
    if src == dst:  # never what a request means; the error tells the model to name the unit to convert into
        raise ToolInputError(f"from and to are the same unit ({src}); convert into the unit the request asks for")
    if src in TEMPERATURES or dst in TEMPERATURES:
        if not (src in TEMPERATURES and dst in TEMPERATURES):
            raise ToolInputError(f"cannot convert {src} to {dst}: different quantities")
        kelvin = {"K": value, "C": value + Fraction(27315, 100), "F": (value - 32) * Fraction(5, 9)
                  + Fraction(27315, 100)}[src]
        if kelvin < 0:
            raise ToolInputError("temperature below absolute zero")
        return {"K": kelvin, "C": kelvin - Fraction(27315, 100),
                "F": (kelvin - Fraction(27315, 100)) * Fraction(9, 5) + 32}[dst]
    dim_src = next(d for d, table in UNITS.items() if src in table)
    dim_dst = next(d for d, table in UNITS.items() if dst in table)
    if dim_src != dim_dst:
        raise ToolInputError(f"cannot convert {src} ({dim_src}) to {dst} ({dim_dst})")
    return value * UNITS[dim_src][src] / UNITS[dim_dst][dst]


def unit_names() -> list[str]:
    """Every name ``unit_name`` accepts: canonical units and their aliases (the enum agents decode under)."""
    return sorted({*known_units(), *_ALIASES})
