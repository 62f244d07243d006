"""WeChat's message crypto and the safe XML reader of asgi_wechat_oauth.platform: a known
answer from WeChat's own sample (token ``spamtest``), round trips, every way a ciphertext can
be wrong, and hostile XML (billion laughs, external entities, deep nesting, huge, non-UTF-8,
truncated)."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_wechat_oauth.errors import (
    InvalidCallbackRequest,
    InvalidConfig,
    PushRejected,
    RequestTooLarge,
)
from asgi_wechat_oauth.platform import MessageCrypto
from asgi_wechat_oauth.platform._xml import MAX_DEPTH, MAX_XML_BYTES, parse_flat_xml

# WeChat's official sample (WXBizMsgCrypt's demo, also in wechatpy's tests).
SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_TOKEN = "spamtest"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_TIMESTAMP = "1409735669"
SAMPLE_NONCE = "1320562132"
SAMPLE_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PG"
    "HQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6"
    "tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp"
    "3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhv"
    "Ql+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


@pytest.fixture
def sample() -> MessageCrypto:
    return MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID)


def raw_cipher(key: str = SAMPLE_KEY) -> Cipher[modes.CBC]:
    """AES-256-CBC as WeChat documents it, built here independently of the code under test."""
    secret = base64.b64decode(key + "=")
    return Cipher(algorithms.AES(secret), modes.CBC(secret[:16]))


def raw_encrypt(plain: bytes) -> str:
    encryptor = raw_cipher().encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def test_the_official_sample_signs_and_decrypts(sample):
    assert sample.signature(SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == SAMPLE_SIGNATURE
    message = sample.decrypt_message(
        SAMPLE_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT
    )
    fields = parse_flat_xml(message)
    assert fields["ToUserName"] == "gh_10f6c3c3ac5a"
    assert fields["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert fields["Content"] == "abcdteT"
    assert fields["MsgId"] == "6054768590064713728"


def test_encrypting_the_sample_again_gives_wechats_ciphertext_byte_for_byte(sample):
    # The sample's 16 random bytes, read with a cipher built here: with them, encryption is
    # deterministic, so this is a known answer for encrypt() too (padding included).
    decryptor = raw_cipher().decryptor()
    plain = decryptor.update(base64.b64decode(SAMPLE_ENCRYPT)) + decryptor.finalize()
    message = sample.decrypt(SAMPLE_ENCRYPT)
    assert sample.encrypt(message, nonce_bytes=plain[:16]) == SAMPLE_ENCRYPT


def test_round_trip_with_fresh_random_bytes_each_time(sample):
    text = "<xml><Content><![CDATA[你好 🐼]]></Content></xml>"
    first, second = sample.encrypt(text), sample.encrypt(text)
    assert first != second
    assert sample.decrypt(first) == sample.decrypt(second) == text


@pytest.mark.parametrize("length", range(0, 70))
def test_padding_is_pkcs7_to_32_byte_blocks(sample, length):
    text = "x" * length
    sealed = base64.b64decode(sample.encrypt(text, nonce_bytes=bytes(16)))
    assert len(sealed) % 32 == 0
    decryptor = raw_cipher().decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    unpadded = 16 + 4 + length + len(SAMPLE_APPID)
    pad = len(plain) - unpadded
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad
    assert sample.decrypt(base64.b64encode(sealed).decode()) == text


def test_a_wrong_signature_is_refused_in_constant_time_compare(sample):
    for signature in (
        "0" * 40,
        SAMPLE_SIGNATURE[:-1] + "0",
        "",
        "签名" * 20,
    ):
        with pytest.raises(PushRejected) as caught:
            sample.verify(signature, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT)
        assert caught.value.reason == "push_signature_invalid"
        assert caught.value.status_code == 403
    # Another token signs differently.
    other = MessageCrypto("anothertoken", SAMPLE_KEY, SAMPLE_APPID)
    with pytest.raises(PushRejected):
        other.verify(SAMPLE_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT)


def _plain(message: bytes, appid: bytes = SAMPLE_APPID.encode(), length: int | None = None):
    body = bytes(16) + struct.pack(">I", len(message) if length is None else length)
    return body + message + appid


def _pad(data: bytes, pad: int | None = None) -> bytes:
    pad = 32 - len(data) % 32 if pad is None else pad
    return data + bytes([pad % 256]) * (pad or 1)


@pytest.mark.parametrize(
    "encrypt",
    [
        "not base64 at all!",
        "QUJD",  # 3 bytes: not a whole block
        base64.b64encode(bytes(48)).decode(),  # 48 bytes: not a multiple of 32
        "",
        "é" * 10,
        "A" * 70_000,
        raw_encrypt(bytes(64)),  # pad byte 0
        raw_encrypt(bytes(63) + b"\x21"),  # pad byte 33
        raw_encrypt(bytes(62) + b"\x01\x02"),  # pad byte 2, but the byte before is not 2
        raw_encrypt(_pad(_plain(b"<xml/>", length=10_000))),  # a length longer than itself
        raw_encrypt(_pad(b"\x00" * 10)),  # shorter than the header
        raw_encrypt(_pad(_plain(b"\xff\xfe<xml/>"))),  # not UTF-8
    ],
)
def test_every_malformed_ciphertext_is_push_unreadable(sample, encrypt):
    with pytest.raises(InvalidCallbackRequest) as caught:
        sample.decrypt(encrypt)
    assert caught.value.reason == "push_unreadable"
    assert caught.value.status_code == 400


def test_a_message_for_another_appid_is_refused(sample):
    other = MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, "wx0000000000000000")
    with pytest.raises(PushRejected) as caught:
        sample.decrypt(other.encrypt("<xml/>"))
    assert caught.value.reason == "push_wrong_appid"
    # A prefix of the appid is not the appid.
    with pytest.raises(PushRejected):
        sample.decrypt(raw_encrypt(_pad(_plain(b"<xml/>", SAMPLE_APPID.encode()[:-1]))))
    assert sample.decrypt(raw_encrypt(_pad(_plain(b"<xml/>")))) == "<xml/>"


@pytest.mark.parametrize(
    ("token", "key", "appid", "option"),
    [
        ("spamtest", SAMPLE_KEY[:-1], SAMPLE_APPID, "encoding_aes_key"),
        ("spamtest", SAMPLE_KEY + "A", SAMPLE_APPID, "encoding_aes_key"),
        ("spamtest", SAMPLE_KEY + "=", SAMPLE_APPID, "encoding_aes_key"),
        ("spamtest", SAMPLE_KEY[:-1] + "-", SAMPLE_APPID, "encoding_aes_key"),
        ("spamtest", SAMPLE_KEY[:-1] + "\n", SAMPLE_APPID, "encoding_aes_key"),
        ("spam test", SAMPLE_KEY, SAMPLE_APPID, "token"),
        ("spamtest\n", SAMPLE_KEY, SAMPLE_APPID, "token"),
        ("", SAMPLE_KEY, SAMPLE_APPID, "token"),
        ("spamtest", SAMPLE_KEY, "", "appid"),
        ("spamtest", SAMPLE_KEY, "wx 1", "appid"),
    ],
)
def test_a_wrong_setting_fails_where_it_is_written(token, key, appid, option):
    with pytest.raises(InvalidConfig) as caught:
        MessageCrypto(token, key, appid)
    assert caught.value.problems[0].startswith(option)
    assert key not in str(caught.value) or key == ""


def test_repr_holds_neither_token_nor_key(sample):
    assert SAMPLE_TOKEN not in repr(sample) and SAMPLE_KEY not in repr(sample)
    assert SAMPLE_APPID in repr(sample)


# --- XML ---------------------------------------------------------------------------------------


def test_flat_xml_reads_cdata_entities_and_the_declaration():
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<xml><AppId><![CDATA[wx1]]></AppId>'
        b"<Encrypt>a&amp;b&#x41;</Encrypt><Empty/><List><item>1</item></List>"
        b"<Text>\xe4\xbd\xa0\xe5\xa5\xbd</Text><!-- a comment --></xml>"
    )
    assert parse_flat_xml(body) == {
        "AppId": "wx1",
        "Encrypt": "a&bA",
        "Empty": "",
        "List": "",
        "Text": "你好",
    }


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><Encrypt>&lol9;</Encrypt></xml>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        b'<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><A>&xxe;</A></xml>',
        b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd"><xml><A>1</A></xml>',
        b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p">%p;]><xml/>',
        b"<!DOCTYPE xml><xml/>",
        b"<xml><A>&undefined;</A></xml>",
        b'<?xml-stylesheet href="x"?><xml/>',
        b"<xml><?php echo 1; ?></xml>",
        b"<xml><A>1</A><A>2</A></xml>",  # which Encrypt is meant?
        b"<xml><A>1</A>",  # truncated
        b"<xml><A>1</A></xml><xml/>",  # two roots
        b"",
        b"   ",
        b"not xml",
        "<xml><A>你好</A></xml>".encode("gbk"),  # not UTF-8
        b'<?xml version="1.0" encoding="ISO-8859-1"?><xml><A>\xe9</A></xml>',
        b'<?xml version="1.0" encoding="UTF-16"?><xml/>',
        b"<xml><A>\x00</A></xml>",
        b"<xml" + b"<a>" * (MAX_DEPTH + 1),
        b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1),
        b"<a>" * 20_000,  # deep and unclosed, under the size bound
    ],
)
def test_hostile_or_broken_xml_is_refused_as_invalid_body(body):
    with pytest.raises(InvalidCallbackRequest) as caught:
        parse_flat_xml(body)
    assert caught.value.reason == "invalid_body"
    assert type(caught.value) is InvalidCallbackRequest


def test_nesting_up_to_the_bound_is_fine():
    body = b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH
    assert parse_flat_xml(body) == {"a": ""}


def test_a_huge_body_is_refused_before_parsing():
    # Well-formed but over the bound: refused by its size alone, as a 413.
    body = b"<xml><A>" + b"x" * MAX_XML_BYTES + b"</A></xml>"
    with pytest.raises(RequestTooLarge) as caught:
        parse_flat_xml(body)
    assert caught.value.status_code == 413
    assert parse_flat_xml(body, max_bytes=len(body)) == {"A": "x" * MAX_XML_BYTES}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: f"<xml>{t}</xml>".encode()))
def test_no_input_raises_anything_but_a_refusal(body):
    try:
        result = parse_flat_xml(body)
    except (InvalidCallbackRequest, RequestTooLarge):
        return
    assert isinstance(result, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_round_trips(text):
    crypto = MessageCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID)
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: no UTF-8 message holds them
        return
    assert crypto.decrypt(crypto.encrypt(text)) == text
