"""Document numbers, USCC, phones and masks, cross-checked against the standards' algorithms."""

import random
from datetime import date, timedelta

import numpy as np
import pytest
from stdnum.cn import ric, uscc

from geoserver.domain.documents import (
    DocumentInvalid,
    DocumentType,
    Gender,
    birth_date_from_id,
    gender_from_id,
    mask_id_number,
    mask_name,
    mask_phone,
    normalize_document,
    normalize_phone,
    region_code_from_id,
    synthetic_resident_id,
    synthetic_uscc,
    upgrade_legacy_id,
    validate_uscc,
)

# --- reference algorithms, written from the standards, independent of stdnum -------------

GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
GB11643_CHECKS = "10X98765432"
GB32100_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
GB32100_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
GB11714_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def gb11643_check(body17: str) -> str:
    return GB11643_CHECKS[
        sum(int(d) * w for d, w in zip(body17, GB11643_WEIGHTS, strict=True)) % 11
    ]


def gb32100_check(body17: str) -> str:
    total = sum(GB32100_CHARS.index(c) * w for c, w in zip(body17, GB32100_WEIGHTS, strict=True))
    return GB32100_CHARS[(31 - total % 31) % 31]


def gb11714_check(body8: str) -> str:
    value = {**{str(d): d for d in range(10)}, **{chr(65 + i): 10 + i for i in range(26)}}
    check = 11 - sum(value[c] * w for c, w in zip(body8, GB11714_WEIGHTS, strict=True)) % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def make_id(body17: str) -> str:
    return body17 + gb11643_check(body17)


def wrong_check(number: str) -> str:
    good = number[-1]
    return number[:-1] + next(c for c in "0123456789X" if c != good)


def id_ending_in_x() -> str:
    for seq in range(1, 1000):
        number = make_id(f"33030219900101{seq:03d}")
        if number.endswith("X"):
            return number
    raise AssertionError("no X check digit in 999 sequences")


VALID_ID = make_id("33030219900101123")


# --- the reference agrees with stdnum ------------------------------------------------------


def test_reference_check_digit_agrees_with_stdnum():
    rng = random.Random(11643)
    for _ in range(2000):
        body = "".join(rng.choice("0123456789") for _ in range(17))
        assert ric.calc_check_digit(body + "0") == gb11643_check(body)


def test_reference_uscc_check_agrees_with_stdnum_example():
    # The example USCC in python-stdnum's own documentation.
    assert gb32100_check("91110000600037341") == "L"
    assert validate_uscc("91110000600037341L") == "91110000600037341L"


# --- resident ID ----------------------------------------------------------------------------


def test_valid_resident_id_is_returned_unchanged():
    assert normalize_document(DocumentType.RESIDENT_ID, VALID_ID) == VALID_ID


def test_lowercase_x_check_digit_is_upper_cased():
    number = id_ending_in_x()
    assert normalize_document("resident_id", number.lower()) == number


def test_full_width_digits_and_spaces_are_normalised():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in VALID_ID)
    assert (
        normalize_document("resident_id", f"\u3000{full_width[:6]} {full_width[6:]}\t") == VALID_ID
    )


def test_full_width_lowercase_x_is_accepted():
    number = id_ending_in_x()
    typed = number[:-1] + "\uff58"  # ｘ
    assert normalize_document("resident_id", typed) == number


def test_checksum_error_names_the_field_and_both_languages():
    with pytest.raises(DocumentInvalid) as caught:
        normalize_document("resident_id", wrong_check(VALID_ID))
    assert caught.value.field == "document_number"
    assert "校验位错误" in str(caught.value)
    assert "checksum does not match" in str(caught.value)
    assert VALID_ID[:-1] not in str(caught.value)  # no personal data in log-bound messages


def test_impossible_calendar_date_is_rejected_even_with_a_good_checksum():
    with pytest.raises(DocumentInvalid, match="出生日期"):
        normalize_document("resident_id", make_id("33030219900230123"))


def test_future_birth_date_is_rejected():
    tomorrow = date.today() + timedelta(days=2)
    with pytest.raises(DocumentInvalid, match="出生日期"):
        normalize_document("resident_id", make_id(f"330302{tomorrow:%Y%m%d}123"))


def test_elder_born_before_their_county_existed_is_accepted():
    # 鹿城区 got code 330302 in 1984; stdnum's own validate() rejects its residents born in
    # 1950, who are real people holding exactly such numbers.
    number = make_id("33030219500101123")
    assert not ric.is_valid(number)
    assert normalize_document("resident_id", number) == number


def test_unknown_province_is_rejected():
    with pytest.raises(DocumentInvalid, match="地址码"):
        normalize_document("resident_id", make_id("72030219900101123"))


@pytest.mark.parametrize(
    "number",
    [make_id("81000019900101123"), make_id("93315619900101123")],
    ids=["hmt_permit", "foreign_permit"],
)
def test_other_card_numbers_are_not_resident_ids(number):
    with pytest.raises(DocumentInvalid):
        normalize_document("resident_id", number)


ODD_INPUTS = [
    None,
    0,
    int(VALID_ID[:-1]),
    3.5,
    b"330302199001011234",
    ["330302199001011234"],
    "",
    "   ",
    "\u3000",
    "😀" * 18,
    "\x00" * 18,
    "٣٣٠٣٠٢١٩٩٠٠١٠١١٢٣٤",  # Arabic-Indic digits: str.isdigit() says yes, we say no
    "33030219900101123４5",
    VALID_ID + "0",
    "33030219900101123?",
    "3303021990010112\u200b",  # zero-width space is not whitespace to str.split()
]


@pytest.mark.parametrize("doc_type", list(DocumentType))
@pytest.mark.parametrize("value", ODD_INPUTS, ids=repr)
def test_odd_input_raises_document_invalid_only(doc_type, value):
    with pytest.raises(DocumentInvalid):
        normalize_document(doc_type, value)


@pytest.mark.parametrize(
    "func",
    [birth_date_from_id, gender_from_id, region_code_from_id, validate_uscc, normalize_phone],
)
@pytest.mark.parametrize("value", ODD_INPUTS, ids=repr)
def test_odd_input_to_helpers_raises_document_invalid_only(func, value):
    with pytest.raises(DocumentInvalid):
        func(value)


def test_random_garbage_never_escapes_as_another_exception():
    rng = random.Random(2024)
    alphabet = "0123456789Xx９８ABCＡｘ-— \u3000\t😀中\x00\ud800/+()"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        for doc_type in DocumentType:
            try:
                assert isinstance(normalize_document(doc_type, value), str)
            except DocumentInvalid:
                pass
        for func in (birth_date_from_id, validate_uscc, normalize_phone):
            try:
                func(value)
            except DocumentInvalid:
                pass
        for mask in (mask_id_number, mask_phone, mask_name):
            assert isinstance(mask(value), str)


def test_unknown_document_type_is_rejected():
    with pytest.raises(DocumentInvalid) as caught:
        normalize_document("driving_licence", VALID_ID)
    assert caught.value.field == "document_type"


def test_birth_date_gender_and_region_come_from_the_number():
    assert birth_date_from_id(VALID_ID) == date(1990, 1, 1)
    assert gender_from_id(VALID_ID) is Gender.MALE  # 17th digit 3 is odd
    assert region_code_from_id(VALID_ID) == "330302"


def test_gender_follows_the_parity_of_the_17th_digit():
    assert gender_from_id(make_id("33030219900101121")) is Gender.MALE
    assert gender_from_id(make_id("33030219900101120")) is Gender.FEMALE


# --- legacy, HMT, foreign, passport ----------------------------------------------------------


def test_legacy_id_is_validated_and_decoded():
    number = "330302900101123"
    assert normalize_document("legacy_id", number) == number
    assert birth_date_from_id(number) == date(1990, 1, 1)
    assert gender_from_id(number) is Gender.MALE  # 15th digit 3 is odd
    assert region_code_from_id(number) == "330302"


def test_legacy_id_upgrades_to_the_18_digit_number():
    assert upgrade_legacy_id("330302900101123") == make_id("33030219900101123")


def test_legacy_id_with_impossible_date_is_rejected():
    with pytest.raises(DocumentInvalid, match="出生日期"):
        normalize_document("legacy_id", "330302901301123")


@pytest.mark.parametrize("prefix", ["810000", "820000", "830000"])
def test_hmt_residence_permit_is_accepted(prefix):
    number = make_id(f"{prefix}19900101123")
    assert normalize_document("hmt_residence_permit", number) == number
    assert region_code_from_id(number) == prefix


def test_hmt_permit_needs_an_hmt_prefix_and_a_checksum():
    with pytest.raises(DocumentInvalid, match="810000"):
        normalize_document("hmt_residence_permit", make_id("84000019900101123"))
    with pytest.raises(DocumentInvalid, match="校验位"):
        normalize_document("hmt_residence_permit", wrong_check(make_id("81000019900101123")))


def test_new_foreign_permit_uses_the_resident_id_checksum():
    number = make_id("93315619850607002")  # 9 + 浙江 33 + nationality 156 + date + sequence
    assert normalize_document("foreign_permanent_residence", number) == number
    assert birth_date_from_id(number) == date(1985, 6, 7)
    assert gender_from_id(number) is Gender.FEMALE
    with pytest.raises(DocumentInvalid, match="地址码|region code"):
        region_code_from_id(number)
    with pytest.raises(DocumentInvalid):
        normalize_document("foreign_permanent_residence", wrong_check(number))
    with pytest.raises(DocumentInvalid, match="应以9开头"):
        normalize_document("foreign_permanent_residence", VALID_ID)


def test_old_foreign_permit_is_three_letters_and_twelve_digits():
    assert normalize_document("foreign_permanent_residence", "usa330085060701") == (
        "USA330085060701"
    )
    with pytest.raises(DocumentInvalid):
        normalize_document("foreign_permanent_residence", "US1330085060701")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("e12345678", "E12345678"), ("G 1234 5678", "G12345678"), ("AB123", "AB123")],
)
def test_passport_is_upper_cased_alphanumerics(raw, canonical):
    assert normalize_document("passport", raw) == canonical


@pytest.mark.parametrize("raw", ["E123", "E" * 18, "E1234567_", "护照12345"])
def test_bad_passport_is_rejected(raw):
    with pytest.raises(DocumentInvalid):
        normalize_document("passport", raw)


# --- USCC -----------------------------------------------------------------------------------


def test_uscc_lower_case_is_accepted_and_upper_cased():
    assert validate_uscc("91110000600037341l") == "91110000600037341L"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("91110000600037341M", "校验位"),
        ("9111000060003734", "长度"),
        ("911100006000373I1L", "字符"),  # I is not a USCC character
    ],
)
def test_bad_uscc_is_rejected_with_its_reason(value, reason):
    with pytest.raises(DocumentInvalid, match=reason) as caught:
        validate_uscc(value)
    assert caught.value.field == "uscc"


def test_synthetic_uscc_passes_gb32100_and_gb11714():
    rng = random.Random(32100)
    for _ in range(200):
        code = synthetic_uscc(rng, "330302")
        assert code.startswith("91330302MA")
        assert code[-1] == gb32100_check(code[:17])
        assert code[16] == gb11714_check(code[8:16])
        assert uscc.is_valid(code)


def test_synthetic_uscc_tampering_is_caught():
    code = synthetic_uscc(random.Random(1), "330302")
    other = next(c for c in GB32100_CHARS if c != code[-1])
    with pytest.raises(DocumentInvalid, match="校验位"):
        validate_uscc(code[:-1] + other)


# --- synthetic resident IDs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_rng", [random.Random, np.random.default_rng], ids=["random", "numpy"]
)
def test_synthetic_resident_id_is_valid_and_deterministic(make_rng):
    birth = date(1962, 3, 14)
    first = [synthetic_resident_id(make_rng(7), "330381", birth, "male") for _ in range(2)]
    assert first[0] == first[1]
    rng = make_rng(8)
    for gender in ["male", "female"] * 100:
        number = synthetic_resident_id(rng, "330381", birth, gender)
        assert number[-1] == gb11643_check(number[:17])
        assert number[14:17] != "000"
        assert birth_date_from_id(number) == birth
        assert gender_from_id(number) == gender
        assert region_code_from_id(number) == "330381"


def test_synthetic_resident_id_rejects_bad_region():
    with pytest.raises(ValueError):
        synthetic_resident_id(random.Random(1), "3303", date(1990, 1, 1), "male")
    with pytest.raises(ValueError):
        synthetic_resident_id(random.Random(1), "810000", date(1990, 1, 1), "male")


# --- phones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("13812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("0086-13812345678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        ("0577-88881234", "0577-88881234"),
        ("(0577) 8888123", "0577-8888123"),
        ("057788881234", "0577-88881234"),
        ("010-62345678", "010-62345678"),
        ("+86 577 88881234", "0577-88881234"),
    ],
)
def test_phone_is_normalised(raw, canonical):
    assert normalize_phone(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["12812345678", "1381234567", "138123456789", "0577-1234567", "110", "400-800-1234"]
)
def test_bad_phone_is_rejected_with_field_phone(raw):
    with pytest.raises(DocumentInvalid) as caught:
        normalize_phone(raw)
    assert caught.value.field == "phone"


# --- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("330302199001011234", "330302********1234"),
        ("33030219900101123x", "330302********123X"),
        ("330302900101123", "330302*****1123"),
        ("E12345678", "E1*****78"),
        ("AB123", "*****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_id_number(raw, masked):
    assert mask_id_number(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 13812345678", "138****5678"),
        ("0577-88881234", "0577-****1234"),
        ("0577-8888123", "0577-***8123"),
        ("12345", "*****"),
        ("call me", "******"),
        (None, ""),
    ],
)
def test_mask_phone(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("张三丰", "张*丰"),
        ("张三", "张*"),
        ("欧阳娜娜", "欧**娜"),
        ("张", "*"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_name(raw, masked):
    assert mask_name(raw) == masked
