import pytest

from omops.errors import InvalidName, OmopsError
from omops.names import (
    MAX_NAME_LENGTH,
    Reference,
    check_name,
    check_ref,
    check_tag,
    is_hidden,
    parse_reference,
    split_ref,
)


@pytest.mark.parametrize(
    "name",
    ["stats", "prod/forecast", "a.b-c_d", "A1/b2/c3", "x" * MAX_NAME_LENGTH, "v1.0", "..a", "a.."],
)
def test_valid_names_pass_unchanged(name):
    assert check_name(name) == name


HOSTILE = [
    "",
    "..",
    ".",
    "../etc/passwd",
    "a/../b",
    "a/./b",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a/",
    "a\0b",
    "x" * 5000,
    "x" * (MAX_NAME_LENGTH + 1),
    "a\\b",
    "..\\..\\windows",
    " ",
    "   ",
    "\t\n",
    "a b",
    "a@b",
    "a[b]",
    "a;drop",
    "caf\u00e9",
    "a\nb",
    "*",
    "~",
    "a:b",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_raise_invalid_name(name):
    with pytest.raises(InvalidName) as info:
        check_name(name)
    message = str(info.value)
    assert "invalid name" in message
    # the message explains the rule, and never repeats a huge name in full
    assert "segments" in message
    assert len(message) < 600


@pytest.mark.parametrize("name", [None, 1, 1.5, b"bytes", ["a"], ("a",), {"a": 1}, object()])
def test_non_str_names_raise_invalid_name(name):
    with pytest.raises(InvalidName, match="must be a str"):
        check_name(name)
    with pytest.raises(InvalidName, match="must be a str"):
        parse_reference(name)


def test_invalid_name_is_a_value_error_and_an_omops_error():
    with pytest.raises(ValueError):
        check_name("..")
    with pytest.raises(OmopsError):
        check_name("..")


def test_message_names_the_offending_segment_and_character():
    with pytest.raises(InvalidName, match=r"segment '\.\.'"):
        check_name("a/../b")
    with pytest.raises(InvalidName, match="empty segment"):
        check_name("a//b")
    with pytest.raises(InvalidName, match=r"character\(s\) ' ' not allowed"):
        check_name("a b")


@pytest.mark.parametrize("tag", ["latest", "testing", "v1.0", "a-b_c", "x" * 64])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "x" * 65, "a/b", "a b", "..x/", "a@b", None, 3, "\0"])
def test_invalid_tags(tag):
    with pytest.raises(InvalidName, match="invalid tag"):
        check_tag(tag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stats", Reference("stats")),
        ("prod/forecast", Reference("prod/forecast")),
        ("stats@testing", Reference("stats", ref="testing")),
        ("stats@3f2a9c", Reference("stats", ref="3f2a9c")),
        ("stats[a,b]", Reference("stats", columns=("a", "b"))),
        ("stats[ a , b ]", Reference("stats", columns=("a", "b"))),
        ("stats[^a]", Reference("stats", columns=("a",), exclude=True)),
        ("stats[^a,b]", Reference("stats", columns=("a", "b"), exclude=True)),
        ("stats@v1[^sales,x]", Reference("stats", ref="v1", columns=("sales", "x"), exclude=True)),
        ("stats@v1[a]", Reference("stats", ref="v1", columns=("a",))),
        ("stats^", Reference("stats", ref="^")),
        ("stats^^", Reference("stats", ref="^^")),
        ("prod/forecast^", Reference("prod/forecast", ref="^")),
        ("stats@v1^", Reference("stats", ref="v1^")),
        ("stats^[^a]", Reference("stats", ref="^", columns=("a",), exclude=True)),
        ("stats@v1^^[a]", Reference("stats", ref="v1^^", columns=("a",))),
    ],
)
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "stats@",  # empty tag
        "stats@a@b",
        "stats[]",
        "stats[^]",
        "stats[a,,b]",
        "stats[a,]",
        "stats[a",
        "stats]a[",
        "stats[a][b]",
        "stats^a",  # '^' only after the name or tag
        "st^ats",
        "stats@^",  # empty tag
        "stats@v^1",
        "^",
        "stats" + "^" * 256,
        "@tag",
        "[a]",
        "../x@tag",
        "/abs[a]",
        "a//b@t",
        "stats@a/b",
        "stats@" + "x" * 65,
        "x" * 5000 + "[a]",
        "a\0b@t",
    ],
)
def test_malformed_references_raise_invalid_name(text):
    with pytest.raises(InvalidName):
        parse_reference(text)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("v1", ("v1", 0)), ("v1^", ("v1", 1)), ("^", (None, 1)), ("^^^", (None, 3))],
)
def test_split_ref(ref, expected):
    assert split_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "a/b^", "^a", 5, "x" * 65 + "^"])
def test_check_ref_refuses_what_names_no_revision(ref):
    with pytest.raises(InvalidName, match="invalid tag"):
        check_ref(ref)


def test_reference_error_explains_the_syntax():
    with pytest.raises(InvalidName, match=r"name\[a,b\].*name\[\^a,b\]"):
        parse_reference("stats[]")
    with pytest.raises(InvalidName, match="name@tag"):
        parse_reference("stats[a][b]")


def test_long_reference_is_shortened_in_the_message():
    with pytest.raises(InvalidName) as info:
        parse_reference("[" * 5000)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        ("_temp/upload", True),
        ("_experiments/exp1/artifact", True),
        ("_x", True),
        ("stats", False),
        ("prod/_draft", False),
        ("a_b/c", False),
        ("x_", False),
    ],
)
def test_is_hidden_looks_at_the_first_segment_only(name, hidden):
    assert is_hidden(name) is hidden
