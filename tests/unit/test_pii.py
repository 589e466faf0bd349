import orjson

from pipelines.pii import keyed_hash, redact_raw

PATHS = ["after.full_name", "after.email", "after.phone", "before.email"]
ROW = {"after": {"full_name": "Ada Canary", "email": "ada@example.com", "phone": "+1 415 555 0100", "region": "sea"}}


def test_keyed_hash_depends_on_the_key():
    assert keyed_hash(b"a", "x") == keyed_hash(b"a", "x") != keyed_hash(b"b", "x")


def test_json_record_keeps_structure_with_hashed_fields():
    out = orjson.loads(redact_raw(orjson.dumps(ROW), PATHS, b"k"))
    assert out["after"]["region"] == "sea"
    assert out["after"]["email"] == "hmac:" + keyed_hash(b"k", "ada@example.com")


def test_unparseable_record_is_blanked():
    truncated = orjson.dumps(ROW)[:-25]
    out = redact_raw(truncated, PATHS, b"k")
    for clear in (b"Ada Canary", b"ada@example.com", b"555 0100"):
        assert clear not in out
    assert redact_raw(b"name=Ada Canary <ada@example.com> +1 415 555 0100", PATHS, b"k").count(b"<redacted>") == 2


def test_topics_without_personal_data_keep_raw_bytes():
    assert redact_raw(b"\xff{raw", [], b"k") == b"\xff{raw"
