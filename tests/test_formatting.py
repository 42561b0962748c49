"""Formatting for people: escaping that never turns a name into markup, numbers."""

from __future__ import annotations

import pytest

from peftbench.formatting import escape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the model's head", "the model's head"),
        ('the model\'s "head" <script>', 'the model\'s "head" &lt;script&gt;'),
        ("a & b &amp; c", "a &amp; b &amp;amp; c"),
        ("# [x](javascript:y) | d", "&#35; &#91;x&#93;(javascript&#58;y) &#124; d"),
        ("*a* _b_ `c`", "&#42;a&#42; &#95;b&#95; &#96;c&#96;"),
        ("two\nlines", "two lines"),
    ],
)  # fmt: skip
def test_md_text_escapes_once(text, expected):
    assert escape(text, "markdown") == expected


def test_md_text_never_mangles_an_apostrophe_into_an_entity():
    escaped = escape("the model's head", "markdown")
    assert "&#x27;" not in escaped and "&#35;" not in escaped and "&#39;" not in escaped
