"""Names that cannot pass for another account's: `trio_chat.names`."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat import names, rules
from trio_chat.names import ConfusableIndex, check_name, confusable_keys, name_key, skeleton
from trio_chat.rules import RuleError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "trio_chat" / "data" / "unicode_names.json"

WELCOME = [
    "alice",
    "Alice",
    "bob",
    "Анна",
    "Алиса",
    "张伟",
    "José",
    "Zoë",
    "Łukasz",
    "Ærøskøbing",
    "Şükrü",
    "田中さくら",
    "さくら",
    "サクラ",
    "김철수",
    "Ελένη",
    "محمد",
    "عبد_الله",
    "שלום",
    "user_42",
    "o.brien",
    "Jean-Luc",
    "Ünïcödé",
    "Straße",
    "Nguyễn",
    "Tokyo東京",
    "स्वाति",
    "नमस्ते",
    "สมชาย",
    "ณัฐวุฒิ",
    "রবীন্দ্রনাথ",
    "தமிழ்",
    "Дмитрий",
    "Ελένη_Παπαδοπούλου",
    "پرویز",
    "עברית",
    "x" * 32,
    "7",
    "M\u0327aje\u013c",  # Marshallese M̧ajeļ: the cedilla (Inherited) goes with any script
    "x\u0300\u0301\u0302\u0303",  # four marks on one letter, as many as one may hold
]

# Letters UTS #39 leaves out of identifiers only for being of limited or uncommon use
# (Identifier_Type Limited_Use or Uncommon_Use): scripts of living communities, and the
# rarer letters of real names.
WELCOME_THOUGH_NOT_ALLOWED = [
    "ᏣᎳᎩ",  # Cherokee
    "ᐃᓄᒃᑎᑐᑦ",  # Inuktitut, in Canadian syllabics
    "ⵜⴰⵎⴰⵣⵉⵖⵜ",  # Tifinagh
    "ߒߞߏ",  # N'Ko
    "ꆈꌠ",  # Yi
    "ㄅㄆㄇ",  # Bopomofo
    "ܐܪܡܝܐ",  # Syriac, without its vowel points
    "山﨑",  # U+FA11, which NFKC keeps
    "𠮷田",  # U+20BB7
    "濵田",  # U+6FF5
    "Ţiriac",  # U+0162, the T with a cedilla that Romanian was long written with
]

# Names written with marks of limited use (Identifier_Type Limited_Use), or in a script
# UTS #39 excludes from identifiers (Exclusion), with its marks: scripts of living
# communities, as they are written.
WELCOME_WITH_MARKS_OR_EXCLUDED = [
    "ꦧꦸꦝꦶ",  # Javanese Budi, with the vowel signs suku and wulu
    "ᬩᬮᬶ",  # Balinese Bali, with the vowel sign ulu
    "ᮞᮥᮔ᮪ᮓ",  # Sundanese Sunda, with a vowel sign and the virama pamaaeh
    "ꯃꯤꯇꯩ",  # Meetei Mayek Meitei, with its vowel signs
    "𑄌𑄋𑄴𑄟",  # Chakma Changma, with the virama
    "𞤆𞤵𞤤𞤢𞥄𞤪",  # Adlam Pulaar
    "ߒߞߏ߫",  # N'Ko, with a tone mark
    "חײַם",  # Yiddish Khayem, with the patah Yiddish writes in ײַ
    "יאַנקעוו",  # Yiddish Yankev
    "אַבֿרהם",  # Yiddish Avrom, with the rafe of בֿ
    "שׂרה",  # Sore, with the sin dot
    "ייִדל",  # Yidl, with the hiriq of יִ
    "ܡܰܪܝܰܡ",  # Syriac Maryam, with its vowels
    "ᠮᠣᠩᠭᠣᠯ",  # Mongolian
    "ᜊᜌ᜔ᜊᜌᜒᜈ᜔",  # Baybayin (Tagalog), with a vowel sign and the virama
    "𞊐𞊑𞊒",  # Toto letters
    "𖩰𖩱𖩲",  # Tangsa letters
    "𐐨𐐩",  # Deseret
]


def refusal(name: str) -> RuleError:
    with pytest.raises(RuleError) as caught:
        check_name(name)
    assert caught.value.code == "invalid_name"
    return caught.value


def u(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char)}"


# --- what stays welcome ---------------------------------------------------------------


@pytest.mark.parametrize("name", WELCOME)
def test_names_in_one_script_are_welcome(name: str) -> None:
    assert check_name(name) == unicodedata.normalize("NFKC", name)


@pytest.mark.parametrize("name", WELCOME_THOUGH_NOT_ALLOWED)
def test_letters_of_limited_or_uncommon_use_are_welcome(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", WELCOME_WITH_MARKS_OR_EXCLUDED)
def test_marks_of_limited_use_and_excluded_scripts_are_welcome(name: str) -> None:
    assert check_name(name) == name


def test_a_name_typed_decomposed_is_measured_as_composed() -> None:
    # 32 letters, but 42 code points as a keyboard that writes marks apart sends them.
    name = "Nguyễn" * 5 + "Th"
    typed = unicodedata.normalize("NFD", name)
    assert len(typed) > rules.NAME_MAX_CHARS
    assert check_name(typed) == name


def test_fullwidth_letters_become_the_ascii_name() -> None:
    assert check_name("ａｌｉｃｅ") == "alice"
    assert check_name("ｕｓｅｒ＿４２") == "user_42"


def test_rules_check_name_and_name_key_are_the_names_module() -> None:
    assert rules.check_name("ａｌｉｃｅ") == "alice"
    assert rules.name_key("ALICE") == "alice"
    with pytest.raises(RuleError) as caught:
        rules.check_name("pаypal")
    assert caught.value.code == "invalid_name"


def test_case_does_not_make_another_account() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("ａｌｉｃｅ") == "alice"
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("Ελένη") == name_key("ΕΛΈΝΗ")
    assert name_key("alice") != name_key("alicia")


def test_name_key_is_the_one_stored_before() -> None:
    # Keys already on disk were NFKC, casefold, NFKC: they must not change.
    # Case folding may leave a letter decomposed (U+01F0 folds to j + U+030C): NFKC again.
    for name in [*WELCOME, "ＡＢＣ", "ǅemal", "ﬁx", "\u01f0ames", "J\u030cAMES"]:
        expected = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
        assert name_key(name) == expected


# --- attacks that check_name refuses ----------------------------------------------------

INVISIBLE_ATTACKS = [
    ("a\u034flice", "\u034f"),  # COMBINING GRAPHEME JOINER
    ("alice\ufe0f", "\ufe0f"),  # VARIATION SELECTOR-16
    ("a\u180blice", "\u180b"),  # MONGOLIAN FREE VARIATION SELECTOR ONE
    ("a\u17b4lice", "\u17b4"),  # KHMER VOWEL INHERENT AQ
    ("\u3164", "\u3164"),  # HANGUL FILLER alone
    ("\u3164\u3164", "\u3164"),
    ("a\u3164", "\u3164"),
    ("\u115f", "\u115f"),  # HANGUL CHOSEONG FILLER
    ("\u1160", "\u1160"),  # HANGUL JUNGSEONG FILLER
    ("\uffa0", "\uffa0"),  # HALFWIDTH HANGUL FILLER
    ("a\U00016fe4b", "\U00016fe4"),  # KHITAN SMALL SCRIPT FILLER
    ("al\u200bice", "\u200b"),  # ZERO WIDTH SPACE
    ("al\u200dice", "\u200d"),  # ZERO WIDTH JOINER
    ("alice\u202e", "\u202e"),  # RIGHT-TO-LEFT OVERRIDE
    ("al\u00adice", "\u00ad"),  # SOFT HYPHEN
    ("alice\U000e0041", "\U000e0041"),  # TAG LATIN CAPITAL LETTER A
    ("a\u2800", "\u2800"),  # BRAILLE PATTERN BLANK
    ("a\u00a0b", "\u00a0"),  # NO-BREAK SPACE
]


@pytest.mark.parametrize(("name", "invisible"), INVISIBLE_ATTACKS)
def test_invisible_characters_are_refused_and_named_not_echoed(name: str, invisible: str) -> None:
    error = refusal(name)
    assert u(invisible) in error.message
    assert "invisible" in error.message or "spaces" in error.message
    assert invisible not in error.message
    assert error.message.isascii()


@pytest.mark.parametrize("char", sorted(names.INVISIBLE))
def test_every_blank_character_is_refused_as_invisible(char: str) -> None:
    assert len(char) == 1
    for name in (char, f"a{char}", f"{char}a", f"김{char}"):
        error = refusal(name)
        assert f"{u(char)}, which is invisible" in error.message
        assert char not in error.message


@pytest.mark.parametrize(
    ("name", "offender"),
    [
        ("аlice", "\u006c"),  # Cyrillic а first: the Latin l is what mixes in
        ("alicе", "\u0435"),  # Cyrillic е last
        ("pаypal", "\u0430"),
        ("gοogle", "\u03bf"),  # Greek omicron
        ("Алисa", "\u0061"),  # Latin a in a Cyrillic name
        ("田中김さ", "\u3055"),  # Hangul and Hiragana never together
        ("user\u0661", "\u0661"),  # ARABIC-INDIC DIGIT ONE in a Latin name
        ("ᏣᎳᎩabc", "a"),  # a script of limited use is one script like any other
        ("ᐃᓄᒃᑎᑐᑦ\u13a0", "\u13a0"),  # Canadian syllabics and Cherokee
        ("bob\ua9b8", "\ua9b8"),  # a Javanese vowel sign stays with Javanese letters
    ],
)
def test_mixed_scripts_are_refused(name: str, offender: str) -> None:
    error = refusal(name)
    assert "mix scripts" in error.message
    assert u(offender) in error.message


def test_a_mix_of_scripts_names_the_letter_that_cannot_go_with_the_other() -> None:
    # Han goes with Hiragana and with Hangul; Hiragana and Hangul do not go together.
    error = refusal("田中김さ")
    assert f"{u('さ')} is Hiragana, but {u('김')} is Hangul" in error.message


@pytest.mark.parametrize(
    "name", ["Tokyo東京", "さくらSakura", "ㄅㄆ中文abc", "Seoul서울", "漢字한글"]
)
def test_latin_with_han_and_kana_bopomofo_or_hangul_is_highly_restrictive(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "offender"),
    [
        ("ali\u0307ce", "\u0307"),  # a second dot on i
        ("alı\u0307ce", "\u0307"),  # dotless i with a dot: looks like i
        ("\u0458\u0307ана", "\u0307"),  # Cyrillic je with a dot
        ("a\u0301\u0301", "\u0301"),  # the same mark twice
        ("e\u0301\u0302\u0303\u0304\u0306", "\u0065"),  # five marks on one letter
        ("\u00e9li\u0307se", "\u0307"),  # a mark above an earlier letter hides nothing here
        ("\u0268\u0307", "\u0307"),  # i with a stroke has its dot: it hides another
        ("\u0249\u0307a", "\u0307"),  # so has j with a stroke
    ],
)
def test_hidden_and_stacked_marks_are_refused(name: str, offender: str) -> None:
    assert u(offender) in refusal(name).message


def test_a_dot_above_another_mark_on_i_is_seen() -> None:
    # The acute takes the place of the i's own dot: a dot above it shows.
    assert check_name("ki\u0301\u0307m") == "k\u00ed\u0307m"


@pytest.mark.parametrize(
    ("name", "offender"),
    [
        # Marks of uncommon use, and technical ones.
        ("bob\u0358", "\u0358"),  # COMBINING DOT ABOVE RIGHT (Uncommon_Use): shows as bob
        ("bo\u1dcab", "\u1dca"),  # COMBINING LATIN SMALL LETTER R BELOW (Technical)
        ("\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd", "\u05c1"),  # שלום with points
        ("\u05d3\u05b0\u05d1\u05d5\u05e8\u05d4", "\u05b0"),  # a sheva: not one Yiddish writes
        # Letters that are not Allowed for more than their rarity.
        ("\u0251lice", "\u0251"),  # Latin alpha (Technical)
        ("\u1f08\u03b8\u03b7\u03bd\u1fb6", "\u1f08"),  # polytonic Greek (Obsolete)
    ],
)
def test_marks_and_letters_unicode_does_not_recommend_in_identifiers_are_refused(
    name: str, offender: str
) -> None:
    # Identifier_Status not Allowed, and an Identifier_Type among Technical, Obsolete,
    # Not_XID, Not_NFKC, Default_Ignorable and Deprecated, or a mark of Uncommon_Use.
    error = refusal(name)
    assert f"{u(offender)}, which Unicode does not recommend in identifiers." in error.message


def test_digits_come_from_one_set() -> None:
    assert check_name("محمد١٢") == "محمد١٢"
    error = refusal("محمد١2")
    assert u("\u0661") in error.message
    assert u("2") in error.message
    error = refusal("محمد١۲")
    assert u("\u0661") in error.message
    assert u("\u06f2") in error.message


@pytest.mark.parametrize("name", ["1محمد", "محمد.", "محمد-", "محمد_"])
def test_the_bidi_rule_refuses_badly_bounded_right_to_left_names(name: str) -> None:
    assert "right-to-left" in refusal(name).message


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "1 to 32"),
        ("x" * 33, "1 to 32"),
        ("x" * 1000, "1 to 32"),
        ("-alice", "start with a letter or a digit"),
        ("_", "start with a letter or a digit"),
        ("a b", "not spaces."),
        ("a\u00a0b", "not spaces such as U+00A0 NO-BREAK SPACE."),
        ("alice!", "only letters, digits, '_', '-' and '.', not U+0021 EXCLAMATION MARK"),
        ("alice+", "only letters, digits, '_', '-' and '.', not U+002B PLUS SIGN"),
        ("alice🙂", "U+1F642"),
        ("a\x07", "cannot contain U+0007 (a control character)"),
        ("a\ud800", "valid Unicode text, without U+D800 (a surrogate"),
        ("a\ue000", "U+E000 (a private-use character)"),
        ("a\U000e0fff", "U+E0FFF"),
        ("a\ufffe", "U+FFFE (not an assigned character)"),
        ("\u01c5emal!", "U+0021"),
        ("\u1f88", "U+1F88 GREEK CAPITAL LETTER ALPHA WITH PSILI AND PROSGEGRAMMENI"),
        ("\u1fa8", "U+1FA8 GREEK CAPITAL LETTER OMEGA WITH PSILI AND PROSGEGRAMMENI"),
        ("\u1100", "U+1100 HANGUL CHOSEONG KIYEOK, a conjoining Hangul letter"),
        ("\ud55c\u1175", "U+1175 HANGUL JUNGSEONG I, a conjoining Hangul letter"),
        ("\u17a3", "which Unicode deprecates"),
        ("a\u2e2f", "U+2E2F VERTICAL TILDE"),
    ],
)
def test_other_refusals_say_what_to_change(name: str, words: str) -> None:
    error = refusal(name)
    assert words in error.message
    assert error.message.isascii()


def test_titlecase_digraph_is_mapped_by_nfkc_before_precis() -> None:
    # NFKC first, as before: U+01C5 alone becomes D + z-caron, which PRECIS accepts.
    assert check_name("\u01c5emal") == "Džemal"


# --- confusable keys and the index ------------------------------------------------------


def test_skeleton_follows_confusables_txt() -> None:
    assert skeleton("paypal") == skeleton("pаypal")
    assert skeleton("rn") == skeleton("m")
    assert skeleton("I") == skeleton("l") == skeleton("1")
    assert skeleton("a\u034fb") == skeleton("ab")  # default ignorables dropped
    assert skeleton("ѕсоре") == skeleton("scope")
    assert skeleton("\xcd") == skeleton("\u013a")  # Í and ĺ: decomposed before the prototypes
    # A prototype's marks are put in canonical order with the marks after them.
    assert skeleton("\u0183\u0316") == skeleton("b\u0304\u0316") == skeleton("b\u0316\u0304")


@pytest.mark.parametrize(
    ("existing", "newcomer"),
    [
        ("alice", "aIice"),
        ("אברהם", "אַבֿרהם"),  # Yiddish points, which a new name may hold: optional to see
        ("ALICE", "ALlCE"),
        ("alice", "ALlCE"),
        ("Alice", "AIice"),
        ("alice", "AIice"),
        ("paypal", "pаypal"),
        ("mary", "rnary"),
        ("bill", "biII"),
        ("ivan", "lvan"),
        ("scope", "ѕсоре"),  # all Cyrillic: one script, but it looks Latin
        ("alice", "a\u034flice"),  # an old name stored before today's rules
        ("\u0130pek", "ipek"),  # İpek in lower case is i + U+0307, which shows as i
        ("ilker", "\u0130LKER"),
        ("\u0130\u0323pek", "\u1ecbpek"),  # a dot below between the letter and the hidden dot
        ("Íris", "ĺris"),  # a capital I with an acute, a small l with one
        # Each casing a name is seen in: case folded (ß as ss), capitalised, title case.
        ("Weißlich", "weissIich"),
        ("alice.bob", "AIice.bob"),
        ("alice.bob", "AIice.Bob"),
        # Marks stored before names could not hold them, which show as nothing or hardly.
        ("bob", "bob\u0358"),  # COMBINING DOT ABOVE RIGHT
        ("bob", "bo\u1dcab"),  # COMBINING LATIN SMALL LETTER R BELOW
        ("Bob", "BOB\u0358"),
        ("ᏣᎳᎩ", "ᏣᎳᎩ\u0358"),  # on letters of limited use, which names may hold
        # Optional vowel marks: Arabic tashkil, Hebrew niqqud, Syriac vowels.
        ("محمد", "مُحمد"),  # one damma
        ("محمد", "مُحَمَّد"),  # fully vowelled
        ("عِلم", "عَلَم"),  # two vowellings of one written word
        ("الله", "اللّٰه"),  # shadda and superscript alef
        ("שלום", "שָׁלוֹם"),
        ("שלום", "\u05e9\u0307\u05dc\u05d5\u05dd"),  # a dot above: a shin dot to the eye
        ("ܡܪܝܡ", "ܡܰܪܝܰܡ"),  # Maryam, with two pthaha
        ("محمد", "محمْد"),  # a sukun, the last of the tashkil
    ],
)
def test_look_alikes_clash_whatever_their_case(existing: str, newcomer: str) -> None:
    index = ConfusableIndex()
    index.add(existing, name_key(existing))
    assert index.clash(newcomer) == name_key(existing)
    reverse = ConfusableIndex()
    reverse.add(newcomer, name_key(newcomer))
    assert reverse.clash(existing) == name_key(newcomer)


@pytest.mark.parametrize(
    ("existing", "newcomer"),
    [
        ("alice", "alicia"),
        ("alice", "allce"),
        ("bob", "rob"),
        ("Анна", "Анка"),
        ("ann", "anna"),
        # Accents are letters of their own in the languages that write them.
        ("Jose", "José"),
        ("Zoe", "Zoë"),
        ("Nguyen", "Nguyễn"),
        ("Lukasz", "Łukasz"),
        ("Jurgen", "Jürgen"),
        ("Елена", "Елёна"),
        ("नमस्त", "नमस्ते"),
        # Hamza and madda are part of their letter; another letter is another name.
        ("احمد", "أحمد"),
        ("امنة", "آمنة"),
        # Nor is the dakuten of a kana, though Unicode does not recommend it alone.
        ("さくら", "ざくら"),
        ("محمد", "محمود"),
        # Nor are the marks a new name may hold that Unicode does not recommend: vowel
        # signs and tone marks of limited use.
        ("ꦧꦝ", "ꦧꦸꦝꦶ"),  # Javanese Budi, with the vowel signs suku and wulu
        ("ߒߞߏ", "ߒߞߏ߫"),  # N'Ko, with a tone mark
        # A dot above an i that an acute has taken the place of its own dot is seen.
        ("kím", "ki\u0301\u0307m"),
        # Names stored before today's rules: a spacing mark shows, whatever Unicode
        # recommends; so does a mark on a letter no new name may hold.
        ("ෆ", "ෆ\u0ddf"),  # SINHALA VOWEL SIGN GAYANUKITTA
        ("\u0251lice", "\u0251\u0305lice"),  # Latin alpha with an overline
    ],
)
def test_different_names_do_not_clash(existing: str, newcomer: str) -> None:
    index = ConfusableIndex()
    index.add(existing, name_key(existing))
    assert index.clash(newcomer) is None


def test_a_name_stored_starting_with_a_mark_has_keys() -> None:
    # No new name may start with a mark; one stored before the rules still is compared.
    assert confusable_keys("\u0301ab") == {"\u0301ab", "\u0301AB", "\u0301Ab"}


def test_the_same_account_in_another_case_is_not_a_clash() -> None:
    index = ConfusableIndex()
    index.add("Alice", "alice")
    for same in ("alice", "ALICE", "ａｌｉｃｅ", "Alice"):
        assert index.clash(same) is None


def test_clash_names_the_smallest_key_whatever_the_order() -> None:
    first, second = ConfusableIndex(), ConfusableIndex()
    for index, order in ((first, ("alice", "aIice")), (second, ("aIice", "alice"))):
        for existing in order:
            index.add(existing, name_key(existing))
    assert first.clash("a1ice") == second.clash("a1ice") == "aiice"


def test_remove_forgets_an_account() -> None:
    index = ConfusableIndex()
    index.add("alice", "alice")
    index.add("bob", "bob")
    index.remove("alice", "alice")
    assert index.clash("aIice") is None
    assert index.clash("b0b") == "bob"
    index.remove("alice", "alice")  # twice, or never added: nothing happens
    index.remove("carol", "carol")
    assert index.clash("b0b") == "bob"


def test_collisions_lists_each_clashing_pair_once() -> None:
    index = ConfusableIndex()
    for name in ("alice", "aIice", "a1ice", "bob", "carol", "аlice"):
        index.add(name, name_key(name))
    assert index.collisions() == [
        ("a1ice", "aiice"),
        ("a1ice", "alice"),
        ("a1ice", "аlice"),
        ("aiice", "alice"),
        ("aiice", "аlice"),
        ("alice", "аlice"),
    ]
    index.remove("aIice", "aiice")
    index.remove("a1ice", "a1ice")
    assert index.collisions() == [("alice", "аlice")]


def test_an_empty_index_has_no_collisions() -> None:
    assert ConfusableIndex().collisions() == []


# --- properties ---------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=40)

# Text close to names: letters of several scripts, marks, digits, punctuation, invisibles.
name_like = st.text(
    st.one_of(
        st.sampled_from(
            list("aAbBiIlL1oO0mrnMW_-.")
            + list("аоеіјѕсрхΑΟοιıİ")
            + list("\u0301\u0307\u0308\u034f\ufe0f\u200d\u3164田中さくら김ㄅ")
            + list("محمد١2۲שׁ")
        ),
        st.characters(categories=["Lu", "Ll", "Lo", "Mn", "Nd"]),
    ),
    min_size=1,
    max_size=34,
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(any_text, name_like))
def test_check_name_refuses_only_with_rule_errors_in_ascii(text: str) -> None:
    try:
        display = check_name(text)
    except RuleError as error:
        assert error.code == "invalid_name"
        assert error.message.startswith("A name ")
        assert error.message.isascii()
        assert error.message.isprintable()
    else:
        assert 1 <= len(display) <= rules.NAME_MAX_CHARS
        assert check_name(display) == display
        assert name_key(display) == name_key(text)
        assert skeleton(display) in confusable_keys(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(any_text, name_like))
def test_name_key_is_idempotent(text: str) -> None:
    key = name_key(text)
    assert name_key(key) == key


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, name_like))
def test_a_name_clashes_with_nothing_in_an_empty_index_and_never_with_itself(text: str) -> None:
    index = ConfusableIndex()
    assert index.clash(text) is None
    index.add(text, name_key(text))
    assert index.clash(text) is None
    assert index.collisions() == []
    index.remove(text, name_key(text))
    assert index.collisions() == []


@settings(max_examples=300, deadline=None)
@given(name_like, name_like)
def test_the_index_clashes_exactly_when_keys_meet(first: str, second: str) -> None:
    index = ConfusableIndex()
    index.add(first, name_key(first))
    meet = bool(confusable_keys(first) & confusable_keys(second))
    expected = name_key(first) if meet and name_key(first) != name_key(second) else None
    assert index.clash(second) == expected
    index.add(second, name_key(second))
    pairs = index.collisions()
    assert pairs == ([tuple(sorted((name_key(first), name_key(second))))] if expected else [])


# --- the data -------------------------------------------------------------------------------


def test_data_is_unicode_17_and_loaded_once() -> None:
    assert names.unicode_version() == "17.0.0"
    assert names._data() is names._data()


def test_shipped_data_is_well_formed() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    assert set(data["files"]) == {
        "confusables.txt",
        "IdentifierStatus.txt",
        "IdentifierType.txt",
        "Scripts.txt",
        "ScriptExtensions.txt",
        "PropertyValueAliases.txt",
        "DerivedCoreProperties.txt",
        "PropList.txt",
        "DerivedGeneralCategory.txt",
    }
    keys = ("scripts", "default_ignorable", "soft_dotted", "identifier_refused", "identifier_types")
    for key in keys:
        previous_end = -1
        for row in data[key]:
            start, end = int(row[0], 16), int(row[1], 16)
            assert previous_end < start <= end <= sys.maxunicode, (key, row)
            previous_end = end
    used = {code for row in data["scripts"] for code in row[2].split()}
    assert used <= set(data["script_names"])
    sources = [int(source, 16) for source, _ in data["confusables"]]
    assert sources == sorted(set(sources))
    assert len(sources) > 6000


def test_check_name_and_confusable_keys_are_cheap() -> None:
    import time

    check_name("warm-up")
    samples = [*WELCOME, "Stanisław_Kowalczyk", "x" * 32]
    start = time.perf_counter()
    rounds = 50
    for _ in range(rounds):
        for name in samples:
            check_name(name)
            confusable_keys(name)
    per_name = (time.perf_counter() - start) / (rounds * len(samples))
    assert per_name < 0.001


# --- the refresh script ---------------------------------------------------------------------


def write_sources(folder: Path, version: str = "17.0.0", security_version: str = "") -> None:
    """Small stand-ins for the unicode.org files, in their formats."""
    security_version = security_version or version
    ucd_head = "# {name}-{version}.txt\n# Date: 2025-01-01, 00:00:00 GMT\n#\n"
    security_head = "\ufeff# {name}.txt\n# Date: 2025-01-02, 00:00:00 GMT\n# Version: {version}\n"
    bodies = {
        "Scripts": (
            "0030..0039    ; Common # Nd  [10] DIGIT ZERO..DIGIT NINE\n"
            "0041..005A    ; Latin # L&  [26] LATIN CAPITAL LETTER A..Z\n"
            "0061..007A    ; Latin\n"
            "0300..036F    ; Inherited\n"
            "0430..044F    ; Cyrillic\n"
            "0640          ; Common # Lm       ARABIC TATWEEL\n"
        ),
        "ScriptExtensions": "0640          ; Arab Syrc # Lm  ARABIC TATWEEL\n",
        "PropertyValueAliases": (
            "sc ; Arab ; Arabic\nsc ; Cyrl ; Cyrillic\nsc ; Latn ; Latin\n"
            "sc ; Syrc ; Syriac\nsc ; Zinh ; Inherited ; Qaai\nsc ; Zyyy ; Common\n"
            "gc ; Lu ; Uppercase_Letter\n"
        ),
        "DerivedCoreProperties": (
            "034F          ; Default_Ignorable_Code_Point # Mn  COMBINING GRAPHEME JOINER\n"
            "0041..005A    ; Uppercase\n"
        ),
        "PropList": "0069..006A    ; Soft_Dotted\n0020          ; White_Space\n",
        "extracted/DerivedGeneralCategory": (
            "0020          ; Zs # SPACE\n"
            "0251          ; Ll # LATIN SMALL LETTER ALPHA\n"
            "0300..036F    ; Mn # [112] COMBINING GRAVE ACCENT..COMBINING LATIN SMALL LETTER X\n"
            "0730          ; Mn # SYRIAC PTHAHA ABOVE\n"
            "13A0..13F5    ; Lu # [86] CHEROKEE LETTER A..CHEROKEE LETTER MV\n"
            "1820          ; Lo # MONGOLIAN LETTER A\n"
            "18A9          ; Mn # MONGOLIAN LETTER ALI GALI DAGALGA\n"
            "20DD          ; Me # COMBINING ENCLOSING CIRCLE\n"
            "A9B6          ; Mn # JAVANESE VOWEL SIGN WULU\n"
        ),
    }
    (folder / "extracted").mkdir(exist_ok=True)
    for name, body in bodies.items():
        head = ucd_head.format(name=name.split("/")[-1], version=version)
        (folder / f"{name}.txt").write_text(head + body, encoding="utf-8")
    security = {
        "confusables": (
            "0430 ;\t0061 ;\tMA\t# ( а → a ) CYRILLIC SMALL LETTER A → LATIN SMALL LETTER A\n"
            "006D ;\t0072 006E ;\tMA\t# ( m → rn )\n"
        ),
        "IdentifierStatus": (
            "# @missing: 0000..10FFFF; Restricted\n"
            "0030..0039    ; Allowed    # 1.1   [10] DIGIT ZERO..DIGIT NINE\n"
            "0041..005A    ; Allowed    # 1.1   [26] LATIN CAPITAL LETTER A..Z\n"
            "005F          ; Allowed    # 1.1        LOW LINE\n"
            "0060          ; Allowed    # 1.1        (adjacent: merged)\n"
            "0301          ; Allowed    # 1.1        COMBINING ACUTE ACCENT\n"
        ),
        "IdentifierType": (
            "0149          ; Deprecated                     # 1.1  LATIN SMALL LETTER N\n"
            "0020          ; Not_XID                        # 1.1  SPACE\n"
            "0021          ; Technical Not_XID              # 1.1  EXCLAMATION MARK\n"
            "0041          ; Recommended\n"
            "0251          ; Technical                      # 1.1  LATIN SMALL LETTER ALPHA\n"
            "0301          ; Recommended                    # 1.1  COMBINING ACUTE ACCENT\n"
            "0358          ; Uncommon_Use                   # 4.1  COMBINING DOT ABOVE RIGHT\n"
            "0730          ; Limited_Use                    # 3.0  SYRIAC PTHAHA ABOVE\n"
            "13A0..13F4    ; Limited_Use                    # 3.0  CHEROKEE LETTER A..\n"
            "1820          ; Exclusion                      # 3.0  MONGOLIAN LETTER A\n"
            "18A9          ; Exclusion Uncommon_Use         # 3.0  (a mark, so refused)\n"
            "20DD          ; Limited_Use Uncommon_Use       # 1.1  (a mark, so refused)\n"
            "A9B6          ; Limited_Use                    # 5.2  JAVANESE VOWEL SIGN WULU\n"
        ),
    }
    for name, body in security.items():
        head = security_head.format(name=name, version=security_version)
        (folder / f"{name}.txt").write_text(head + body, encoding="utf-8")


def refresh(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "refresh_unicode_data.py"
    return subprocess.run(
        [sys.executable, str(script), *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_refresh_script_builds_the_data_from_local_files(tmp_path: Path) -> None:
    write_sources(tmp_path)
    output = tmp_path / "out.json"
    done = refresh(tmp_path, "--output", output)
    assert done.returncode == 0, done.stderr
    assert "Unicode 17.0.0" in done.stdout
    text = output.read_text(encoding="utf-8")
    assert '    ["0430", "0061"]\n' in text  # one range per line
    data = json.loads(text)
    assert data["unicode_version"] == "17.0.0"
    assert data["files"]["confusables.txt"] == "2025-01-02, 00:00:00 GMT"
    assert data["confusables"] == [["006D", "0072 006E"], ["0430", "0061"]]
    assert data["scripts"] == [
        ["0030", "0039", "Zyyy"],
        ["0041", "005A", "Latn"],
        ["0061", "007A", "Latn"],
        ["0300", "036F", "Zinh"],
        ["0430", "044F", "Cyrl"],
        ["0640", "0640", "Arab Syrc"],
    ]
    assert data["script_names"] == {
        "Arab": "Arabic",
        "Cyrl": "Cyrillic",
        "Latn": "Latin",
        "Syrc": "Syriac",
        "Zinh": "Inherited",
        "Zyyy": "Common",
    }
    assert data["default_ignorable"] == [["034F", "034F"]]
    assert data["soft_dotted"] == [["0069", "006A"]]
    # Not Allowed, and a refused type or a mark of uncommon use: not the acute accent
    # (Allowed), nor the Cherokee letters, the Syriac and Javanese vowel signs (Limited_Use)
    # or the Mongolian letter (Exclusion).
    assert data["identifier_refused"] == [
        ["0020", "0021"],
        ["0149", "0149"],
        ["0251", "0251"],
        ["0358", "0358"],
        ["18A9", "18A9"],
        ["20DD", "20DD"],
    ]
    assert data["identifier_types"] == [["0149", "0149", "Deprecated"]]
    # Files named one by one do as well as their folder.
    again = tmp_path / "again.json"
    files = sorted(tmp_path.rglob("*.txt"))
    assert refresh(*files, "--output", again).returncode == 0
    assert again.read_text(encoding="utf-8") == text


def test_refresh_script_refuses_mixed_versions_and_missing_files(tmp_path: Path) -> None:
    write_sources(tmp_path, version="17.0.0", security_version="16.0.0")
    output = tmp_path / "out.json"
    done = refresh(tmp_path, "--output", output)
    assert done.returncode == 1
    assert "different Unicode versions" in done.stderr
    (tmp_path / "PropList.txt").unlink()
    done = refresh(tmp_path, "--output", output)
    assert done.returncode == 1
    assert "missing input files: PropList.txt" in done.stderr
    assert not output.exists()
