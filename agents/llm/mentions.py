"""Trusted tagging of clock times and amounts in a free-text preference, as hints for the LLM.

Small models read *what* a wording asks for well enough but slip on the arithmetic of formats
("9 pm" -> 09:00, "0.05 MW" -> 0.05 kW). Plain code finds the clock times and amounts a wording
mentions and writes them out normalized ("9 pm" = 21:00, "0.05 MW" = 0.05 MW); the LLM still
decides what each one means (the start or the end of a window, the bound or something else) and
may ignore a hint. Nothing here decides a field of the structure, and a wording with no
recognizable time or amount simply gets no hint.

    >>> clock_mentions("Import no more than 6 kW between 8:30 and 11:15")
    [('8:30', '08:30'), ('11:15', '11:15')]
    >>> clock_mentions("keep the genset off from 11pm to 7am")
    [('11pm', '23:00'), ('7am', '07:00')]
    >>> amount_mentions("Grid draw capped at 0.05 MW during the night")
    [('0.05 MW', 0.05, 'MW')]
"""

import re

from agents.expert.preferences import NIGHT

_SUFFIX = r"(a\.m\.|p\.m\.|am|pm)"
_UNIT_WORDS = [  # (pattern, unit of agents/expert/preferences.py UNITS); longest first
    (r"kwh|kilowatt[- ]?hours?", "kWh"), (r"mwh|megawatt[- ]?hours?", "MWh"), (r"wh|watt[- ]?hours?", "Wh"),
    (r"kw|kilowatts?", "kW"), (r"mw|megawatts?", "MW"), (r"w|watts?", "W"),
    (r"%|percent|per\s?cent|pct", "percent"),
]
_AMOUNT = re.compile(r"(?<![\w.:])(\d+(?:[.,]\d+)?)\s*(" + "|".join(p for p, _ in _UNIT_WORDS) + r")(?![\w])", re.I)
_NOON = re.compile(r"\b(noon|midday|mid-day)\b", re.I)
_MIDNIGHT = re.compile(r"\bmidnight\b", re.I)
_CLOCK = re.compile(r"(?<![\w.:])(\d{1,2}):(\d{2})(?:\s*" + _SUFFIX + r"(?![a-z]))?", re.I)
_HOUR_SUFFIX = re.compile(r"(?<![\w.:])(\d{1,2})\s*" + _SUFFIX + r"(?![a-z])", re.I)
_OCLOCK = re.compile(r"(?<![\w.:])(\d{1,2})\s*o'?\s?clock\b", re.I)
_MILITARY = re.compile(r"(?<![\w.:])([01]\d|2[0-4])([0-5]\d)\s*(?:h|hrs|hours)\b", re.I)
_H = re.compile(r"(?<![\w.:])(\d{1,2})\s*h\b", re.I)
# a bare hour in a time context ("from 6 to 9 in the morning", "between 9 and 17")
_BARE = re.compile(r"\b(before|after|until|till|til|from|between|and|to|since|by|past)\s+(\d{1,2})(?![\d:.,]|\s*(?:"
                   + "|".join(p for p, _ in _UNIT_WORDS) + r"|" + _SUFFIX + r"|o'?\s?clock|h\b))", re.I)
_RANGE_START = re.compile(r"(?<![\w.:])(\d{1,2})(?=\s*(?:-|–|to|till|until)\s*\d{1,2}(?::\d{2})?\s*" + _SUFFIX + ")", re.I)
_PART_OF_DAY = re.compile(r"\b(in the (morning|afternoon|evening)|at night|tonight)\b", re.I)


def _hhmm(hour, minute=0):
    return f"{hour:02d}:{minute:02d}" if 0 <= hour <= 24 and 0 <= minute < 60 and hour * 60 + minute <= 1440 else None


def _twelve(hour, suffix):
    if not suffix:
        return hour
    pm = suffix.lower().startswith("p")
    if hour == 12:
        return 12 if pm else 0
    return hour + 12 if pm and hour < 12 else hour


def clock_mentions(text):
    """[(span as written, 'HH:MM'), ...] in order of appearance; noon = 12:00, midnight = 00:00.

    12-hour times take their am/pm; a bare hour right before "to/-" takes the suffix of the hour
    after it when that keeps the order ("9-11pm" = 21:00-23:00, "11 to 2 pm" = 11:00-14:00);
    bare hours followed by "in the morning" / "in the afternoon|evening" / "at night" take am / pm
    nearby (at night: 7..11 pm, 12 = 00:00, 1..6 am).
    """
    found = []  # (start, end, span, hhmm)
    taken = []

    def add(m, hhmm, group=0):
        s, e = m.span(group)
        if hhmm and not any(s < b and a < e for a, b in taken):
            taken.append((s, e))
            found.append((s, e, m.group(group), hhmm))

    for m in _AMOUNT.finditer(text):  # amounts are never times
        taken.append(m.span())
    for m in _CLOCK.finditer(text):
        add(m, _hhmm(_twelve(int(m[1]), m[3]), int(m[2])))
    for m in _HOUR_SUFFIX.finditer(text):
        add(m, _hhmm(_twelve(int(m[1]), m[2])))
    for m in _MILITARY.finditer(text):
        add(m, _hhmm(int(m[1]), int(m[2])))
    for m in _OCLOCK.finditer(text):
        add(m, _hhmm(int(m[1])))
    for m in _H.finditer(text):
        add(m, _hhmm(int(m[1])))
    for m in _NOON.finditer(text):
        add(m, "12:00")
    for m in _MIDNIGHT.finditer(text):
        add(m, "00:00")
    parts = [(m.start(), m[0].lower()) for m in _PART_OF_DAY.finditer(text)]
    for m in _RANGE_START.finditer(text):
        add(m, _hhmm(int(m[1])), 1)
    for m in _BARE.finditer(text):
        hour, at = int(m[2]), m.start(2)
        near = sorted((abs(pos - at), p) for pos, p in parts if abs(pos - at) < 40)
        if near and hour <= 12:
            part = near[0][1]
            if "morning" in part:
                hour = _twelve(hour, "am")
            elif "night" in part:
                hour = 0 if hour == 12 else hour + 12 if 7 <= hour <= 11 else hour
            else:
                hour = _twelve(hour, "pm")
        add(m, _hhmm(hour), 2)
    found.sort()
    # "9-11pm", "6 to 9 am": a bare hour before a range word takes the next time's suffix
    out = []
    for k, (s, e, span, hhmm) in enumerate(found):
        nxt = found[k + 1] if k + 1 < len(found) else None
        bare = re.fullmatch(r"\d{1,2}", span.strip())
        if bare and nxt and re.fullmatch(r"\s*(?:-|–|to|till|until)\s*", text[e:nxt[0]], re.I):
            suffix = re.search(_SUFFIX + r"\s*$", nxt[2], re.I)
            if suffix:
                hour = int(span)
                for cand in (_twelve(hour, suffix[1]), _twelve(hour, "am" if suffix[1][0] in "pP" else "pm")):
                    if _hhmm(cand) and _hhmm(cand) < nxt[3]:
                        hhmm = _hhmm(cand)
                        break
        out.append((span, hhmm))
    return out


def amount_mentions(text):
    """[(span as written, number, unit), ...]: numbers with a power, energy or percent unit."""
    out = []
    for m in _AMOUNT.finditer(text):
        word = m[2].lower().replace(" ", "")
        unit = next(u for p, u in _UNIT_WORDS if re.fullmatch(p, word, re.I))
        out.append((m[0], float(m[1].replace(",", ".")), unit))
    return out


_NIGHT_WORDS = re.compile(r"\b(over\s?night|at night|during the night|nightly|nights?|tonight)\b", re.I)


def period_mentions(text):
    """[(span as written, 'HH:MM' start, 'HH:MM' end)] of named periods with a fixed meaning in this
    project: night = 22:00-06:00 (agents/expert/preferences.py NIGHT)."""
    start, end = (f"{int(h):02d}:{int(round(h % 1 * 60)):02d}" for h in NIGHT)
    return [(m[0], start, end) for m in _NIGHT_WORDS.finditer(text)]


_RESTRICTING = re.compile(r"\b(only|exclusively|solely|except|no other time|at no other time|otherwise)\b", re.I)


def restricting_hint(text):
    """The hint line of the scope question: words that restrict something to a window."""
    words = ", ".join(f'"{m[0]}"' for m in _RESTRICTING.finditer(text)) or "none"
    return f"Restricting words in the text: {words}"


def hints(text):
    """The hint lines the extraction prompt shows under a wording."""
    clocks = [f'"{span}" = {hhmm}' for span, hhmm in clock_mentions(text)]
    clocks += [f'"{span}" = {a} to {b}' for span, a, b in period_mentions(text)]
    clocks = ", ".join(clocks) or "none"
    amounts = ", ".join(f'"{span}" = {number:g} {unit}' for span, number, unit in amount_mentions(text)) or "none"
    return f"Clock times in the text: {clocks}\nAmounts in the text: {amounts}"
