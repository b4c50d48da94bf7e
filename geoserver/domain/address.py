"""Parse, match and format Chinese standard addresses (标准地址, 四标四实); pure, no I/O.

A standard address descends county (区/县/市) › township (乡镇/街道) › village (村/社区) ›
road (路/街/巷/弄/坊/大道) › door number (号) › building (幢) › unit (单元) › room (室).
12345 and 110 tickets, and most pooled records, locate themselves by such text only, so the
geocoder parses free text here, fetches candidates from the database with `candidate_keys`,
and ranks them with `score_match`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

__all__ = [
    "ADMIN_CONFLICT_FACTORS",
    "ADMIN_LEVELS",
    "COMPONENT_WEIGHTS",
    "Gazetteer",
    "GazetteerEntry",
    "MAX_ADDRESS_LENGTH",
    "MISSING_CREDIT",
    "ParsedAddress",
    "ROAD_SUFFIXES",
    "VIRTUAL_TOWNSHIP_SUFFIX",
    "admin_stem",
    "candidate_keys",
    "chinese_numeral_to_int",
    "format_address",
    "normalize_address_text",
    "parse_address",
    "road_similarity",
    "score_match",
]

ADMIN_LEVELS: tuple[str, ...] = ("county", "township", "village")
ROAD_SUFFIXES: tuple[str, ...] = ("大道", "路", "街", "巷", "弄", "坊")

# The statistical quasi-township over 龙港's communities (330383198 龙港县直辖村级区划).
VIRTUAL_TOWNSHIP_SUFFIX = "直辖村级区划"
# Longer text is not an address; the cap also bounds the work the regexes can do.
MAX_ADDRESS_LENGTH = 200

_ROAD_SUFFIX = "(?:" + "|".join(ROAD_SUFFIXES) + ")"
_ADMIN_SUFFIXES: dict[str, tuple[str, ...]] = {
    "county": ("区", "县", "市"),
    "township": ("街道", "镇", "乡"),
    # Longest first, so that 村委会 is stripped before 村.
    "village": ("村民委员会", "居民委员会", "村委会", "居委会", "社区", "村"),
}

# --- normalisation -------------------------------------------------------------------------------

_WHITESPACE_RE = re.compile(r"\s+")
_DASH_RE = re.compile(r"[‐‑‒–—―~]")
_PUNCT_RE = re.compile(r"[,，。.、;；:：!！?？'\"“”‘’()（）\[\]【】{}《》<>〈〉·/\\|_*]")
_PREFIX_RE = re.compile(
    r"^(?:中国|中华人民共和国)?(?:浙江省|浙江(?!路|街|大道))?"
    # 温州大道, 温州路 … are roads, not the city: keep the bare 温州 in front of a road suffix.
    r"(?:温州市|温州(?!大道|大学|路|街|巷))?"
)
_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUMERAL = "[零〇一二两三四五六七八九十百千]+"
# Chinese numerals are converted only right before these markers, so that names such as
# 五马街道, 七都 or 十八家社区 keep their characters.
_CN_NUMBER_RE = re.compile(rf"({_CN_NUMERAL})(?=号|幢|栋|座|单元|室|房|楼|层|弄|巷)")
# 123号之一, 123之1号: a sub-numbered door, rewritten at once so that a following 3幢 stays apart.
_SUB_NUMBER_RE = re.compile(rf"(\d+)号?之({_CN_NUMERAL}|\d+)号?")
_ORDINAL_RE = re.compile(r"第(?=\d+(?:号|幢|单元|室|楼|层))")
_MARKER_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<=[0-9A-Z])号楼"), "幢"),
    (re.compile(r"(?<=[0-9A-Z])#楼?"), "幢"),
    (re.compile(r"栋"), "幢"),
    (re.compile(r"(?<=[0-9A-Z])座"), "幢"),
    (re.compile(r"(?<=\d)房间?"), "室"),
)
# A number in door position: right after a road, village or other name, not after 号/幢/单元/室.
_DOOR_POSITION = r"(?<![\d号幢元室-])"
_DASH_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_DOOR_POSITION + r"(\d+)-(\d+)(?=幢)"), r"\1号\2"),
    (re.compile(_DOOR_POSITION + r"(\d+)-(\d+)$"), r"\1号\2幢"),
    (re.compile(r"号(\d+)-(\d+)-(\d+)$"), r"号\1幢\2单元\3室"),
    (re.compile(r"号(\d+)-(\d+)$"), r"号\1幢\2室"),
    (re.compile(r"(?<!\d)-|-(?!\d)"), ""),
)


def normalize_address_text(text: str) -> str:
    """Return address text in one canonical spelling, ready to parse or compare.

    Steps, in order:
    - NFKC (full-width digits, letters and punctuation become half-width), letters upper-cased;
    - whitespace and punctuation removed; every dash-like mark (—, –, ~) becomes ``-``;
    - a leading 中国 / 浙江(省) / 温州(市) is dropped (not the 温州 of 温州大道);
    - Chinese numerals right before 号/幢/栋/座/单元/室/房/楼/层/弄/巷 or after 之 become digits
      (三幢 → 3幢, 十二号 → 12号, 一百零三号 → 103号, 三零二室 → 302室); 第 before them is dropped;
    - 栋, N号楼, N座, N# become 幢; N房 and N房间 become 室;
    - sub-numbers: ``123号之一`` and ``123之1号`` become ``123-1号`` (one door, numbered 123-1);
    - a dash between numbers, read by its position (as address registers commonly write it):
      ``123-3幢`` and a trailing ``123-3`` after a road mean door 123, building 3 (``123号3幢``);
      ``123-5号`` stays a sub-numbered door; after 号, ``3-2-302`` means 3幢2单元302室 and
      ``5-302`` means 5幢302室; any other dash that is not between two digits is removed.
    """
    s = unicodedata.normalize("NFKC", text).upper()
    s = _WHITESPACE_RE.sub("", s)
    s = _PUNCT_RE.sub("", _DASH_RE.sub("-", s))
    s = _PREFIX_RE.sub("", s, count=1)
    s = _convert_chinese_numbers(s)
    for pattern, replacement in (*_MARKER_RULES, *_DASH_RULES):
        s = pattern.sub(replacement, s)
    return s


def _convert_chinese_numbers(s: str) -> str:
    """Replace Chinese numerals in number positions with Arabic digits."""
    s = _CN_NUMBER_RE.sub(_numeral_to_digits, s)
    s = _SUB_NUMBER_RE.sub(_sub_number_to_dash, s)
    return _ORDINAL_RE.sub("", s)


def _numeral_to_digits(match: re.Match[str]) -> str:
    """Rewrite a matched numeral (group 1) in digits, or leave the match if malformed."""
    numeral = match.group(1)
    value = chinese_numeral_to_int(numeral)
    return match.group(0) if value is None else match.group(0).replace(numeral, str(value))


def _sub_number_to_dash(match: re.Match[str]) -> str:
    """Rewrite 123号之一 / 123之1号 as 123-1号."""
    door, sub = match.group(1), match.group(2)
    value = sub if sub.isdigit() else chinese_numeral_to_int(sub)
    return match.group(0) if value is None else f"{door}-{value}号"


def chinese_numeral_to_int(numeral: str) -> int | None:
    """Return the value of a Chinese numeral (十二, 一百零三, 三零二), or None if malformed."""
    if not numeral:
        return None
    if all(c in _CN_DIGITS for c in numeral):
        # Digit by digit, as room numbers are read aloud: 三零二 = 302.
        return int("".join(str(_CN_DIGITS[c]) for c in numeral))
    total, digit, last_unit = 0, None, 10_000
    for char in numeral:
        if char in _CN_DIGITS:
            if digit not in (None, 0):
                return None  # two digits in a row inside a positional numeral
            digit = _CN_DIGITS[char]
        elif char in _CN_UNITS:
            unit = _CN_UNITS[char]
            if unit >= last_unit:
                return None
            # A bare 十 at the start means 一十 (十二 = 12).
            total += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        else:
            return None
    return total + (digit or 0)


# --- gazetteer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GazetteerEntry:
    """An administrative division (行政区划) known to the gazetteer, by statistical code."""

    code: str
    name: str
    level: str
    parent_code: str | None

    @property
    def address_name(self) -> str:
        """Return the name as written in addresses: 油岙村委会 → 油岙村, X居委会 → X社区."""
        for suffix, written in (
            ("村民委员会", "村"),
            ("村委会", "村"),
            ("居民委员会", "社区"),
            ("居委会", "社区"),
        ):
            if self.name.endswith(suffix) and len(self.name) > len(suffix):
                return self.name[: -len(suffix)] + written
        return self.name


@dataclass(frozen=True)
class _AdminMatch:
    """A division name found in address text."""

    level: str
    name: str
    code: str | None
    end: int


class Gazetteer:
    """Known divisions (and optionally roads) that let the parser read abbreviated names.

    Each division is recognised by its full name, its address name (油岙村) and its stem without
    the level suffix (鹿城 for 鹿城区, 五马 for 五马街道, 油岙 for 油岙村委会) when the stem has at
    least two characters. Roads are optional: ``roads`` maps a township code to its road names.
    """

    def __init__(
        self,
        divisions: Iterable[tuple[str, str, str, str | None]],
        roads: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._entries: dict[str, GazetteerEntry] = {}
        # level → alias → {code: (entry, abbreviated)}
        self._aliases: dict[str, dict[str, dict[str, tuple[GazetteerEntry, bool]]]] = {
            level: {} for level in ADMIN_LEVELS
        }
        self._road_townships: dict[str, set[str]] = {}
        for code, name, level, parent_code in divisions:
            if level in ADMIN_LEVELS:
                self._add_division(GazetteerEntry(code, name, level, parent_code or None))
        for township_code, names in (roads or {}).items():
            for road in names:
                self._road_townships.setdefault(normalize_address_text(road), set()).add(
                    township_code
                )
        aliases = [a for level in self._aliases.values() for a in level]
        self._max_alias = max((len(a) for a in aliases), default=0)
        self._max_road = max((len(r) for r in self._road_townships), default=0)

    def _add_division(self, entry: GazetteerEntry) -> None:
        """Index a division under its full name, its address name and its stem."""
        self._entries[entry.code] = entry
        index = self._aliases[entry.level]
        for alias in {entry.name, entry.address_name}:
            index.setdefault(alias, {})[entry.code] = (entry, False)
        stem = admin_stem(entry.name, entry.level)
        if len(stem) >= 2 and stem != entry.name:
            index.setdefault(stem, {}).setdefault(entry.code, (entry, True))

    def get(self, code: str | None) -> GazetteerEntry | None:
        """Return the division with this code, or None."""
        return None if code is None else self._entries.get(code)

    def is_within(self, code: str, ancestor_code: str) -> bool:
        """Return whether division ``code`` is ``ancestor_code`` or lies inside it."""
        seen: set[str] = set()
        current = self._entries.get(code)
        while current is not None and current.code not in seen:
            if current.code == ancestor_code:
                return True
            seen.add(current.code)
            current = self._entries.get(current.parent_code or "")
        return False

    def road_townships(self, road: str) -> set[str]:
        """Return the codes of the townships known to have a road of this name."""
        return set(self._road_townships.get(road, ()))

    def match_road(self, text: str, start: int, township_code: str | None) -> str | None:
        """Return the longest known road name at ``start`` (within the township, if known)."""
        for length in range(min(self._max_road, len(text) - start), 1, -1):
            townships = self._road_townships.get(text[start : start + length])
            if townships and (township_code is None or township_code in townships):
                return text[start : start + length]
        return None

    def match_admin(
        self, text: str, start: int, level: str, within: str | None
    ) -> _AdminMatch | None:
        """Return the longest name of ``level`` at ``start``, inside ``within`` if given."""
        for length in range(min(self._max_alias, len(text) - start), 1, -1):
            alias = text[start : start + length]
            hits = [
                (entry, abbreviated)
                for entry, abbreviated in self._aliases[level].get(alias, {}).values()
                if within is None or self.is_within(entry.code, within)
            ]
            # A bare village stem (油岙) is too common a word to trust outside a county/township.
            if level == "village" and within is None:
                hits = [hit for hit in hits if not hit[1]]
            abbreviated = any(a for _, a in hits)
            if hits and not _eats_road_name(text, start + length, abbreviated):
                return _resolve_hits(level, alias, [entry for entry, _ in hits], start + length)
        return None


def _resolve_hits(level: str, alias: str, hits: list[GazetteerEntry], end: int) -> _AdminMatch:
    """Turn the divisions an alias names into one match; ambiguous names get no code."""
    if len(hits) == 1:
        return _AdminMatch(level, hits[0].address_name, hits[0].code, end)
    names = {entry.address_name for entry in hits}
    return _AdminMatch(level, names.pop() if len(names) == 1 else alias, None, end)


def _eats_road_name(text: str, end: int, abbreviated: bool) -> bool:
    """Return whether a name ending at ``end`` is really the start of a road name.

    鹿城路, 五马街 and 瓯海大道 are roads although 鹿城, 五马 and 瓯海 are division stems; an
    abbreviated match followed by one character and a road suffix (人民|东路) ate the road too.
    """
    pattern = rf"[^\d]?{_ROAD_SUFFIX}" if abbreviated else _ROAD_SUFFIX
    return re.match(pattern, text[end:]) is not None


def admin_stem(name: str, level: str) -> str:
    """Return a division name without its level suffix (鹿城区 → 鹿城, 油岙村委会 → 油岙)."""
    for suffix in _ADMIN_SUFFIXES.get(level, ()):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedAddress:
    """Components of a standard address (标准地址) read from text; any may be missing.

    Division names are the gazetteer's (鹿城区, not 鹿城; villages as written in addresses,
    油岙村) when it recognised them, with their codes; ``rest`` holds the text left unparsed.
    """

    county: str | None = None
    township: str | None = None
    village: str | None = None
    road: str | None = None
    door_number: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    rest: str = ""
    county_code: str | None = None
    township_code: str | None = None
    village_code: str | None = None


_COMPONENTS: tuple[str, ...] = (
    "county",
    "township",
    "village",
    "road",
    "door_number",
    "building",
    "unit",
    "room",
)
# Without a gazetteer, or for names it lacks (a village missing from the list), divisions are
# recognised by their suffix. 小区/园区/景区 … end in 区 but are places, not counties.
_ADMIN_FALLBACK_RE: dict[str, re.Pattern[str]] = {
    "county": re.compile(rf"[^\d]{{2,4}}?(?<![小社园景校厂])[区县市](?!{_ROAD_SUFFIX}|镇|乡)"),
    "township": re.compile(rf"[^\d]{{2,6}}?(?:街道|镇|乡)(?!{_ROAD_SUFFIX})"),
    "village": re.compile(rf"[^\d]{{2,8}}?(?:社区|村)(?!{_ROAD_SUFFIX})"),
}
_ROAD_RE = re.compile(rf"[^\d]+?{_ROAD_SUFFIX}(?=\d|$)")
# A name without a road suffix directly followed by a door number (县前头12号).
_UNSUFFIXED_ROAD_RE = re.compile(r"[^\d]{2,12}?(?=\d+(?:-\d+)?号)")
_LANE_RE = re.compile(r"\d+[弄巷](?=\d)")
_DOOR_RE = re.compile(r"(\d+(?:-\d+)?)号")
_BARE_DOOR_RE = re.compile(r"(\d+(?:-\d+)?)$")
_BUILDING_RE = re.compile(r"([0-9A-Z]{1,4})幢")
_UNIT_RE = re.compile(r"(\d{1,3})单元")
_ROOM_RE = re.compile(r"([A-Z]?\d{1,5})室")
_BARE_ROOM_RE = re.compile(r"(\d{1,5})$")


def parse_address(text: str, *, gazetteer: Gazetteer | None = None) -> ParsedAddress:
    """Parse free address text into standard-address components; never raises.

    Divisions are read from the start (longest match, each inside the one found before it),
    then road (with a lane: 人民路98弄), door number, building, unit and room. A missing
    township or county is filled in from a uniquely known village, township or road. Text with
    no recognisable component gives an empty ParsedAddress whose ``rest`` is the input.
    """
    original = text if isinstance(text, str) else ("" if text is None else str(text))
    normalized = normalize_address_text(original)
    if not normalized or len(normalized) > MAX_ADDRESS_LENGTH:
        return ParsedAddress(rest=original)
    found, pos = _parse_admin(normalized, gazetteer)
    tail, rest = _parse_tail(normalized, pos, gazetteer, found.get("township_code"))
    parsed = ParsedAddress(**found, **tail, rest=rest)
    if gazetteer is not None:
        parsed = _infer_divisions(parsed, gazetteer)
    if all(getattr(parsed, name) is None for name in _COMPONENTS):
        return ParsedAddress(rest=original)
    return parsed


def _parse_admin(text: str, gazetteer: Gazetteer | None) -> tuple[dict[str, str | None], int]:
    """Read county, township and village names from the start of the text."""
    found: dict[str, str | None] = {}
    pos, next_level = 0, 0
    while next_level < len(ADMIN_LEVELS):
        within = found.get("village_code") or found.get("township_code") or found.get("county_code")
        levels = ADMIN_LEVELS[next_level:]
        match = _gazetteer_admin_match(text, pos, levels, within, gazetteer)
        match = match or _fallback_admin_match(text, pos, levels)
        if match is None:
            break
        found[match.level], found[f"{match.level}_code"] = match.name, match.code
        pos, next_level = match.end, ADMIN_LEVELS.index(match.level) + 1
    return found, pos


def _gazetteer_admin_match(
    text: str, pos: int, levels: tuple[str, ...], within: str | None, gazetteer: Gazetteer | None
) -> _AdminMatch | None:
    """Return the longest gazetteer match at ``pos`` over the allowed levels (higher wins ties)."""
    if gazetteer is None:
        return None
    matches = [m for level in levels if (m := gazetteer.match_admin(text, pos, level, within))]
    # max() keeps the first of equal lengths, i.e. the higher level: 藤桥 is 藤桥镇 before 藤桥社区.
    return max(matches, key=lambda m: m.end, default=None)


def _fallback_admin_match(text: str, pos: int, levels: tuple[str, ...]) -> _AdminMatch | None:
    """Return a division recognised by its suffix alone, trying higher levels first."""
    for level in levels:
        match = _ADMIN_FALLBACK_RE[level].match(text, pos)
        if match:
            return _AdminMatch(level, match.group(0), None, match.end())
    return None


def _parse_tail(
    text: str, pos: int, gazetteer: Gazetteer | None, township_code: str | None
) -> tuple[dict[str, str | None], str]:
    """Read road, door number, building, unit and room from ``pos``; return them and the rest."""
    tail: dict[str, str | None] = {}
    tail["road"], pos = _read_road(text, pos, gazetteer, township_code)
    tail["door_number"], pos = _read(_DOOR_RE, text, pos)
    if tail["door_number"] is None and tail["road"] is not None:
        tail["door_number"], pos = _read(_BARE_DOOR_RE, text, pos)
    tail["building"], pos = _read(_BUILDING_RE, text, pos)
    tail["unit"], pos = _read(_UNIT_RE, text, pos)
    tail["room"], pos = _read(_ROOM_RE, text, pos)
    if tail["room"] is None and any(tail[k] for k in ("door_number", "building", "unit")):
        # A bare trailing number after a door, building or unit is the room: 2单元302.
        tail["room"], pos = _read(_BARE_ROOM_RE, text, pos)
    return tail, text[pos:]


def _read(pattern: re.Pattern[str], text: str, pos: int) -> tuple[str | None, int]:
    """Match ``pattern`` at ``pos``; return its first group and the new position."""
    match = pattern.match(text, pos)
    return (match.group(1), match.end()) if match else (None, pos)


def _read_road(
    text: str, pos: int, gazetteer: Gazetteer | None, township_code: str | None
) -> tuple[str | None, int]:
    """Read a road name (known roads first, then by suffix), with a lane number if any."""
    road = gazetteer.match_road(text, pos, township_code) if gazetteer else None
    end = pos + len(road) if road else pos
    if road is None:
        match = _ROAD_RE.match(text, pos) or _UNSUFFIXED_ROAD_RE.match(text, pos)
        if match is None:
            return None, pos
        road, end = match.group(0), match.end()
    # 人民路98弄7号: the lane belongs to the road name, the door number follows it.
    lane = _LANE_RE.match(text, end)
    if lane:
        road, end = road + lane.group(0), lane.end()
    return road, end


def _infer_divisions(parsed: ParsedAddress, gazetteer: Gazetteer) -> ParsedAddress:
    """Fill missing township and county from a uniquely known road, village or township."""
    if parsed.township is None and parsed.road is not None:
        townships = [
            code
            for code in gazetteer.road_townships(parsed.road)
            if parsed.county_code is None or gazetteer.is_within(code, parsed.county_code)
        ]
        if len(townships) == 1 and (parsed.county is None or parsed.county_code is not None):
            parsed = _fill_level(parsed, gazetteer.get(townships[0]))
    deepest = parsed.village_code or parsed.township_code
    entry = gazetteer.get(deepest)
    while entry is not None:
        entry = gazetteer.get(entry.parent_code)
        if entry is not None and entry.level in ADMIN_LEVELS:
            parsed = _fill_level(parsed, entry)
    return parsed


def _fill_level(parsed: ParsedAddress, entry: GazetteerEntry | None) -> ParsedAddress:
    """Set a division's name and code where the text omitted that level or named it the same."""
    if entry is None or getattr(parsed, f"{entry.level}_code") is not None:
        return parsed
    named = getattr(parsed, entry.level)
    if named is not None and admin_stem(named, entry.level) != admin_stem(entry.name, entry.level):
        return parsed  # the text named another division at this level: keep what it said
    return replace(parsed, **{entry.level: entry.address_name, f"{entry.level}_code": entry.code})


# --- matching ------------------------------------------------------------------------------------

# Weights of the components in score_match. Road and door number locate the address (0.70
# together); building, unit and room refine it (0.20); division names confirm it (0.10). The
# score is normalised over the components the query has, so extra detail in a candidate costs
# nothing.
COMPONENT_WEIGHTS: dict[str, float] = {
    "road": 0.40,
    "door_number": 0.30,
    "building": 0.10,
    "unit": 0.05,
    "room": 0.05,
    "county": 0.03,
    "township": 0.04,
    "village": 0.03,
}
# Credit for a component the query has and the candidate lacks (a door-level standard address
# for a query naming a room): it contains the place, less precisely.
MISSING_CREDIT = 0.5
# A division that contradicts the query multiplies the score: the same road name and door number
# in another county is another place. Villages weigh least: a road crosses several communities
# and tickets often name the neighbouring one.
ADMIN_CONFLICT_FACTORS: dict[str, float] = {"county": 0.5, "township": 0.7, "village": 0.85}
_CHAIN: tuple[str, ...] = ("door_number", "building", "unit", "room")


def road_similarity(a: str, b: str) -> float:
    """Return the Dice coefficient of the two names' character bigrams, padded at both ends.

    Padding (^解, 街$) lets a one-character typo in a three-character name keep half its
    bigrams (解放街 / 解方街 = 0.5) instead of none.
    """
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    grams_a, grams_b = _bigrams(a), _bigrams(b)
    common = sum(min(grams_a.count(g), grams_b.count(g)) for g in set(grams_a))
    return 2 * common / (len(grams_a) + len(grams_b))


def _bigrams(name: str) -> list[str]:
    """Return the character bigrams of ``name`` with start and end markers."""
    padded = f"^{name}$"
    return [padded[i : i + 2] for i in range(len(padded) - 1)]


def _road_agreement(a: str, b: str) -> float:
    """Map road similarity to credit: ≤0.25 (only the suffix shared) → 0, 0.5 → 0.6, 1 → 1."""
    sim = road_similarity(a, b)
    if sim <= 0.25:
        return 0.0
    if sim <= 0.5:
        return 0.6 * (sim - 0.25) / 0.25
    return 0.6 + 0.4 * (sim - 0.5) / 0.5


def _door_agreement(a: str, b: str) -> float:
    """Credit two door numbers: equal 1; 123 vs 123-1 0.6; nearby on the same side up to 0.3."""
    if a == b:
        return 1.0
    base_a, base_b = a.split("-")[0], b.split("-")[0]
    if base_a == base_b:
        return 0.6
    if not (base_a.isdigit() and base_b.isdigit()):
        return 0.0
    # Chinese door numbers run odd on one side of the road, even on the other.
    distance = abs(int(base_a) - int(base_b))
    credit = 0.3 * max(0.0, 1 - distance / 20)
    return credit if distance % 2 == 0 else credit / 2


def _admin_agreement(query: ParsedAddress, candidate: ParsedAddress, level: str) -> float:
    """Credit a division: same code or same name stem 1, different 0."""
    q_code, c_code = getattr(query, f"{level}_code"), getattr(candidate, f"{level}_code")
    if q_code and c_code:
        return 1.0 if q_code == c_code else 0.0
    q_name, c_name = getattr(query, level), getattr(candidate, level)
    return 1.0 if admin_stem(q_name, level) == admin_stem(c_name, level) else 0.0


def _agreement(query: ParsedAddress, candidate: ParsedAddress, component: str) -> float:
    """Credit one component the query has, before chaining."""
    q_value, c_value = getattr(query, component), getattr(candidate, component)
    if c_value is None:
        return MISSING_CREDIT
    if component in ADMIN_LEVELS:
        return _admin_agreement(query, candidate, component)
    if component == "road":
        return _road_agreement(q_value, c_value)
    if component == "door_number":
        return _door_agreement(q_value, c_value)
    return 1.0 if q_value == c_value else 0.0


def score_match(query: ParsedAddress, candidate: ParsedAddress) -> float:
    """Return how well a candidate standard address matches a parsed query, in [0, 1].

    Each component the query has earns its agreement times its weight (COMPONENT_WEIGHTS).
    Credit is chained down the hierarchy: the door number counts only as much as the road (or,
    without a road, the village) agrees, the building only as much as the door, and so on, so a
    matching 3幢 at another door earns little. Divisions that contradict the query multiply the
    result by ADMIN_CONFLICT_FACTORS.
    """
    credits = _chained_credits(query, candidate)
    if not credits:
        return 0.0
    total = sum(COMPONENT_WEIGHTS[c] for c in credits)
    score = sum(COMPONENT_WEIGHTS[c] * credit for c, credit in credits.items()) / total
    for level in ADMIN_LEVELS:
        if getattr(query, level) and getattr(candidate, level):
            if _admin_agreement(query, candidate, level) == 0.0:
                score *= ADMIN_CONFLICT_FACTORS[level]
    return min(1.0, max(0.0, score))


def _chained_credits(query: ParsedAddress, candidate: ParsedAddress) -> dict[str, float]:
    """Return each query component's credit, lower components gated by the ones above."""
    raw = {c: _agreement(query, candidate, c) for c in _COMPONENTS if getattr(query, c)}
    credits = {c: raw[c] for c in (*ADMIN_LEVELS, "road") if c in raw}
    gate = raw.get("road", raw.get("village", raw.get("township", 1.0)))
    for component in _CHAIN:
        if component in raw:
            credits[component] = raw[component] * gate
            gate = credits[component]
    return credits


# --- keys and formatting -------------------------------------------------------------------------


def candidate_keys(parsed: ParsedAddress) -> dict[str, str | int | None]:
    """Return the values a database lookup fetches candidates by.

    ``road`` (matched by trigram/bigram similarity), ``door_number`` and its integer
    ``door_base`` (123 for 123-1, to fetch neighbouring doors), the division codes when known
    (to narrow the search), and ``village`` for rural addresses that have no road.
    """
    base = (parsed.door_number or "").split("-")[0]
    return {
        "road": parsed.road,
        "door_number": parsed.door_number,
        "door_base": int(base) if base.isdigit() else None,
        "county_code": parsed.county_code,
        "township_code": parsed.township_code,
        "village_code": parsed.village_code,
        "village": parsed.village,
    }


def format_address(parsed: ParsedAddress) -> str:
    """Return the canonical full text: county, township, village, road, 号, 幢, 单元, 室."""
    township = parsed.township
    if township and township.endswith(VIRTUAL_TOWNSHIP_SUFFIX):
        township = None  # 龙港's communities hang off a statistical quasi-township nobody writes
    parts = [parsed.county, township, parsed.village, parsed.road]
    suffixed = (
        (parsed.door_number, "号"),
        (parsed.building, "幢"),
        (parsed.unit, "单元"),
        (parsed.room, "室"),
    )
    parts.extend(f"{value}{suffix}" for value, suffix in suffixed if value)
    return "".join(part for part in parts if part)
