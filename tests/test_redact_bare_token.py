"""A registered `Bearer <token>` header value also hides the bare token wherever it shows up."""

from watchdog.redact import MASK, Redactor


def test_the_bare_token_of_a_bearer_header_is_masked():
    redact = Redactor()
    redact.register_secret("Bearer tok-5b1d6e0c9a7f4e21")

    # The token alone, e.g. echoed in an upstream error body or a URL query.
    assert redact.redact("401 from upstream: invalid token tok-5b1d6e0c9a7f4e21") == f"401 from upstream: invalid token {MASK}"
    assert redact.redact("Authorization: Bearer tok-5b1d6e0c9a7f4e21") == f"Authorization: {MASK}"


def test_short_words_of_a_secret_are_not_masked_on_their_own():
    redact = Redactor()
    redact.register_secret("Basic dXNlcjpwYXNzd29yZA==")

    # "Basic" is an ordinary word: masking it everywhere would garble logs.
    assert redact.redact("Basic auth configured") == "Basic auth configured"
    assert redact.redact("dXNlcjpwYXNzd29yZA==") == MASK
