"""Identity documents, enterprise codes and phones: validate, normalise, mask, synthesise.

Pure functions, no I/O. Every rejection is a :class:`DocumentInvalid` whatever the input
(``None``, an ``int`` from a spreadsheet, emoji, full-width digits …), so callers need to
catch exactly one exception. Error messages never contain the number itself: they end up
in logs, and a log line must not become a copy of the population register.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric, uscc
from stdnum.util import isdigits

if TYPE_CHECKING:
    import numpy as np

    Rng = random.Random | np.random.Generator

# Births and "today" are governance-day facts, so they are judged in China's time zone
# even on a server that runs in UTC.
_TZ = ZoneInfo("Asia/Shanghai")
_OLDEST_BIRTH_YEAR = 1880

# Mainland province-level codes (GB/T 2260). A resident ID starts with one of them; 71/81/82
# are not used on resident ID cards (HMT residents get a residence permit, below).
_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65".split()
)
# 港澳台居民居住证: the address code is fixed per origin (Hong Kong, Macao, Taiwan).
_HMT_PREFIXES = frozenset({"810000", "820000", "830000"})
_FOREIGN_PREFIX = "9"

# Full-width ASCII (U+FF01…U+FF5E) and the ideographic space, as typed by Chinese IMEs.
_FULL_TO_HALF = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_OLD_FOREIGN_PERMIT = re.compile(r"[A-Z]{3}[0-9]{12}", re.ASCII)
_PASSPORT = re.compile(r"[A-Z0-9]{5,17}", re.ASCII)
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)
# 010 and 02x are the only three-digit area codes; every other area code has four digits,
# which is what makes an unseparated landline number unambiguous.
_LANDLINE = re.compile(r"(0(?:10|2[0-9]|[3-9][0-9]{2}))([2-9][0-9]{6,7})", re.ASCII)

# GB 11714 organization code (digits 9–17 of a USCC): weights and the characters a USCC may
# hold there (GB 32100 leaves out I, O, Z, S and V).
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_USCC_BODY_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


class DocumentInvalid(ValueError):  # noqa: N818 - the domain name reads better than *Error
    """A document number, enterprise code or phone that fails validation."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class DocumentType(StrEnum):
    """证件类型 of a person.

    resident_id 居民身份证, legacy_id 15位身份证 (first generation), hmt_residence_permit
    港澳台居民居住证, foreign_permanent_residence 外国人永久居留身份证, passport 护照.
    """

    RESIDENT_ID = "resident_id"
    LEGACY_ID = "legacy_id"
    HMT_RESIDENCE_PERMIT = "hmt_residence_permit"
    FOREIGN_PERMANENT_RESIDENCE = "foreign_permanent_residence"
    PASSPORT = "passport"


class Gender(StrEnum):
    """性别 as encoded in an ID number: male 男 (odd sequence), female 女 (even)."""

    MALE = "male"
    FEMALE = "female"


# (Chinese, English) labels used to build messages.
_LABELS: dict[DocumentType, tuple[str, str]] = {
    DocumentType.RESIDENT_ID: ("身份证号", "ID number"),
    DocumentType.LEGACY_ID: ("15位身份证号", "legacy ID number"),
    DocumentType.HMT_RESIDENCE_PERMIT: ("港澳台居民居住证号", "HMT residence permit number"),
    DocumentType.FOREIGN_PERMANENT_RESIDENCE: (
        "外国人永久居留身份证号",
        "foreign permanent residence ID number",
    ),
    DocumentType.PASSPORT: ("护照号", "passport number"),
}
_USCC_LABEL = ("统一社会信用代码", "unified social credit code")
_FIELD_NUMBER = "document_number"


def _reason(label: tuple[str, str], zh: str, en: str) -> str:
    """Build a bilingual reason: '身份证号校验位错误 / ID number checksum does not match'."""
    return f"{label[0]}{zh} / {label[1]} {en}"


@contextmanager
def _stdnum_errors_as_invalid(field: str, label: tuple[str, str]) -> Iterator[None]:
    """Turn python-stdnum's exceptions into one DocumentInvalid with a readable reason."""
    try:
        yield
    except stdnum_errors.InvalidLength:
        # InvalidLength subclasses InvalidFormat, so it must be caught first.
        raise DocumentInvalid(field, _reason(label, "长度不对", "has the wrong length")) from None
    except stdnum_errors.InvalidFormat:
        raise DocumentInvalid(
            field, _reason(label, "含有不允许的字符", "contains characters that are not allowed")
        ) from None
    except stdnum_errors.InvalidChecksum:
        raise DocumentInvalid(
            field, _reason(label, "校验位错误", "checksum does not match")
        ) from None
    except stdnum_errors.InvalidComponent:
        raise DocumentInvalid(
            field, _reason(label, "中的出生日期无效", "contains an invalid birth date")
        ) from None
    except stdnum_errors.ValidationError:
        raise DocumentInvalid(field, _reason(label, "无效", "is invalid")) from None


def _clean(value: object, *, field: str, label: tuple[str, str], drop: str = "-") -> str:
    """Return the value as upper-case half-width text without whitespace or separators."""
    if not isinstance(value, str):
        # Spreadsheets hand over ints: they have lost leading zeros and the X check digit.
        raise DocumentInvalid(field, _reason(label, "必须是文本", "must be text"))
    text = "".join(value.translate(_FULL_TO_HALF).split())
    text = text.translate({ord(c): None for c in drop}).upper()
    if not text:
        raise DocumentInvalid(field, _reason(label, "不能为空", "must not be empty"))
    return text


def _today() -> date:
    """Return today's date in Asia/Shanghai."""
    return datetime.now(_TZ).date()


def _check_birth_date(birth: date, label: tuple[str, str]) -> date:
    """Reject birth dates in the future or before anyone alive was born."""
    if birth > _today() or birth.year < _OLDEST_BIRTH_YEAR:
        raise DocumentInvalid(
            _FIELD_NUMBER, _reason(label, "中的出生日期不合理", "contains an impossible birth date")
        )
    return birth


def _check_mod11_2(number: str, label: tuple[str, str]) -> str:
    """Check an 18-character GB 11643 number: length, digits, check digit and birth date."""
    with _stdnum_errors_as_invalid(_FIELD_NUMBER, label):
        if len(number) != 18:
            raise stdnum_errors.InvalidLength()
        if not isdigits(number[:-1]):
            raise stdnum_errors.InvalidFormat()
        if number[-1] != ric.calc_check_digit(number):
            raise stdnum_errors.InvalidChecksum()
        birth = ric.get_birth_date(number)
    _check_birth_date(birth, label)
    return number


def _validate_resident_id(number: str) -> str:
    """Validate a mainland resident ID (居民身份证, GB 11643)."""
    label = _LABELS[DocumentType.RESIDENT_ID]
    # stdnum's ric.validate() also demands that the county existed in the birth year, which
    # rejects real people: IDs were first issued in 1985, so a Lucheng (鹿城区, coded 1984)
    # resident born in 1950 carries 330302. Only the province is checked here.
    _check_mod11_2(number, label)
    if number[:6] in _HMT_PREFIXES:
        raise DocumentInvalid(
            _FIELD_NUMBER,
            _reason(label, "是港澳台居民居住证号码", "is an HMT residence permit number"),
        )
    if number.startswith(_FOREIGN_PREFIX):
        raise DocumentInvalid(
            _FIELD_NUMBER,
            _reason(label, "是外国人永久居留身份证号码", "is a foreign permanent residence ID"),
        )
    if number[:2] not in _PROVINCE_CODES:
        raise DocumentInvalid(
            _FIELD_NUMBER, _reason(label, "地址码无效", "has an unknown region code")
        )
    return number


def _validate_legacy_id(number: str) -> str:
    """Validate a first-generation 15-digit ID (no check digit, two-digit year 19YY)."""
    label = _LABELS[DocumentType.LEGACY_ID]
    with _stdnum_errors_as_invalid(_FIELD_NUMBER, label):
        if len(number) != 15:
            raise stdnum_errors.InvalidLength()
        if not isdigits(number):
            raise stdnum_errors.InvalidFormat()
        # The legacy number omits the century; every holder was born in the 1900s.
        birth = ric.get_birth_date(number[:6] + "19" + number[6:])
    _check_birth_date(birth, label)
    if number[:2] not in _PROVINCE_CODES:
        raise DocumentInvalid(
            _FIELD_NUMBER, _reason(label, "地址码无效", "has an unknown region code")
        )
    return number


def _validate_hmt_permit(number: str) -> str:
    """Validate a 港澳台居民居住证 number: GB 11643 with an 810000/820000/830000 prefix."""
    label = _LABELS[DocumentType.HMT_RESIDENCE_PERMIT]
    _check_mod11_2(number, label)
    if number[:6] not in _HMT_PREFIXES:
        raise DocumentInvalid(
            _FIELD_NUMBER,
            _reason(
                label, "应以810000、820000或830000开头", "must start with 810000/820000/830000"
            ),
        )
    return number


def _validate_foreign_permit(number: str) -> str:
    """Validate a 外国人永久居留身份证 number, 2023 (18 digits) or 2017 (15 characters) format."""
    label = _LABELS[DocumentType.FOREIGN_PERMANENT_RESIDENCE]
    if len(number) == 15:
        # The 2017 card: 3-letter nationality + 12 digits. Its check rule is not published,
        # so only the shape is checked.
        if not _OLD_FOREIGN_PERMIT.fullmatch(number):
            raise DocumentInvalid(
                _FIELD_NUMBER,
                _reason(label, "应为3位字母加12位数字", "must be 3 letters and 12 digits"),
            )
        return number
    # The 2023 card: 9 + issuing province (2) + nationality (3) + birth date (8) + sequence (3)
    # + MOD 11-2 check digit, the same scheme as the resident ID.
    _check_mod11_2(number, label)
    if not number.startswith(_FOREIGN_PREFIX):
        raise DocumentInvalid(_FIELD_NUMBER, _reason(label, "应以9开头", "must start with 9"))
    return number


def _validate_passport(number: str) -> str:
    """Validate a passport number loosely: 5–17 Latin letters or digits."""
    if not _PASSPORT.fullmatch(number):
        raise DocumentInvalid(
            _FIELD_NUMBER,
            _reason(
                _LABELS[DocumentType.PASSPORT],
                "应为5至17位字母或数字",
                "must be 5 to 17 letters or digits",
            ),
        )
    return number


_VALIDATORS = {
    DocumentType.RESIDENT_ID: _validate_resident_id,
    DocumentType.LEGACY_ID: _validate_legacy_id,
    DocumentType.HMT_RESIDENCE_PERMIT: _validate_hmt_permit,
    DocumentType.FOREIGN_PERMANENT_RESIDENCE: _validate_foreign_permit,
    DocumentType.PASSPORT: _validate_passport,
}


def _document_type(doc_type: object) -> DocumentType:
    """Return doc_type as a DocumentType or raise DocumentInvalid."""
    if isinstance(doc_type, str) and doc_type in DocumentType.__members__.values():
        return DocumentType(doc_type)
    raise DocumentInvalid("document_type", "证件类型无效 / unknown document type")


def normalize_document(doc_type: DocumentType | str, number: object) -> str:
    """Validate a document number and return its canonical form (half-width, upper-case X)."""
    kind = _document_type(doc_type)
    text = _clean(number, field=_FIELD_NUMBER, label=_LABELS[kind])
    return _VALIDATORS[kind](text)


def _id_number(number: object) -> tuple[str, DocumentType]:
    """Validate a 15- or 18-character ID-style number and say which kind it is."""
    text = _clean(number, field=_FIELD_NUMBER, label=_LABELS[DocumentType.RESIDENT_ID])
    if len(text) == 15 and isdigits(text):
        kind = DocumentType.LEGACY_ID
    elif text.startswith(_FOREIGN_PREFIX):
        kind = DocumentType.FOREIGN_PERMANENT_RESIDENCE
    elif text[:6] in _HMT_PREFIXES:
        kind = DocumentType.HMT_RESIDENCE_PERMIT
    else:
        kind = DocumentType.RESIDENT_ID
    return _VALIDATORS[kind](text), kind


def birth_date_from_id(number: object) -> date:
    """Return the birth date encoded in a resident, legacy, HMT or 2023 foreign permit number."""
    text, kind = _id_number(number)
    if kind is DocumentType.LEGACY_ID:
        return date(1900 + int(text[6:8]), int(text[8:10]), int(text[10:12]))
    return date(int(text[6:10]), int(text[10:12]), int(text[12:14]))


def gender_from_id(number: object) -> Gender:
    """Return the gender encoded in the sequence number (odd male, even female)."""
    text, kind = _id_number(number)
    digit = int(text[14] if kind is DocumentType.LEGACY_ID else text[16])
    return Gender.MALE if digit % 2 else Gender.FEMALE


def region_code_from_id(number: object) -> str:
    """Return the 6-digit address code (the first 6 digits) of a resident or HMT ID."""
    text, kind = _id_number(number)
    if kind is DocumentType.FOREIGN_PERMANENT_RESIDENCE:
        raise DocumentInvalid(
            _FIELD_NUMBER, "外国人永久居留身份证号不含地址码 / a foreign permit has no region code"
        )
    return text[:6]


def upgrade_legacy_id(number: object) -> str:
    """Convert a 15-digit legacy ID to the 18-digit number (insert 19, append check digit)."""
    text = normalize_document(DocumentType.LEGACY_ID, number)
    body = text[:6] + "19" + text[6:]
    # calc_check_digit expects the number with a check position, so pad one placeholder.
    return body + ric.calc_check_digit(body + "0")


def validate_uscc(value: object) -> str:
    """Validate a 统一社会信用代码 (GB 32100 check character) and return it canonical."""
    text = _clean(value, field="uscc", label=_USCC_LABEL)
    with _stdnum_errors_as_invalid("uscc", _USCC_LABEL):
        return uscc.validate(text)


def normalize_phone(value: object) -> str:
    """Return a mainland mobile as 11 digits or a landline as 'area-local' (0577-88881234)."""
    label = ("电话号码", "phone number")
    text = _clean(value, field="phone", label=label, drop="-()（）")
    for prefix in ("+86", "0086", "86"):
        if text.startswith(prefix) and len(text) > 11:
            text = text.removeprefix(prefix)
            # International form drops the trunk 0 of an area code: +86 577 88881234.
            text = text if text.startswith("1") else "0" + text
            break
    if _MOBILE.fullmatch(text):
        return text
    landline = _LANDLINE.fullmatch(text)
    if landline:
        return f"{landline.group(1)}-{landline.group(2)}"
    raise DocumentInvalid(
        "phone", _reason(label, "格式不对", "is not a mainland mobile or landline number")
    )


def _mask_middle(text: str, keep_head: int, keep_tail: int) -> str:
    """Replace all but the first keep_head and last keep_tail characters with '*'."""
    hidden = len(text) - keep_head - keep_tail
    return text[:keep_head] + "*" * hidden + text[len(text) - keep_tail :]


def _loose_text(value: object) -> str:
    """Return the value as half-width text without whitespace, for masking only."""
    if value is None:
        return ""
    return "".join(str(value).translate(_FULL_TO_HALF).split())


def mask_id_number(value: object) -> str:
    """Mask a document number: keep 6 + 4 of 15+ characters, 2 + 2 of 8–14, hide shorter.

    The 6 + 4 rule (地址码 and the tail) is the common 脱敏 practice for ID cards; shorter
    documents such as passports keep 2 + 2 so that no more than half is ever shown.
    """
    text = _loose_text(value).upper()
    if len(text) >= 15:
        return _mask_middle(text, 6, 4)
    if len(text) >= 8:
        return _mask_middle(text, 2, 2)
    return "*" * len(text)


def mask_phone(value: object) -> str:
    """Mask a phone: 138****5678, 0577-****1234; anything unrecognised is masked fully."""
    try:
        phone = normalize_phone(value if isinstance(value, str) else _loose_text(value))
    except DocumentInvalid:
        return "*" * len(_loose_text(value))
    if "-" in phone:
        area, local = phone.split("-")
        return f"{area}-{_mask_middle(local, 0, 4)}"
    return _mask_middle(phone, 3, 4)


def mask_name(value: object) -> str:
    """Mask a name: 张三丰 → 张*丰, 张三 → 张*, a single character → *."""
    text = _loose_text(value)
    if len(text) <= 1:
        return "*" * len(text)
    if len(text) == 2:
        return text[0] + "*"
    return _mask_middle(text, 1, 1)


def _randrange(rng: Rng, low: int, high: int) -> int:
    """Draw an int in [low, high) from a random.Random or a numpy Generator."""
    if isinstance(rng, random.Random):
        return rng.randrange(low, high)
    return int(rng.integers(low, high))


def _check_region6(region6: str) -> str:
    """Check that region6 is a 6-digit code in a mainland province."""
    if not (isinstance(region6, str) and len(region6) == 6 and isdigits(region6)):
        raise ValueError("region6 must be 6 digits, e.g. '330302'")
    if region6[:2] not in _PROVINCE_CODES:
        raise ValueError("region6 must lie in a mainland province")
    return region6


def synthetic_resident_id(rng: Rng, region6: str, birth: date, gender: str) -> str:
    """Make a checksum-valid resident ID for demo data, deterministic for a seeded rng."""
    _check_region6(region6)
    sex = Gender(gender)
    half = _randrange(rng, 1, 500)
    # Odd sequence numbers are men, even ones women (GB 11643); 000 is never issued.
    sequence = 2 * half - 1 if sex is Gender.MALE else 2 * half
    body = f"{region6}{birth:%Y%m%d}{sequence:03d}"
    return normalize_document(DocumentType.RESIDENT_ID, body + ric.calc_check_digit(body + "0"))


def _org_code_check(body8: str) -> str:
    """Return the GB 11714 check character of an 8-character organization code body."""
    total = sum(int(c, 36) * w for c, w in zip(body8, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def synthetic_uscc(rng: Rng, region6: str) -> str:
    """Make a valid USCC of an enterprise (91…) registered in region6, for demo data."""
    _check_region6(region6)
    # Post-2015 codes issued by market regulators start with MA; the organization code part
    # ends in its own GB 11714 check character (a digit or X, both valid USCC characters).
    org = "MA" + "".join(
        _USCC_BODY_CHARS[_randrange(rng, 0, len(_USCC_BODY_CHARS))] for _ in range(6)
    )
    org += _org_code_check(org)
    body = "91" + region6 + org
    return validate_uscc(body + uscc.calc_check_digit(body))
