"""Verifiable constraints and their checkers (the testbed's gold reward).

A :class:`Constraint` is a kind name plus parameters. Its kind (a :class:`ConstraintKind` in
:data:`REGISTRY`) knows how to phrase it as an instruction, how to check a response, how to
sample parameters for a topic, and which other constraints it cannot be combined with.

The gold reward of a response (:func:`gold_reward`, reward version :data:`REWARD_VERSION` 2) is
the share of the prompt's constraints it satisfies, gated by a content check
(:func:`gate_failure`): a response scores 0 whatever its constraints unless it has at least
:data:`MIN_WORDS` words, at least :data:`MIN_DISTINCT_WORDS` different ones, and mentions its
prompt's topic (:func:`addresses_topic`). Without the gate, constant answers scored well: "OK."
met 24% of the evaluation prompts' constraints (negative ones such as "do not use commas", length
caps) and "Sure! Here is a short answer." out-scored the untrained policy. Every task asks for a
paragraph, description, story, note or list about the topic, and the tightest length cap a
prompt can set is 30 words or 150 characters, so a real answer always clears the gate; the
datasheet (``data/testbed/DATASHEET.md``) gives the before/after figures.

Checkers are deliberately tolerant of surface noise: text is NFKC-normalised, curly quotes
become straight ones, zero-width characters are dropped, leading/trailing whitespace is
ignored, markdown emphasis around a start/end phrase is ignored, bullets may be ``-``, ``*``,
``+`` or ``•``, JSON may sit inside a code fence, and word matching is case-insensitive and
accepts a plural ``s``/``es``.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- text helpers

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\ufeff": None,
        "\u2022": "•",
        "\r": None,
    }
)


def normalize(text: str) -> str:
    """NFKC-normalise, straighten quotes, drop zero-width characters and carriage returns."""
    return unicodedata.normalize("NFKC", text).translate(_QUOTES)


_WORD_RE = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def words(text: str) -> list[str]:
    """Words of ``text``: runs of letters/digits, keeping ``don't`` and ``well-known`` whole."""
    return _WORD_RE.findall(normalize(text))


def has_content(text: str) -> bool:
    """True if the text contains at least one letter or digit."""
    return bool(re.search(r"[^\W_]", normalize(text)))


def sentences(text: str) -> list[str]:
    """Split into sentences at ``.``/``!``/``?`` followed by whitespace, and at line breaks.

    Bullet lines and headings count as sentences of their own; fragments without a letter or
    digit (a lone bullet marker, a rule ``---``) are dropped. A final sentence without
    punctuation (e.g. a truncated answer) still counts.
    """
    parts = re.split(r"(?<=[.!?])[\"')\]*_]*\s+|\n+", normalize(text).strip())
    return [p for p in parts if has_content(p)]


def paragraphs(text: str) -> list[str]:
    """Blocks separated by one or more blank lines (lines with only whitespace count as blank)."""
    blocks = re.split(r"\n[ \t]*\n", normalize(text).strip())
    return [b for b in blocks if has_content(b)]


_BULLET_RE = re.compile(r"^[ \t]*[-*+•‣◦▪●][ \t]+(?=\S)", re.M)
_NUMBERED_RE = re.compile(r"^[ \t]*\d{1,2}[.)][ \t]+(?=\S)", re.M)


def bullet_lines(text: str) -> list[str]:
    """Lines that are markdown bullets (``-``, ``*``, ``+``, ``•`` followed by a space and text)."""
    return [m.group(0) for m in _BULLET_RE.finditer(normalize(text))]


def numbered_lines(text: str) -> list[str]:
    """Lines that are numbered list items (``1.`` or ``1)`` followed by a space and text)."""
    return [m.group(0) for m in _NUMBERED_RE.finditer(normalize(text))]


def word_pattern(word: str) -> re.Pattern[str]:
    """Case-insensitive whole-word pattern for ``word`` that also accepts a plural s/es."""
    return re.compile(r"(?<![^\W_])" + re.escape(normalize(word)) + r"(?:s|es)?(?![^\W_])", re.I)


def count_word(text: str, word: str) -> int:
    """How often ``word`` (or its plural) occurs as a whole word, case-insensitively."""
    return len(word_pattern(word).findall(normalize(text)))


_EDGE = " \t\n*_\"'`>#"


def _strip_edges(text: str) -> str:
    return normalize(text).strip(_EDGE + "\u00a0")


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", normalize(text)).casefold().strip()


def starts_with_phrase(text: str, phrase: str) -> bool:
    """Response starts with ``phrase`` (case-insensitive, ignoring leading whitespace/markdown)."""
    body, want = _fold(_strip_edges(text)), _fold(phrase)
    if not want or not body.startswith(want):
        return False
    rest = body[len(want) :]
    return not rest or not (rest[0].isalnum() and want[-1].isalnum())


def ends_with_phrase(text: str, phrase: str) -> bool:
    """Response ends with ``phrase`` (case-insensitive; terminal ``.!?`` and trailing markdown,
    quotes and whitespace are ignored on both sides)."""
    body = _fold(_strip_edges(text)).rstrip(".!?" + _EDGE)
    want = _fold(phrase).rstrip(".!?" + _EDGE)
    if not want or not body.endswith(want):
        return False
    before = body[: len(body) - len(want)]
    return not before or not (before[-1].isalnum() and want[0].isalnum())


_FENCE_RE = re.compile(r"^```[A-Za-z]*[ \t]*\n?(.*?)\n?```$", re.S)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """Parse a response that is a JSON object (optionally inside a markdown code fence)."""
    body = normalize(text).strip()
    fence = _FENCE_RE.match(body)
    if fence:
        body = fence.group(1).strip()
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    """A subject for prompts with a few words that come naturally when writing about it.

    ``keywords`` feed the word constraints of the prompts (include, repeat, avoid); ``related``
    are further words that show an answer is about the topic (synonyms, singular forms, parts),
    used only by the content gate (:func:`addresses_topic`).
    """

    name: str
    keywords: tuple[str, ...]
    related: tuple[str, ...] = ()


# Words for the content gate only (never in prompts), written from general knowledge of each
# topic before the gate's effect on the stored samples was measured.
# fmt: off
_RELATED: dict[str, str] = {
    "the ocean": "sea seas marine beach coast tide shark whale coral",
    "coffee": "espresso brew latte roast barista mug",
    "learning a new language": "vocabulary fluent fluency bilingual languages",
    "recycling": "recycle recycled reuse bins trash landfill",
    "the moon": "lunar crescent tides astronauts craters",
    "gardening": "garden gardener flowers grow vegetables compost",
    "bicycles": "bike bikes cycling cyclist riding helmet",
    "sleep": "sleeping asleep bed nap insomnia",
    "volcanoes": "volcanic magma erupt ash crater",
    "honeybees": "bees bee beekeeper nectar colony",
    "the internet": "web websites online email",
    "rain": "raining rainy raindrops storm",
    "chess": "queen pawn checkmate rook bishop knight",
    "bread baking": "bake baker loaf knead",
    "public libraries": "library librarian borrow",
    "friendship": "friend companionship loyalty",
    "electric cars": "vehicle vehicles car ev emissions",
    "the human heart": "heartbeat cardiac arteries veins",
    "music": "musician melody song sing guitar piano",
    "mountains": "mountain summit hiking altitude",
    "saving money": "savings income invest",
    "dogs": "puppy puppies canine",
    "cats": "kitten kittens feline whiskers purr meow",
    "solar energy": "sunlight renewable photovoltaic",
    "forests": "forest woods tree",
    "drinking water": "hydration hydrated dehydration thirst",
    "time management": "productivity productive deadlines priorities",
    "the solar system": "planet jupiter mars saturn",
    "dinosaurs": "dinosaur jurassic paleontologists prehistoric",
    "photography": "photographer photo photos lens",
    "exercise": "workout fitness gym",
    "deserts": "desert sahara dunes arid",
    "tea": "teapot herbal",
    "robots": "robot robotic robotics automation",
    "the printing press": "gutenberg printed",
    "rainbows": "rainbow spectrum",
    "penguins": "penguin antarctica antarctic",
    "video games": "gaming gamer gamers console",
    "kindness": "compassion generous",
    "the weather": "temperature climate storms sunny cloudy",
    "cooking pasta": "spaghetti noodles cook boiling",
    "trains": "train railway rail railroad",
    "the brain": "memories cognitive neuron",
    "writing a letter": "envelope dear sincerely",
    "public speaking": "speech speaker presentation",
    "birds": "bird",
    "snow": "snowflakes snowman snowy",
    "the alphabet": "abc",
    "airplanes": "airplane plane planes aircraft airport",
    "museums": "museum exhibit artifacts gallery",
    "the city at night": "urban nightlife",
    "apples": "apple orchard",
    "rivers": "river stream",
    "teamwork": "collaboration cooperate",
    "the stars": "star constellation galaxy",
    "board games": "game dice",
    "healthy breakfast": "oatmeal cereal",
    "climate change": "warming greenhouse emissions",
    "smartphones": "smartphone mobile",
    "reading books": "book reader novel",
    "elephants": "elephant tusks",
    "the seasons": "season",
    "bridges": "bridge",
    "first aid": "wound bandage injured",
}

TOPICS: tuple[Topic, ...] = tuple(Topic(n, tuple(k.split()), tuple(_RELATED[n].split())) for n, k in [
    ("the ocean", "water waves fish salt"),
    ("coffee", "beans caffeine morning cup"),
    ("learning a new language", "words practice grammar speak"),
    ("recycling", "plastic waste paper environment"),
    ("the moon", "night light orbit earth"),
    ("gardening", "plants soil seeds water"),
    ("bicycles", "wheels ride pedal exercise"),
    ("sleep", "rest night dream body"),
    ("volcanoes", "lava eruption mountain heat"),
    ("honeybees", "honey flowers hive pollen"),
    ("the internet", "computers information network online"),
    ("rain", "clouds water weather umbrella"),
    ("chess", "board pieces king strategy"),
    ("bread baking", "flour oven dough yeast"),
    ("public libraries", "books reading community free"),
    ("friendship", "trust friends time support"),
    ("electric cars", "battery energy charging road"),
    ("the human heart", "blood body beat health"),
    ("music", "sound songs rhythm instruments"),
    ("mountains", "peak snow climb rocks"),
    ("saving money", "budget spending bank future"),
    ("dogs", "pet loyal walk bark"),
    ("cats", "pet independent fur play"),
    ("solar energy", "sun panels power electricity"),
    ("forests", "trees wildlife oxygen leaves"),
    ("drinking water", "health body clean glass"),
    ("time management", "schedule tasks goals time"),
    ("the solar system", "planets sun orbit space"),
    ("dinosaurs", "fossils extinct reptiles millions"),
    ("photography", "camera light pictures moment"),
    ("exercise", "health body muscles energy"),
    ("deserts", "sand heat dry cactus"),
    ("tea", "leaves cup hot flavor"),
    ("robots", "machines tasks sensors future"),
    ("the printing press", "books history ideas printing"),
    ("rainbows", "colors light rain sky"),
    ("penguins", "birds ice cold swim"),
    ("video games", "players fun play screen"),
    ("kindness", "people help smile others"),
    ("the weather", "rain sun wind forecast"),
    ("cooking pasta", "water salt sauce boil"),
    ("trains", "tracks travel station passengers"),
    ("the brain", "neurons memory think body"),
    ("writing a letter", "paper words friend write"),
    ("public speaking", "audience voice practice confidence"),
    ("birds", "wings fly feathers nest"),
    ("snow", "cold winter white flakes"),
    ("the alphabet", "letters words writing language"),
    ("airplanes", "flight wings pilot travel"),
    ("museums", "history art visitors exhibits"),
    ("the city at night", "lights streets people night"),
    ("apples", "fruit tree sweet healthy"),
    ("rivers", "water flow fish sea"),
    ("teamwork", "team goals together help"),
    ("the stars", "night sky light space"),
    ("board games", "family fun rules play"),
    ("healthy breakfast", "eggs fruit energy morning"),
    ("climate change", "temperature carbon planet future"),
    ("smartphones", "apps screen phone battery"),
    ("reading books", "stories pages imagination reading"),
    ("elephants", "trunk large memory herd"),
    ("the seasons", "summer winter spring autumn"),
    ("bridges", "river engineers steel cross"),
    ("first aid", "injury help safety emergency"),
])
# fmt: on

# common words a short answer often uses: avoiding them is possible but takes attention
GENERIC_AVOID: tuple[str, ...] = (
    "very", "also", "important", "many", "can", "help", "like", "just",
    "great", "really", "different", "people", "make", "way", "good",
)  # fmt: skip
START_PHRASES: tuple[str, ...] = (
    "Sure", "Here is", "In short", "Of course", "Absolutely", "Great question",
    "Let me explain", "Did you know",
)  # fmt: skip
END_PHRASES: tuple[str, ...] = (
    "Thank you for reading.", "That is all.", "Hope this helps.", "Have a nice day.",
    "The end.", "Stay curious.",
)  # fmt: skip
JSON_KEYS: tuple[tuple[str, ...], ...] = (
    ("title", "summary"), ("topic", "facts"), ("name", "description"),
    ("question", "answer"), ("pros", "cons"), ("topic", "tip"),
)  # fmt: skip


# --------------------------------------------------------------------------- kinds

Params = dict[str, Any]


@dataclass(frozen=True)
class ConstraintKind:
    """One kind of verifiable constraint.

    ``groups`` name the aspects of a response the kind controls (its layout, its ending, ...);
    two constraints whose kinds share a group are never combined in one prompt.
    """

    name: str
    phrase: Callable[[Params], str]
    check: Callable[[str, Params], bool]
    sample: Callable[[np.random.Generator, Topic], Params]
    groups: frozenset[str] = frozenset()
    required: Callable[[Params], list[str]] = field(default=lambda p: [])
    description: str = ""


def _choice(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _q(text: str) -> str:
    return f'"{text}"'


_KINDS: list[ConstraintKind] = [
    # ---- length
    ConstraintKind(
        "max_words",
        lambda p: f"Answer in at most {p['n']} words.",
        lambda r, p: 1 <= len(words(r)) <= p["n"],
        lambda rng, t: {"n": _choice(rng, (30, 40, 50))},
        frozenset({"length"}),
        description="at most n words",
    ),
    ConstraintKind(
        "min_words",
        lambda p: f"Write at least {p['n']} words.",
        lambda r, p: len(words(r)) >= p["n"],
        lambda rng, t: {"n": _choice(rng, (30, 40, 50))},
        frozenset({"length"}),
        description="at least n words",
    ),
    ConstraintKind(
        "max_chars",
        lambda p: f"Keep your answer under {p['n']} characters.",
        lambda r, p: 1 <= len(unicodedata.normalize("NFC", r).strip()) < p["n"],
        lambda rng, t: {"n": _choice(rng, (150, 200, 300))},
        frozenset({"length"}),
        description="fewer than n characters (Unicode code points, after stripping whitespace)",
    ),
    # ---- layout
    ConstraintKind(
        "max_sentences",
        lambda p: f"Use no more than {p['n']} sentences.",
        lambda r, p: 1 <= len(sentences(r)) <= p["n"],
        lambda rng, t: {"n": _choice(rng, (2, 3, 4))},
        frozenset({"layout"}),
        description="at most n sentences (line breaks also end sentences)",
    ),
    ConstraintKind(
        "exact_sentences",
        lambda p: f"Answer in exactly {p['n']} sentences.",
        lambda r, p: len(sentences(r)) == p["n"],
        lambda rng, t: {"n": _choice(rng, (2, 3))},
        frozenset({"layout"}),
        description="exactly n sentences",
    ),
    ConstraintKind(
        "paragraphs",
        lambda p: f"Write exactly {p['n']} paragraphs separated by a blank line.",
        lambda r, p: len(paragraphs(r)) == p["n"],
        lambda rng, t: {"n": _choice(rng, (2, 3))},
        frozenset({"layout"}),
        description="exactly n blank-line separated paragraphs",
    ),
    ConstraintKind(
        "bullets",
        lambda p: f"Format the answer as exactly {p['n']} bullet points starting with \"- \".",
        lambda r, p: len(bullet_lines(r)) == p["n"],
        lambda rng, t: {"n": _choice(rng, (2, 3, 4))},
        frozenset({"layout"}),
        description="exactly n markdown bullets (-, *, +, •)",
    ),
    ConstraintKind(
        "numbered_list",
        lambda p: f"Give a numbered list with exactly {p['n']} items (1., 2., ...).",
        lambda r, p: len(numbered_lines(r)) == p["n"],
        lambda rng, t: {"n": _choice(rng, (3, 4, 5))},
        frozenset({"layout"}),
        description="exactly n numbered items (1. or 1))",
    ),
    ConstraintKind(
        "json_object",
        lambda p: "Answer only with a JSON object that has the keys "
        + " and ".join(_q(k) for k in p["keys"])
        + ".",
        lambda r, p: (o := parse_json_object(r)) is not None
        and {k.casefold() for k in p["keys"]} <= {str(k).casefold() for k in o},
        lambda rng, t: {"keys": list(_choice(rng, JSON_KEYS))},
        frozenset({"layout", "start", "end", "title", "commas", "markup"}),
        required=lambda p: list(p["keys"]),
        description="the whole response is a JSON object (code fence allowed) with these keys",
    ),
    # ---- words
    ConstraintKind(
        "include_word",
        lambda p: f"Mention the word {_q(p['word'])}.",
        lambda r, p: count_word(r, p["word"]) >= 1,
        lambda rng, t: {"word": _choice(rng, t.keywords)},
        frozenset({"keyword"}),
        required=lambda p: [p["word"]],
        description="contains the word (case-insensitive, plural allowed)",
    ),
    ConstraintKind(
        "word_frequency",
        lambda p: f"Use the word {_q(p['word'])} at least {p['n']} times.",
        lambda r, p: count_word(r, p["word"]) >= p["n"],
        lambda rng, t: {"word": _choice(rng, t.keywords), "n": _choice(rng, (2, 3))},
        frozenset({"keyword"}),
        required=lambda p: [p["word"]],
        description="the word occurs at least n times",
    ),
    ConstraintKind(
        "avoid_word",
        lambda p: f"Do not use the word {_q(p['word'])}.",
        lambda r, p: count_word(r, p["word"]) == 0,
        lambda rng, t: {
            "word": _choice(rng, GENERIC_AVOID) if rng.random() < 0.5 else _choice(rng, t.keywords)
        },
        frozenset({"avoid"}),
        description="the word (or its plural) never occurs",
    ),
    ConstraintKind(
        "include_number",
        lambda p: "Include at least one number written in digits.",
        lambda r, p: bool(re.search(r"\d", normalize(r))),
        lambda rng, t: {},
        frozenset({"number"}),
        description="contains a digit",
    ),
    # ---- case
    ConstraintKind(
        "lowercase",
        lambda p: "Write everything in lowercase letters, with no capital letters at all.",
        lambda r, p: (n := normalize(r)) == n.lower() and any(c.isalpha() for c in n),
        lambda rng, t: {},
        frozenset({"case"}),
        description="no uppercase letter anywhere",
    ),
    ConstraintKind(
        "capital_words",
        lambda p: f"Write at least {p['n']} words in ALL CAPITAL LETTERS.",
        lambda r, p: sum(1 for w in words(r) if len(w) >= 2 and w.isupper()) >= p["n"],
        lambda rng, t: {"n": _choice(rng, (2, 3))},
        frozenset({"case"}),
        description="at least n words of 2+ letters in upper case",
    ),
    # ---- start and end
    ConstraintKind(
        "start_with",
        lambda p: f"Begin your answer with {_q(p['phrase'])}.",
        lambda r, p: starts_with_phrase(r, p["phrase"]),
        lambda rng, t: {"phrase": _choice(rng, START_PHRASES)},
        frozenset({"start"}),
        required=lambda p: [p["phrase"]],
        description="starts with the phrase (case-insensitive, leading markdown ignored)",
    ),
    ConstraintKind(
        "end_with",
        lambda p: f"End your answer with the exact phrase {_q(p['phrase'])}",
        lambda r, p: ends_with_phrase(r, p["phrase"]),
        lambda rng, t: {"phrase": _choice(rng, END_PHRASES)},
        frozenset({"end"}),
        required=lambda p: [p["phrase"]],
        description="ends with the phrase (case-insensitive, final punctuation ignored)",
    ),
    ConstraintKind(
        "end_question",
        lambda p: "End your answer with a question.",
        lambda r, p: _strip_edges(r).rstrip(")]").endswith("?"),
        lambda rng, t: {},
        frozenset({"end"}),
        description="the last character (ignoring markdown/quotes) is '?'",
    ),
    ConstraintKind(
        "postscript",
        lambda p: "Add a postscript at the end, starting with \"P.S.\"",
        lambda r, p: bool(
            re.search(r"(?i)(?:^|\n|[.!?]\s+)[\s*_>#]*p\.\s?s\.", normalize(r).strip())
        ),
        lambda rng, t: {},
        frozenset({"end"}),
        required=lambda p: ["P.S."],
        description="a line or sentence starts with 'P.S.'",
    ),
    ConstraintKind(
        "quotation",
        lambda p: "Wrap your entire answer in double quotation marks.",
        lambda r, p: len(s := normalize(r).strip()) >= 3 and s[0] == '"' and s[-1] == '"',
        lambda rng, t: {},
        frozenset({"start", "end", "layout", "title"}),
        description="the whole answer starts and ends with a double quote (curly quotes ok)",
    ),
    # ---- markup
    ConstraintKind(
        "title_brackets",
        lambda p: "Include a title wrapped in double angular brackets, such as <<my title>>.",
        lambda r, p: bool(re.search(r"<<[^<>\n]*[^\W_][^<>\n]*>>", normalize(r))),
        lambda rng, t: {},
        frozenset({"title"}),
        description="contains <<title>>",
    ),
    ConstraintKind(
        "title_markdown",
        lambda p: "Start with a title line in Markdown, beginning with \"# \".",
        lambda r, p: bool(re.match(r"#{1,6}[ \t]+\S", normalize(r).strip())),
        lambda rng, t: {},
        frozenset({"title", "start"}),
        description="the first line is a markdown heading",
    ),
    ConstraintKind(
        "bold",
        lambda p: f"Highlight at least {p['n']} phrase{'s' if p['n'] > 1 else ''} in bold, "
        "like **this**.",
        lambda r, p: len(re.findall(r"\*\*[^*\n]*[^\W_][^*\n]*\*\*", normalize(r))) >= p["n"],
        lambda rng, t: {"n": _choice(rng, (1, 2))},
        frozenset({"markup"}),
        description="at least n **bold** spans",
    ),
    ConstraintKind(
        "placeholder",
        lambda p: "Include at least one placeholder in square brackets, such as [name].",
        lambda r, p: bool(re.search(r"\[[^\[\]\n]*[^\W_][^\[\]\n]*\](?!\()", normalize(r))),
        lambda rng, t: {},
        frozenset({"markup"}),
        description="contains [placeholder] (markdown links do not count)",
    ),
    # ---- punctuation
    ConstraintKind(
        "no_commas",
        lambda p: "Do not use any commas.",
        lambda r, p: not re.search(r"[,،、]", normalize(r)),
        lambda rng, t: {},
        frozenset({"commas"}),
        description="no comma anywhere (also full-width and Arabic commas)",
    ),
    ConstraintKind(
        "exclamation",
        lambda p: "Use at least one exclamation mark.",
        lambda r, p: "!" in normalize(r),
        lambda rng, t: {},
        frozenset({"exclamation"}),
        description="contains '!'",
    ),
]

REGISTRY: dict[str, ConstraintKind] = {k.name: k for k in _KINDS}
"""All constraint kinds by name."""


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Constraint:
    """A constraint instance: a registered kind and its parameters."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in REGISTRY:
            raise KeyError(f"unknown constraint kind {self.kind!r}; known: {sorted(REGISTRY)}")

    @property
    def spec(self) -> ConstraintKind:
        return REGISTRY[self.kind]

    def instruction(self) -> str:
        """The sentence added to a prompt, e.g. ``Answer in at most 40 words.``."""
        return self.spec.phrase(dict(self.params))

    def check(self, response: str) -> bool:
        """Whether ``response`` satisfies this constraint."""
        return bool(self.spec.check(response, dict(self.params)))

    def required_text(self) -> list[str]:
        """Text the constraint forces into a satisfying response (for conflict checks)."""
        return list(self.spec.required(dict(self.params)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able spec ``{"kind": ..., "params": {...}}``."""
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Constraint:
        """Inverse of :meth:`to_dict`."""
        return cls(spec["kind"], dict(spec.get("params", {})))

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __hash__(self) -> int:
        return hash(self.key())


def compatible(a: Constraint, b: Constraint) -> bool:
    """Whether two constraints may appear in the same prompt.

    They may not if they are of the same kind, if their kinds share a group (both control the
    length, the layout, the ending, ...), if one forbids a word the other requires, or if one
    forbids commas and the other requires text with a comma.
    """
    if a.kind == b.kind or (a.spec.groups & b.spec.groups):
        return False
    for x, y in ((a, b), (b, a)):
        if x.kind == "avoid_word":
            if any(count_word(t, x.params["word"]) for t in y.required_text()):
                return False
            if y.kind in {"include_word", "word_frequency"} and _fold(y.params["word"]) == _fold(
                x.params["word"]
            ):
                return False
        if x.kind == "no_commas" and any("," in t for t in y.required_text()):
            return False
    return True


def all_compatible(constraints: Sequence[Constraint]) -> bool:
    """Whether every pair of ``constraints`` is :func:`compatible`."""
    return all(
        compatible(a, b) for i, a in enumerate(constraints) for b in constraints[i + 1 :]
    )


def as_constraints(specs: Iterable[Constraint | Mapping[str, Any]]) -> list[Constraint]:
    """Accept constraints or their dict specs."""
    return [c if isinstance(c, Constraint) else Constraint.from_dict(c) for c in specs]


def satisfied(constraints: Iterable[Constraint | Mapping[str, Any]], response: str) -> list[bool]:
    """Per-constraint verdicts (all False for a response without any letter or digit)."""
    cons = as_constraints(constraints)
    if not has_content(response):
        return [False] * len(cons)
    return [c.check(response) for c in cons]


# --------------------------------------------------------------------------- content gate

REWARD_VERSION = 2
"""Version of :func:`gold_reward`: 1 = share of constraints met; 2 = the same, times the content
gate. Recorded in the datasheet and in every pair's metadata."""

MIN_WORDS = 10
"""Fewest words an answer needs to score (the tightest cap a prompt can set is 30 words)."""

MIN_DISTINCT_WORDS = 6
"""Fewest different words (case-folded): a word repeated to length does not count as content."""

GATE_REASONS: tuple[str, ...] = ("empty", "too_short", "repetitive", "off_topic")
"""Why an answer fails the gate, in the order they are checked."""

# topic-name words too common to show the topic ("first aid" is not about "first")
_NAME_STOPWORDS = frozenset(
    "the a an at of to in on and for new first human system change public".split()
)
# singulars of keywords that are everyday words in any answer ("others" -> "other")
_COMMON_SINGULARS = frozenset({"other", "leave", "word", "million"})
_TOPIC_BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}


def _as_topic(topic: str | Topic) -> Topic:
    if isinstance(topic, Topic):
        return topic
    return _TOPIC_BY_NAME.get(topic) or Topic(str(topic), ())


@functools.lru_cache(maxsize=512)
def _topic_patterns(topic: Topic) -> tuple[re.Pattern[str], ...]:
    return tuple(word_pattern(t) for t in topic_terms(topic))


def topic_terms(topic: str | Topic) -> tuple[str, ...]:
    """Words that show an answer is about ``topic``: the content words of its name (minus a few
    too common ones), its keywords and its related words; a term ending in ``s``/``es`` is also
    listed without it where that gives its singular (matching adds plurals back, see :func:`word_pattern`). A name not in
    :data:`TOPICS` gives the content words of the name."""
    t = _as_topic(topic)
    base = [w for w in t.name.casefold().split() if w not in _NAME_STOPWORDS]
    out: dict[str, None] = {}
    for w in [*base, *t.keywords, *t.related]:
        out[w] = None
        if w.endswith(("oes", "ses", "xes", "ches", "shes")):
            out[w[:-2]] = None  # volcanoes -> volcano
        elif w.endswith("s") and not w.endswith("ss") and len(w) > 3 and w[:-1] not in _COMMON_SINGULARS:
            out[w[:-1]] = None  # dogs -> dog
    return tuple(out)


def addresses_topic(response: str, topic: str | Topic) -> bool:
    """Whether ``response`` mentions one of :func:`topic_terms` as a whole word (any case)."""
    text = normalize(response)
    return any(p.search(text) for p in _topic_patterns(_as_topic(topic)))


def gate_failure(response: str, topic: str | Topic | None = None) -> str | None:
    """Why ``response`` fails the content gate, or None when it passes.

    Reasons (:data:`GATE_REASONS`): ``"empty"`` (no letter or digit), ``"too_short"`` (fewer than
    :data:`MIN_WORDS` words), ``"repetitive"`` (fewer than :data:`MIN_DISTINCT_WORDS` different
    words), ``"off_topic"`` (``topic`` given and never mentioned, see :func:`addresses_topic`).
    """
    if not has_content(response):
        return "empty"
    ws = words(response)
    if len(ws) < MIN_WORDS:
        return "too_short"
    if len({w.casefold() for w in ws}) < MIN_DISTINCT_WORDS:
        return "repetitive"
    if topic is not None and not addresses_topic(response, topic):
        return "off_topic"
    return None


def gold_reward(
    constraints: Iterable[Constraint | Mapping[str, Any]],
    response: str,
    topic: str | Topic | None = None,
    *,
    gate: bool = True,
) -> float:
    """Gold reward in [0, 1]: the share of ``constraints`` that ``response`` satisfies, or 0 when
    it fails the content gate (:func:`gate_failure`); 0 for no constraints.

    ``topic`` is the prompt's topic (a :data:`TOPICS` name or a :class:`Topic`). Pass it: without
    it the gate checks length and repetition only. :meth:`PromptSpec.reward
    <effalign.testbed.prompts.PromptSpec.reward>`, ``reward_from_metadata`` and
    ``gold_reward_fn`` pass it from the prompt. ``gate=False`` gives the version-1 reward (the
    bare share; for checker tests and the datasheet's before/after figures).
    """
    verdicts = satisfied(constraints, response)
    if not verdicts or (gate and gate_failure(response, topic) is not None):
        return 0.0
    return sum(verdicts) / len(verdicts)
