"""Trusted tagging of clock times and amounts in a free-text preference, as hints for the LLM.

Small models read *what* a wording asks for well enough but slip on the arithmetic of formats
("9 pm" -> 09:00, "0.05 MW" -> 0.05 kW). Plain code finds the clock times and amounts a wording
mentions and writes them out normalized ("9 pm" = 21:00, "0.05 MW" = 0.05 MW); the LLM still
decides what each one means (the start or the end of a window, the bound or something else) and
may ignore a hint. Nothing here decides a field of the structure, and a wording with no
recognizable time or amount simply gets no hint. Also tagged: spelled-out hours ("half past ten
at night" = 22:30), shares in words ("half" = 50 percent), the time word before a clock time
("until 07:30"), and the words that usually name a quantity ("genset" -> generator_power).

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
_UNITS = "|".join(p for p, _ in _UNIT_WORDS)
# "1,500 W" (a comma before three digits groups thousands), "1,5 kW" (a decimal comma), "0.05 MW"
_AMOUNT = re.compile(r"(?<![\w.:])(\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:[.,]\d+)?)\s*("
                     + _UNITS + r")(?![\w])", re.I)


def _digits(number):
    """The value of an amount written in digits ("1,500" = 1500, "1,5" = 1.5)."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", number):
        return float(number.replace(",", ""))
    return float(number.replace(",", "."))


# "12 noon" is one time; "the midday sun", "the midnight tariff" name no time (the word qualifies a noun)
_NAMED = (r"(?<!\bthe )\b(?:(?:12|twelve)\s+)?{}\b"
          r"(?!\s+(?:sun|solar|peak|tariff|rate|price|output|generation|hours?)\b)")
_NOON = re.compile(_NAMED.format("(?:noon|midday|mid-day)"), re.I)
_MIDNIGHT = re.compile(_NAMED.format("midnight"), re.I)
_CLOCK = re.compile(r"(?<![\w.:])(\d{1,2}):(\d{2})(?:\s*" + _SUFFIX + r"(?![a-z]))?", re.I)
_HOUR_SUFFIX = re.compile(r"(?<![\w.:])(\d{1,2})\s*" + _SUFFIX + r"(?![a-z])", re.I)
_OCLOCK = re.compile(r"(?<![\w.:])(\d{1,2})\s*o'?\s?clock\b", re.I)
_MILITARY = re.compile(r"(?<![\w.:])([01]\d|2[0-4])([0-5]\d)\s*(?:h|hrs|hours)\b", re.I)
# "from 2130 to 0545", "0600-2200": four digits without "h" are a time only after a time word or
# joined by a dash, "to" or "until" to another such time (a bare "2000" is as likely watts or a year)
_FOUR_DIGITS = re.compile(r"(?<![\w.:,])([01]\d|2[0-4])([0-5]\d)(?![\w:%]|[.,]\d|\s*(?:%|(?:"
                          + _UNITS + r")(?![\w])))", re.I)
_FOUR_LEAD = re.compile(r"(?:\b(?:before|after|until|till|til|from|between|and|to|since|by|at|through|thru)\s+"
                        r"|\b\d{4}\s*[-–]\s*)$", re.I)
# a time joined to the next one by a dash or "to"/"until" ("13.00 to 15.30", "2130-0545"), that one no amount
_NEXT_TIME = r"\s*(?:[-–]|\b(?:to|till|til|until)\b)\s*"
_MONEY = r"eur|euros?|€|\$|£|cents?|ct"
_NOT_AMOUNT = r"(?!\w|[.,]\d|\s*(?:" + _UNITS + "|" + _MONEY + r")(?!\w))"
_PRICE = re.compile(r"\s*(?:" + _MONEY + r")(?!\w)", re.I)  # "2.30 EUR" is no time
# "from 1000 to 2000 W", "1.50 to 2.30 EUR": the first number of a range of amounts is no time
_TO_AMOUNT = re.compile(_NEXT_TIME + r"\d+(?:[.,]\d+)?\s*(?:" + _UNITS + "|" + _MONEY + r")(?!\w)", re.I)
_FOUR_NEXT = re.compile(_NEXT_TIME + r"\d{4}" + _NOT_AMOUNT, re.I)
_H = re.compile(r"(?<![\w.:])(\d{1,2})\s*h\b", re.I)
_H_MINUTES = re.compile(r"(?<![\w.:])(\d{1,2})h([0-5]\d)\b", re.I)  # "17h45", "21h00"
# "7.30am", "2.15 pm"; without am/pm ("until 17.45", "9.45-14.15", "13.00 to 15.30") only after a time
# word or in a range, as four digits are (a bare "7.30" is as likely an amount)
_DOT_CLOCK = re.compile(r"(?<![\w.:,])(\d{1,2})\.([0-5]\d)(?:\s*" + _SUFFIX + r"(?![a-z]))?(?![\w.,]\w|\d)", re.I)
_DOT_NEXT = re.compile(_NEXT_TIME + r"\d{1,2}\.\d{2}" + _NOT_AMOUNT, re.I)
_WORDS = {w: k + 1 for k, w in enumerate("one two three four five six seven eight nine ten eleven twelve".split())}
_HOUR = r"(\d{1,2}|" + "|".join(_WORDS) + r")"
# "half past ten", "quarter to 7 pm": a clock phrase with its own minutes
_PAST = re.compile(r"\b(half past|quarter past|quarter to)\s+" + _HOUR + r"(?:\s*" + _SUFFIX + r"(?![a-z]))?(?![\d:])", re.I)
_WORD_SUFFIX = re.compile(r"\b(" + "|".join(_WORDS) + r")\s*(?:" + _SUFFIX + r"(?![a-z])|o'?\s?clock\b)", re.I)
# a bare hour in a time context ("from 6 to 9 in the morning", "between 9 and 17", "until six")
_BARE = re.compile(r"\b(before|after|until|till|til|from|between|and|to|since|by|past|at)\s+" + _HOUR
                   + r"(?![\d:]|[.,]\d|\w|\s*(?:" + _UNITS + r"|" + _SUFFIX + r"|o'?\s?clock|h\b))",
                   re.I)
# a bare hour that starts a range whose end is written with am/pm or, after a dash, with the 24-hour
# clock's h ("10-14h", "22 - 6 h")
_RANGE_START = re.compile(r"(?<![\w.:])(\d{1,2})(?=\s*(?:-|–|to|till|until)\s*\d{1,2}(?::\d{2})?\s*" + _SUFFIX
                          + r"|\s*[-–]\s*\d{1,2}\s*h\b)", re.I)
# "outside 9-15", "EV: off 17-21": two bare hours joined by a dash, nothing after them that makes
# them amounts, durations or 12-hour times (those have patterns of their own)
_DASH_RANGE = re.compile(r"(?<![\w.:,])(\d{1,2})\s*[-–]\s*(\d{1,2})(?![\w:]|[.,]\d|\s*(?:"
                         + _UNITS + r"|" + _SUFFIX
                         + r"|o'?\s?clock|h\b|hrs?\b|hours?\b|min|days?\b|times\b))", re.I)
_PART_OF_DAY = re.compile(r"\b(in the (morning|afternoon|evening)|at night|tonight)\b", re.I)


def _hhmm(hour, minute=0):
    return f"{hour:02d}:{minute:02d}" if 0 <= hour <= 24 and 0 <= minute < 60 and hour * 60 + minute <= 1440 else None


def _number(word):
    return int(word) if word.isdigit() else _WORDS[word.lower()]


def _part_of_day(hour, at, parts):
    """A bare 12-hour ``hour`` at text position ``at`` read with the nearest part of the day."""
    near = sorted((abs(pos - at), p) for pos, p in parts if abs(pos - at) < 40)
    if not near or hour > 12:
        return hour
    part = near[0][1]
    if "morning" in part:
        return _twelve(hour, "am")
    if "night" in part:
        return 0 if hour == 12 else hour + 12 if 7 <= hour <= 11 else hour
    return _twelve(hour, "pm")


def _twelve(hour, suffix):
    if not suffix:
        return hour
    pm = suffix.lower().startswith("p")
    if hour == 12:
        return 12 if pm else 0
    return hour + 12 if pm and hour < 12 else hour


def _after(start, hhmm):
    """The reading of a 12-hour time without its am/pm (``hhmm`` read as am) that comes soonest after
    ``start`` on the clock: "1 pm to half past three" ends at 15:30, "9 pm to half past one" at 01:30,
    "11 am to 3" at 15:00, "9 am to 11" at 11:00."""
    minutes = lambda t: int(t[:2]) * 60 + int(t[3:])  # noqa: E731
    later = lambda t: (minutes(t) - minutes(start) - 1) % (24 * 60)  # noqa: E731  (the same time: a day later)
    return min((hhmm, _hhmm(int(hhmm[:2]) + 12, int(hhmm[3:]))), key=later)


def clock_mentions(text):
    """[(span as written, 'HH:MM'), ...] in order of appearance; noon = 12:00, midnight = 00:00.
    (``clock_spans``: the same with where each span starts and ends.)"""
    return [(span, hhmm) for _, _, span, hhmm in clock_spans(text)]


def clock_spans(text):
    """[(start, end, span as written, 'HH:MM'), ...] in order of appearance; noon = 12:00, midnight = 00:00.

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

    for m in [*_AMOUNT.finditer(text), *_WORD_AMOUNT.finditer(text)]:  # amounts are never times
        taken.append(m.span())
    for m in _CLOCK.finditer(text):
        add(m, _hhmm(_twelve(int(m[1]), m[3]), int(m[2])))
    for m in _DOT_CLOCK.finditer(text):
        if not m[3] and (_TO_AMOUNT.match(text, m.end()) or _PRICE.match(text, m.end())):
            continue
        if m[3] or _FOUR_LEAD.search(text[max(0, m.start() - 12):m.start()]) or _DOT_NEXT.match(text, m.end()) \
                or re.search(r"\d{1,2}\.\d{2}\s*[-–]\s*$", text[max(0, m.start() - 12):m.start()]):
            add(m, _hhmm(_twelve(int(m[1]), m[3]), int(m[2])))
    for m in _HOUR_SUFFIX.finditer(text):
        add(m, _hhmm(_twelve(int(m[1]), m[2])))
    for m in _MILITARY.finditer(text):
        add(m, _hhmm(int(m[1]), int(m[2])))
    for m in _FOUR_DIGITS.finditer(text):
        if _TO_AMOUNT.match(text, m.end()):
            continue
        if _FOUR_LEAD.search(text[max(0, m.start() - 12):m.start()]) or _FOUR_NEXT.match(text, m.end()):
            add(m, _hhmm(int(m[1]), int(m[2])))
    for m in _OCLOCK.finditer(text):
        add(m, _hhmm(int(m[1])))
    for m in _H_MINUTES.finditer(text):
        add(m, _hhmm(int(m[1]), int(m[2])))
    for m in _H.finditer(text):
        add(m, _hhmm(int(m[1])))
    for m in _NOON.finditer(text):
        add(m, "12:00")
    for m in _MIDNIGHT.finditer(text):
        add(m, "00:00")
    parts = [(m.start(), m[0].lower()) for m in _PART_OF_DAY.finditer(text)]
    for m in _RANGE_START.finditer(text):
        add(m, _hhmm(int(m[1])), 1)
    for m in _DASH_RANGE.finditer(text):
        if int(m[1]) <= 24 and int(m[2]) <= 24:
            for group in (1, 2):
                add(m, _hhmm(_part_of_day(int(m[group]), m.start(group), parts)), group)
    for m in _PAST.finditer(text):
        hour, kind = _number(m[2]), m[1].lower()
        hour = _twelve(hour, m[3]) if m[3] else _part_of_day(hour, m.start(2), parts)
        minute = {"half past": 30, "quarter past": 15, "quarter to": 45}[" ".join(kind.split())]
        add(m, _hhmm(hour - 1 if kind.startswith("quarter to") else hour, minute))
    for m in _WORD_SUFFIX.finditer(text):
        suffix = re.match(_SUFFIX, m[0][len(m[1]):].strip(), re.I)
        add(m, _hhmm(_twelve(_number(m[1]), suffix[0] if suffix else None)))
    for m in _BARE.finditer(text):
        add(m, _hhmm(_part_of_day(_number(m[2]), m.start(2), parts)), 2)
    found.sort()
    # "9-11pm", "6 to 9 am": a bare hour before a range word takes the next time's suffix
    # "from 10 till 4": a bare hour after a bare hour and a range word, earlier than it, is afternoon
    out = []
    bare = lambda span: re.fullmatch(_HOUR, span.strip(), re.I)  # noqa: E731

    def open_hour(span, hhmm):
        """A time written on a 12-hour clock without its am/pm: a bare hour, or (where no part of the
        day is named) "1:30" or "half past six" ("between 1:30 and 3:30 pm" = 13:30 to 15:30)."""
        if bare(span):
            return True
        written = re.fullmatch(r"(\d{1,2})[:.]\d{2}", span.strip()) or _PAST.fullmatch(span.strip())
        return bool(written) and not parts and not re.search(_SUFFIX + r"\s*$", span, re.I) and hhmm <= "12:59"
    joined = lambda a, b: re.fullmatch(r"\s*(?:-|–|to|till|until|and)\s*", text[a:b], re.I)  # noqa: E731
    for k, (s, e, span, hhmm) in enumerate(found):
        nxt = found[k + 1] if k + 1 < len(found) else None
        prev = found[k - 1] if k else None
        if (bare(span) and prev and bare(prev[2]) and joined(prev[1], s) and hhmm < out[-1][3] <= "12:00"
                and _number(span.strip()) < 12 and not parts):
            hhmm = _hhmm(_number(span.strip()) + 12)
        if (open_hour(span, hhmm) and prev and joined(prev[1], s) and not open_hour(prev[2], prev[3])
                and not parts and 1 <= int(hhmm[:2]) <= 11):
            hhmm = _after(out[-1][3], hhmm)
        if open_hour(span, hhmm) and nxt and joined(e, nxt[0]):
            suffix = re.search(_SUFFIX + r"\s*$", nxt[2], re.I)
            if suffix:
                hour, minute = int(hhmm[:2]), int(hhmm[3:])
                hour = hour - 12 if hour > 12 else hour  # (a bare hour read as afternoon above)
                for cand in (_twelve(hour, suffix[1]), _twelve(hour, "am" if suffix[1][0] in "pP" else "pm")):
                    if _hhmm(cand, minute) and _hhmm(cand, minute) < nxt[3]:
                        hhmm = _hhmm(cand, minute)
                        break
        out.append((s, e, span, hhmm))
    return out


# "half", "a quarter", "a fifth of its capacity", "two thirds full"; a third, fifth or tenth only before
# "of", "full" or "charged" ("a third battery" is an ordinal), a quarter never in a clock phrase
_SHARE = re.compile(r"\b(half|(?:a|one) quarter|three quarters|"
                    r"(?:(?:a|one) (?:third|fifth|tenth)|two thirds|(?:two|three|four) fifths)(?=\s+(?:of|full|charged)\b))"
                    r"\b(?!\s+(?:past|to|an? hour|of an hour|hour))", re.I)
_SHARES = {"half": 50.0, "quarter": 25.0, "three quarters": 75.0, "third": 100 / 3, "two thirds": 200 / 3,
           "fifth": 20.0, "two fifths": 40.0, "three fifths": 60.0, "four fifths": 80.0, "tenth": 10.0}
_UNITS_19 = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
_TENS = {w: 10 * k for k, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_NUMBER_WORDS = {**{w: k for k, w in enumerate(_UNITS_19)}, **_TENS}
_CARDINAL = (r"(?:" + "|".join(_TENS) + r")(?:[- ](?:" + "|".join(_UNITS_19[1:10]) + r"))?|"
             + "|".join(sorted(_UNITS_19, key=len, reverse=True)))
_FRACTION = {"a half": 0.5, "half a": 0.5, "a quarter": 0.25, "three quarters": 0.75, "a": 1.0, "an": 1.0}
# "seven kilowatts", "two and a half kW", "twenty-five percent", "one point five kW", "half a kilowatt"
_WORD_AMOUNT = re.compile(
    r"\b(?:(?P<whole>(?:" + _CARDINAL + r")(?:\s+hundred(?:\s+and)?(?:\s+(?:" + _CARDINAL + r"))?)?)"
    r"(?:\s+and\s+(?P<and>a half|a quarter|three quarters)|\s+point\s+(?P<point>(?:(?:" + "|".join(_UNITS_19[:10])
    + r")\s*)+))?|(?P<fraction>half an?|a quarter of an?|three quarters of an?|an?))\s+"
    r"(?P<unit>" + "|".join(p.removeprefix("%|") for p, _ in _UNIT_WORDS) + r")(?![\w])", re.I)


def _cardinal(words):
    """The number of spelled-out words ("twenty-five", "three hundred and ten")."""
    number = 0
    for w in re.split(r"[\s-]+", words.lower()):
        if w == "hundred":
            number *= 100
        elif w != "and":
            number += _NUMBER_WORDS[w]
    return number


def _word_amount(m):
    """The number of one _WORD_AMOUNT match."""
    if m["fraction"]:
        words = [w if w != "an" else "a" for w in m["fraction"].lower().split() if w != "of"]
        return _FRACTION[" ".join(words[:2])]
    number = float(_cardinal(m["whole"]))
    if m["and"]:
        number += _FRACTION[" ".join(m["and"].lower().split())]
    if m["point"]:
        number += float("0." + "".join(str(_NUMBER_WORDS[w]) for w in m["point"].lower().split()))
    return number


def amount_mentions(text):
    """[(span as written, number, unit), ...]: numbers with a power, energy or percent unit, in
    digits or in words ("seven kilowatts", "two and a half kW", "half a kilowatt"), and shares in
    words ("half" = 50 percent; not "half past")."""
    out, taken = [], []

    def unit_of(word):
        word = word.lower().replace(" ", "")
        return next(u for p, u in _UNIT_WORDS if re.fullmatch(p, word, re.I))

    for m in _AMOUNT.finditer(text):
        out.append((m.start(), m[0], _digits(m[1]), unit_of(m[2])))
    for m in _WORD_AMOUNT.finditer(text):
        out.append((m.start(), m[0], _word_amount(m), unit_of(m["unit"])))
        taken.append(m.span())
    for m in _SHARE.finditer(text):
        if not any(a <= m.start() < b for a, b in taken):
            out.append((m.start(), m[0], _SHARES[re.sub(r"^(?:a|one) ", "", " ".join(m[1].lower().split()))],
                        "percent"))
    return [mention[1:] for mention in sorted(out)]


_NIGHT_WORDS = re.compile(r"\b(over\s?night|at night|during the night|nightly|night[- ]?time|nights?|tonight)\b",
                          re.I)


def period_mentions(text):
    """[(span as written, 'HH:MM' start, 'HH:MM' end)] of named periods with a fixed meaning in this
    project: night = 22:00-06:00 (agents/expert/preferences.py NIGHT)."""
    start, end = (f"{int(h):02d}:{int(round(h % 1 * 60)):02d}" for h in NIGHT)
    whole = [m.span() for m in _DAY_AND_NIGHT.finditer(text)]  # "day or night" is every hour, no period
    return [(m[0], start, end) for m in _NIGHT_WORDS.finditer(text) if not any(a <= m.start() < b for a, b in whole)]


_DAY = r"(?:(?:by|during the|in the|through the|all)\s+)?day(?:[- ]?time|light)?"
_NIGHT = r"(?:(?:at|by|during the|in the|through the|all)\s+)?night(?:[- ]?time)?"
_DAY_AND_NIGHT = re.compile(rf"\b{_DAY}[\s-]*(?:or|and|&|nor|\+|/|-)[\s-]*{_NIGHT}\b|"
                            rf"\b{_NIGHT}[\s-]*(?:or|and|&|/|-)[\s-]*{_DAY}\b", re.I)


_RESTRICTING = re.compile(r"\b(only|just|exclusively|solely|except|excepting|unless|restricted to|reserved for|"
                          r"limited to the|not outside|never outside|no other time|at no other time|otherwise|"
                          r"outside (?:of )?th(?:at|is|ose))\b", re.I)


def _word_hint(label, words):
    """One hint line: the words found, quoted, or "none"."""
    return f"{label} in the text: " + (", ".join(f'"{w}"' for w in words) or "none")


def restricting_hint(text):
    """The hint line of the scope question: words that restrict something to a window."""
    return _word_hint("Restricting words", [m[0] for m in _RESTRICTING.finditer(text)])


_EXCEPTION = re.compile(r"\b(except(?:ing)?|apart from|aside from|other than|outside(?: of)?|besides|save for|barring|"
                        r"but not|(?:at )?(?:no|any|every) other time)\b", re.I)


def exception_mentions(text):
    """The words that make a window an exception to the rest of the day ("except", "apart from",
    "outside", "other than", "but not", "at no other time"): whether the bound holds in the window
    or at every other time then depends on the rest of the wording, a question the LLM is asked (a
    ban "except 5 to 8 pm" holds at every other time, a permission "any time except 5 to 8 pm" bans
    the window)."""
    return [m[0] for m in _EXCEPTION.finditer(text)]


_EXCEPTED_WITHIN = 50
"""characters after an exception word within which the excepted window must begin"""


def exception_window(text):
    """Whether an exception word ("except", "apart from", "outside of", "other than", ...) takes a
    window out of the day: a clock time or a named period (night) begins within a few words after it
    ("export cap 5 kW except 11am-2pm", "apart from the early hours, midnight to 6 am, ...", "except in
    the cheap window from 1 to 5 in the morning"). Unless the wording grants something and takes the
    window out of the grant (``permission_exception``: the window is banned), the bound then holds at
    every other time. The words between name no amount, comparison or quantity, so "outside" as a
    place ("the outside heater below 2 kW from 6 to 9 pm") is not such; nor is "at any other time"
    (it points back at a window). A fact about the text's grammar: on the 812 benchmark wordings of
    the twelfth session, all 73 with an exception word and no permission before it apply outside
    their window; the 0.5B model read "Apart from the early hours, midnight to 6 am, ... at least 2
    kWh" as holding in the window."""
    starts = [s for s, *_ in clock_spans(text)] + [m.start() for m in _NIGHT_WORDS.finditer(text)]
    return any(m.end() <= s <= m.end() + _EXCEPTED_WITHIN and _plain_gap(text[m.end():s])
               for m in _EXCEPTION.finditer(text) if not _OTHER_TIME.fullmatch(m[0]) for s in starts)


def _plain_gap(gap):
    """Whether the words between an exception word and a window name no amount, comparison or quantity."""
    return not (amount_mentions(gap) or _COMPARISON.search(gap) or _QUANTITY_RE.search(gap))


_PERMISSION = re.compile(r"\b(any ?time|at any (?:hour|time)|whenever|all day|fine|ok|okay|allowed|permitted|free to|"
                         r"welcome to|may|can)\b", re.I)
_DENIAL = re.compile(r"\b(?:not|never|no|nothing|none|off|stop\w*|cannot)\b|n't\b", re.I)
_OTHER_TIME = re.compile(r"\b(?:at )?(?:no|any|every) other time\b", re.I)


def permission_exception(text):
    """Whether the wording grants something and takes a window out of the grant: a permission
    ("may", "can", "any time", "whenever", "is fine", "allowed") before the first exception word
    ("except", "apart from", "other than", "but not", ...), no negation before it, no amount in the
    whole wording and no "at no/any/every other time" ("the pool pump can run any time except 17-20",
    "exporting is fine all day apart from 11 am to 2 pm"). Such a wording bans the window: at most 0
    kW during it. A fact about the text's grammar; the 0.5B model, asked, read all 5 dev wordings of
    this form as limits lifted in the window (README)."""
    found = _EXCEPTION.search(text)
    if not found or _OTHER_TIME.search(text) or amount_mentions(text):
        return False
    head = text[:found.start()]
    return bool(_PERMISSION.search(head)) and not _DENIAL.search(head)


_ONLY = re.compile(r"\b(only|exclusively|solely|restricted to|reserved for|confined to|limited to|"
                   r"(?:at )?no other time|never at (?:any )?other times?|"
                   r"just(?=\s+(?:between|from|after|before|until|during|at|in|overnight|when|while|\d)))\b", re.I)


def only_window(text):
    """Whether the wording allows something only in a window: a restricting word ("only",
    "exclusively", "solely", "restricted to", "reserved for", "just" before a time, "at no other
    time"), a clock time or named period, no amount ("the main fuse only allows 25 kW" is a limit;
    "the battery may only drop below 40 % ..." is read by the LLM) and no denial besides the
    restricting phrase ("only keep the genset off at night" is a ban in the window). Such a wording
    is "at most 0 kW at every other time". A fact about the text's grammar; the 0.5B model, asked,
    read 17 of the 50 dev wordings of this form as limits in the window (README)."""
    if not _ONLY.search(text) or amount_mentions(text) or permission_exception(text):
        return False
    if not clock_mentions(text) and not period_mentions(text):
        return False
    rest = _ONLY.sub(" ", text)
    return not _DENIAL.search(rest)


def plain_ban(text):
    """Whether the wording denies something ("off", "not", "never", "no", "stop", "n't") with no
    restricting word ("only", "just", "otherwise", ...) and no exception word ("except", "outside",
    "apart from", ...): it bans or caps what it names where it says ("pump off from 19:00 to 07:00"),
    so it is never something allowed only in a window. A fact about the text's grammar: on the 732
    benchmark wordings of the tenth session, 276 are such, none of the 'only' kind, none applying
    outside its window; the 0.5B model read "Irrigation pump off from 19:00 to 07:00" as 'only'."""
    return bool(_DENIAL.search(text)) and not _RESTRICTING.search(text) and not exception_mentions(text)


def exception_hint(text):
    """The hint line of the choices variant's scope question."""
    return _word_hint("Exception words", exception_mentions(text))


_LEAD = re.compile(r"\b(before|after|until|till|til|up to|by|from|since|starting(?: at| from)?|at|between|and|to|past)\s+"
                   r"(?:a\s+)?$", re.I)  # "until a quarter past six"


def _lead(text, span, start):
    """(the match of the time word right before ``span``, found at or after ``start``, or None;
    where the next search starts)."""
    at = text.find(span, start)
    lead = _LEAD.search(text[max(0, at - 20):at]) if at >= 0 else None
    return lead, max(start, at + len(span))


BEFORE_WORDS = ("before", "until", "till", "til", "up to")
AFTER_WORDS = ("after", "from", "since", "starting", "starting at", "starting from", "past")
"""time words that make one clock time the end / the start of a window ("until 7", "from 18:00");
"by", "to" and "at" say neither ("charged by 7 am" is a deadline)"""


def clock_leads(text):
    """[('HH:MM', time word before it, lower case, or None), ...] of the clock times in order."""
    out, at = [], 0
    for span, hhmm in clock_mentions(text):
        lead, at = _lead(text, span, at)
        out.append((hhmm, " ".join(lead[1].lower().split()) if lead else None))
    return out


_RANGE_JOIN = re.compile(r"\s*(?:(?:in the (?:morning|afternoon|evening)|at night)\s*)?"
                         r"(?:-|–|—|to|till|til|until|and|through|thru)\s*(?:a\s+)?", re.I)


def clock_range(text):
    """('HH:MM', 'HH:MM') of a wording whose clock times are exactly two joined as a range ("between
    A and B", "from A to B", "A-B", "A in the evening until B"), else None; a named period beside
    them ("at night from 1 to 5") does not count, the times are the window. Midnight as the end is
    24:00. A fact about the text: whether the bound holds in the range or at every other time is
    not decided here."""
    found = clock_spans(text)
    if len(found) != 2 or not _RANGE_JOIN.fullmatch(text[found[0][1]:found[1][0]]):
        return None
    start, end = found[0][3], "24:00" if found[1][3] == "00:00" else found[1][3]
    return None if start == end else (start, end)


def hints(text, lead_words=False):
    """The hint lines the extraction prompt shows under a wording; ``lead_words``: each clock time
    with the time word before it ("until 07:30" = 07:30)."""
    clocks, at = [], 0
    for span, hhmm in clock_mentions(text):
        if lead_words:
            lead, at = _lead(text, span, at)
            span = f"{lead[0]}{span}" if lead else span
        clocks.append(f'"{span}" = {hhmm}')
    clocks += [f'"{span}" = {a} to {b}' for span, a, b in period_mentions(text)]
    clocks = ", ".join(clocks) or "none"
    amounts = ", ".join(f'"{span}" = {number:g} {unit}' for span, number, unit in amount_mentions(text)) or "none"
    return f"Clock times in the text: {clocks}\nAmounts in the text: {amounts}"


# comparison words and the sense they give the number they qualify; a negation right before one
# flips it ("no more than", "must not hold more than", "never above", "not below")
_CEILING = (r"at (?:the )?most|max(?:imum|imal)?|up to(?=\s*" + _AMOUNT.pattern + r")|limit(?:ed|s|ing)?|cap(?:ped|s)?|"
            r"below|under(?!\w)|beneath|less than|lower than|fewer than|smaller than|within|"
            r"or (?:less|lower|below|under|fewer)|at or (?:below|under)")
_FLOOR = (r"at least|min(?:imum|imal)?|above|over(?!\s?night)|more than|higher than|greater than|exceed(?:s|ing)?|"
          r"(?:beyond|past|in excess of)(?=\s*" + _AMOUNT.pattern + r")|"
          r"or (?:more|higher|above|over|greater)|at or (?:above|over)|reserve|in reserve|hold(?:s|ing)? back|"
          r"keep(?:s|ing)? .{0,30}?charged")
_NEGATION = r"(?:\b(?:not|never|no|nothing)|\b\w+n't)"
_CLAUSE_WORD = r"\s+(?!(?:but|or|except|unless|otherwise)\b)[\w'-]+"
_COMPARISON = re.compile(r"(?P<neg>" + _NEGATION + r"(?:" + _CLAUSE_WORD + r"){0,8}?\s+)?"
                         r"(?:(?P<at_most>\b(?:" + _CEILING
                         + r"))|(?P<at_least>\b(?:" + _FLOOR + r")))\b", re.I)
FLIP = {"at_most": "at_least", "at_least": "at_most"}
"""the opposite sense"""
_SYMBOL = re.compile(r"(?:(?P<at_most>≤|<=|=<|<)|(?P<at_least>≥|>=|=>|>))(?=\s*\d)")


def comparison_mentions(text):
    """[(span as written, 'at_most' | 'at_least'), ...]: comparison words and the sense they give
    ("or less" = at_most, "at least" = at_least); a negation up to eight words before in the same
    clause (a comma, "but", "or", "except", "unless" end it) flips them ("never above" = at_most,
    "must not fall under" = at_least, "never let the pump and the charger together exceed" =
    at_most). A hint, the LLM decides.

    >>> comparison_mentions("the battery must not hold more than 8 kWh")
    [('not hold more than', 'at_most')]
    >>> comparison_mentions("keep grid imports at 2.2 kw or less overnight")
    [('or less', 'at_most')]
    """
    out = []
    for m in _COMPARISON.finditer(text):
        sense = "at_most" if m["at_most"] else "at_least"
        if m["neg"]:
            sense = FLIP[sense]
        out.append((m.start(), m[0].strip(), sense))
    out += [(m.start(), m[0], m.lastgroup) for m in _SYMBOL.finditer(text)]  # "draw <= 5 kW"
    return [(span, sense) for _, span, sense in sorted(out)]


def comparison_hint(text):
    """The hint line of the 'what' question (choices variant): comparison words with their sense."""
    words = ", ".join(f'"{span}" = {sense}' for span, sense in comparison_mentions(text)) or "none"
    return f"Comparison words: {words}"


_QUANTITY_WORDS = {  # the words of the extraction prompt's quantity rules, and their common kin
    "generator_power": r"generators?|gen[- ]?sets?|gen|genn(?:y|ies)|generating sets?|diesel|chp|engines?|"
                       r"(?:micro-?)?turbines?|"
                       r"combined heat and power|fuel cell|"
                       r"co-?gen(?:eration)?(?: plant| unit)?",
    "battery_energy": r"batter(?:y|ies)|state of charge|soc|bess|(?<!cold[- ])storage|stored energy|powerwall|"
                      r"accumulator",
    "grid_import": r"import(?:s|ed|ing)?|(?:grid|network|mains|utility) (?:draw|consumption|supply|purchases?)|"
                   r"(?:draw|tak|pull|get|consum|us|buy)\w*(?: [\w.-]+){0,4}? (?:from|off) "
                   r"(?:the )?(?:grid|network|mains|utility)|"
                   r"from (?:the )?(?:utility |public )?(?:grid|network|mains)|meter draw|"
                   r"(?:grid|network|mains|utility)(?: [\w']+){0,4}? (?:draw|pull)\w*|"
                   r"buy(?:s|ing)?|bought|purchas(?:e|es|ed|ing)",
    "grid_export": r"export(?:s|ed|ing)?|feed(?:s|ing)?(?: in| into)?|fed(?: in| into)?|feed-?in|sell(?:s|ing)?|sold|"
                   r"inject(?:s|ed|ing|ion)?|(?:push|send|deliver|giv|return|spill)\w*(?: [\w-]+){0,3}? "
                   r"(?:back |back in|in|on)?to the (?:grid|network|mains|utility)|push(?:es|ed|ing)? back|"
                   r"send(?:s|ing)? back|(?:back )?(?:in|on)?to the (?:utility |public )?(?:grid|network|mains)",
    "flexible_load_power": r"dishwashers?|washing machines?|washers?|(?:tumble )?dryers?|heat pumps?|(?:ev )?chargers?|"
                           r"electric (?:vehicles?|cars?)|ev|cars?|wallbox(?:es)?|(?:[\w-]+ )?pumps?|"
                           r"(?:immersion|space|electric) heaters?|air[- ]?con(?:ditioning|ditioners?)?|hot tubs?|saunas?|"
                           r"water heaters?|boilers?|appliances?|"
                           r"(?:flexible|controllable|shiftable|deferrable) (?:loads?|consumption|appliances?)",
    "pv_curtailment": r"curtail(?:s|ed|ing|ment)?|spill(?:s|ed|ing)?(?! \w+ (?:back )?to the)|wast(?:e|es|ed|ing)|"
                      r"throw(?:s|n|ing)?(?: [\w'-]+){0,3}? away|clip(?:s|ped|ping)?|throttl(?:e|es|ed|ing)|"
                      r"(?:cut|dump|discard|los[et])\w*(?: [\w'.]+){0,7}? (?:solar|pv|panels?|array|modules?)",
}
_QUANTITY_RE = re.compile("|".join(f"(?P<{q}>\\b(?:{p})\\b)" for q, p in _QUANTITY_WORDS.items()), re.I)


def quantity_mentions(text):
    """[(span as written, quantity), ...]: words that usually name one quantity ("genset" ->
    generator_power, "EV charger" -> flexible_load_power); a hint, the LLM decides."""
    return [(m[0], m.lastgroup) for m in _QUANTITY_RE.finditer(text)]


def quantity_hint(text):
    """The hint line of the 'what' question (choices variant)."""
    words = ", ".join(f'"{span}" = {q}' for span, q in quantity_mentions(text)) or "none"
    return f"Words that name a quantity: {words}"
