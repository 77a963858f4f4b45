import hmac

from django.test import override_settings

from portal.accounts import keys


def test_generated_keys_have_the_prefix_and_256_bits_of_randomness():
    raw = keys.key_generate()
    assert raw.startswith("sk-") and not raw.startswith("sk-mgmt-")
    assert len(raw) == 3 + 43  # 32 random bytes, URL-safe base64 without padding
    assert keys.key_is_well_formed(raw)
    assert len({keys.key_generate() for _ in range(1000)}) == 1000


def test_management_keys_are_told_apart_by_their_prefix():
    raw = keys.key_generate(management=True)
    assert raw.startswith("sk-mgmt-") and keys.key_is_management(raw)
    assert keys.key_is_well_formed(raw)
    assert not keys.key_is_management(keys.key_generate())


def test_the_hash_is_a_keyed_sha256_that_never_contains_the_key():
    raw = keys.key_generate()
    digest = keys.key_hash(raw)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == keys.key_hash(raw)
    assert raw[3:] not in digest
    with override_settings(KEY_HASH_SECRET=b"another secret"):
        assert keys.key_hash(raw) != digest


def test_the_display_prefix_is_short():
    raw = keys.key_generate()
    assert keys.key_display_prefix(raw) == raw[:12]
    assert len(keys.key_display_prefix(keys.key_generate(management=True))) == 12


def test_malformed_keys_are_rejected_by_shape():
    good = keys.key_generate()
    for bad in [
        "",
        "sk-",
        "sk-short",
        good[:-1],
        good + "x",
        "pk-" + good[3:],
        good.replace("-", " ", 1),
        good + "\n",
    ]:
        assert not keys.key_is_well_formed(bad), bad


def test_bearer_parsing():
    assert keys.bearer_token("Bearer sk-abc") == "sk-abc"
    assert keys.bearer_token("bearer   sk-abc  ") == "sk-abc"
    assert keys.bearer_token("Basic abc") is None
    assert keys.bearer_token("Bearer") is None
    assert keys.bearer_token(None) is None
    assert keys.bearer_token("") is None


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    raw = keys.key_generate()
    stored = keys.key_hash(raw)
    assert keys.key_matches(raw, stored)
    assert not keys.key_matches(keys.key_generate(), stored)
    assert len(calls) == 2  # both answers came from hmac.compare_digest, never from ==
