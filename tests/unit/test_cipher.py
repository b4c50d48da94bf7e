"""The pluggable cipher: round trips, context binding, tampering, key rotation, blind index."""

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from geoserver.security.cipher import (
    NONCE_SIZE,
    AesGcmCipher,
    DecryptionFailed,
    Keyring,
    Sm4Cipher,
    generate_key,
    keyed_hash,
    make_cipher,
)

AES_KEY = bytes(range(32))
SM4_KEY = bytes(range(16))
CONTEXT = "person.id_number"


@pytest.fixture(params=["aes", "sm4"])
def cipher(request):
    return AesGcmCipher(AES_KEY) if request.param == "aes" else Sm4Cipher(SM4_KEY)


def split_token(token: bytes) -> tuple[bytes, bytes, bytes]:
    id_end = 2 + token[1]
    return token[:id_end], token[id_end : id_end + NONCE_SIZE], token[id_end + NONCE_SIZE :]


@pytest.mark.parametrize("plaintext", ["330302199001011234", "", "张三丰 13812345678 😀"])
def test_round_trip(cipher, plaintext):
    token = cipher.encrypt(plaintext, context=CONTEXT)
    assert plaintext.encode() not in token or plaintext == ""
    assert cipher.decrypt(token, context=CONTEXT) == plaintext


def test_same_plaintext_encrypts_differently_each_time(cipher):
    assert cipher.encrypt("x", context=CONTEXT) != cipher.encrypt("x", context=CONTEXT)


def test_bytea_from_the_driver_as_memoryview_decrypts(cipher):
    token = cipher.encrypt("13812345678", context=CONTEXT)
    assert cipher.decrypt(memoryview(token), context=CONTEXT) == "13812345678"


def test_wrong_context_fails(cipher):
    token = cipher.encrypt("330302199001011234", context="person.id_number")
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(token, context="person.phone")


def test_any_flipped_bit_fails(cipher):
    token = cipher.encrypt("330302199001011234", context=CONTEXT)
    for position in range(len(token)):
        tampered = bytearray(token)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(bytes(tampered), context=CONTEXT)


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\x01\x07default", None, "not bytes", 42])
def test_garbage_token_fails_cleanly(cipher, garbage):
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(garbage, context=CONTEXT)


def test_truncated_token_fails(cipher):
    token = cipher.encrypt("330302199001011234", context=CONTEXT)
    for cut in (1, 16, len(token) - 1):
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(token[:cut], context=CONTEXT)


def test_token_of_the_other_algorithm_fails():
    token = AesGcmCipher(AES_KEY).encrypt("x", context=CONTEXT)
    with pytest.raises(DecryptionFailed, match="sm4"):
        Sm4Cipher(SM4_KEY).decrypt(token, context=CONTEXT)


def test_aes_token_layout_opens_with_plain_aesgcm():
    token = AesGcmCipher(AES_KEY).encrypt("330302199001011234", context=CONTEXT)
    header, nonce, sealed = split_token(token)
    assert header == b"\x01\x07default"
    plain = AESGCM(AES_KEY).decrypt(nonce, sealed, header + CONTEXT.encode())
    assert plain == b"330302199001011234"


def test_sm4_token_layout_opens_with_plain_sm4_gcm():
    token = Sm4Cipher(SM4_KEY).encrypt("330302199001011234", context=CONTEXT)
    header, nonce, sealed = split_token(token)
    assert header == b"\x02\x07default"
    decryptor = Cipher(algorithms.SM4(SM4_KEY), modes.GCM(nonce, sealed[-16:])).decryptor()
    decryptor.authenticate_additional_data(header + CONTEXT.encode())
    assert decryptor.update(sealed[:-16]) + decryptor.finalize() == b"330302199001011234"


def test_installed_sm4_gcm_matches_rfc8998_vector():
    # RFC 8998 appendix A.1: proves the SM4-GCM we get from OpenSSL is the standard one.
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    assert ciphertext.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert encryptor.tag.hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"


@pytest.mark.parametrize(("cls", "size"), [(AesGcmCipher, 32), (Sm4Cipher, 16)])
def test_key_rotation(cls, size):
    old_key, new_key = b"\x01" * size, b"\x02" * size
    before = cls(Keyring({"2023": old_key}, active="2023"))
    old_token = before.encrypt("330302199001011234", context=CONTEXT)

    after = cls(Keyring({"2023": old_key, "2024": new_key}, active="2024"))
    assert after.decrypt(old_token, context=CONTEXT) == "330302199001011234"
    new_token = after.encrypt("330302199001011234", context=CONTEXT)
    assert split_token(new_token)[0] == bytes((cls.algorithm_id, 4)) + b"2024"

    retired = cls(Keyring({"2024": new_key}, active="2024"))
    assert retired.decrypt(new_token, context=CONTEXT) == "330302199001011234"
    with pytest.raises(DecryptionFailed, match="key"):
        retired.decrypt(old_token, context=CONTEXT)


def test_a_key_swapped_under_the_same_id_fails():
    token = AesGcmCipher(Keyring({"k": b"\x01" * 32}, active="k")).encrypt("x", context=CONTEXT)
    with pytest.raises(DecryptionFailed):
        AesGcmCipher(Keyring({"k": b"\x02" * 32}, active="k")).decrypt(token, context=CONTEXT)


def test_keyring_copies_keys_and_never_prints_them():
    keys = {"a": AES_KEY}
    ring = Keyring(keys, active="a")
    keys["a"] = b"\x00" * 32
    assert ring.active_key() == ("a", AES_KEY)
    assert AES_KEY.hex() not in repr(AesGcmCipher(ring))
    assert repr(AES_KEY) not in repr(AesGcmCipher(ring))


@pytest.mark.parametrize(
    ("keys", "active"),
    [({}, "a"), ({"a": AES_KEY}, "b"), ({"": AES_KEY}, ""), ({"é": AES_KEY}, "é")],
)
def test_bad_keyring_is_refused(keys, active):
    with pytest.raises(ValueError):
        Keyring(keys, active=active)


@pytest.mark.parametrize(("cls", "size"), [(AesGcmCipher, 16), (Sm4Cipher, 32)])
def test_wrong_key_size_is_refused(cls, size):
    with pytest.raises(ValueError, match="bytes"):
        cls(bytes(size))


@pytest.mark.parametrize(("algorithm", "size"), [("aes-gcm", 32), ("SM4", 16), ("sm4-gcm", 16)])
def test_make_cipher_from_settings(algorithm, size):
    keys = {"old": generate_key(algorithm), "new": generate_key(algorithm)}
    assert all(len(base64.b64decode(k)) == size for k in keys.values())
    assert keys["old"] != keys["new"]
    cipher = make_cipher(algorithm, keys, active="new")
    token = cipher.encrypt("张三", context=CONTEXT)
    assert token[2 : 2 + 3] == b"new"
    assert cipher.decrypt(token, context=CONTEXT) == "张三"


def test_make_cipher_names_bad_keys_without_revealing_them():
    with pytest.raises(ValueError, match="'broken'") as caught:
        make_cipher("aes-gcm", {"broken": "c2VjcmV0!!"}, active="broken")
    assert "c2VjcmV0" not in str(caught.value)
    with pytest.raises(ValueError, match="unknown cipher"):
        make_cipher("des", {"a": generate_key()}, active="a")
    with pytest.raises(ValueError, match="not in the keyring"):
        make_cipher("aes-gcm", {"a": generate_key()}, active="b")


def test_cipher_names():
    assert AesGcmCipher(AES_KEY).name == "aes-256-gcm"
    assert Sm4Cipher(SM4_KEY).name == "sm4-gcm"


def test_keyed_hash_is_stable_hmac_sha256():
    key = b"k" * 32
    digest = keyed_hash("330302199001011234", key)
    assert digest == keyed_hash("330302199001011234", key)
    assert digest == hmac.new(key, b"330302199001011234", hashlib.sha256).digest()
    assert digest != keyed_hash("330302199001011235", key)
    assert digest != keyed_hash("330302199001011234", b"j" * 32)


def test_keyed_hash_sm3_variant():
    key = b"k" * 32
    sm3 = keyed_hash("330302199001011234", key, algorithm="sm3")
    assert len(sm3) == 32
    assert sm3 == keyed_hash("330302199001011234", key, algorithm="SM3")
    assert sm3 != keyed_hash("330302199001011234", key)


def test_keyed_hash_refuses_short_keys_and_unknown_algorithms():
    with pytest.raises(ValueError, match="16 bytes"):
        keyed_hash("x", b"short")
    with pytest.raises(ValueError, match="sha256 or sm3"):
        keyed_hash("x", b"k" * 32, algorithm="md5")
