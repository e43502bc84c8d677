"""The built-in rule extractor: English patterns for what people say about themselves.

No model and no network. Each sentence of a message is matched against patterns for
first-person self-disclosure (docs/extraction.md lists what it catches and what it misses):

| says | fact | category | slot |
|---|---|---|---|
| "My name is Dana" / "call me Dana" | Name is Dana | identity | identity.name |
| "I'm 34" / "I am 34 years old" | Is 34 years old | identity | identity.age |
| "I live in Lisbon" / "I moved to Lisbon last year" | Lives in Lisbon | location | location.home |
| "I'm from Ohio" / "I grew up in Ohio" | Is from Ohio | location | location.origin |
| "I work at Acme" / "I started a new job at Acme" | Works at Acme | work | work.employer |
| "I work as a nurse" / "I'm a nurse" | Works as a nurse | work | work.role |
| "I quit my job" / "I no longer work at Acme" | (ends work.employer) | work | |
| "I'm studying law at Leeds" | Studies law at Leeds | education | |
| "My wife is called Ana" | Wife is named Ana | family | family.wife |
| "I have two kids" / "I'm married" | Has two kids / Is married | family | family.status |
| "I have a dog named Rex" | Has a dog named Rex | pets | |
| "I love hiking" / "I can't stand olives" | Likes hiking / Dislikes olives | preferences | |
| "My favorite color is teal" | Favorite color is teal | preferences | preferences.favorite.color |
| "I'm vegetarian" | Is vegetarian | preferences | preferences.diet |
| "I play the cello" | Plays the cello | hobbies | |
| "I'm allergic to peanuts" / "I have asthma" | Is allergic to peanuts / Has asthma | health | |
| "My birthday is March 3" | Birthday is March 3 | dates | identity.birthday |
| "I'm going to visit Rome next month" | Plans to visit Rome | plans | |
| "I want to learn Greek" | Wants to learn Greek | plans | |

Questions, conditionals ("if I lived in ...") and other people's facts ("my friend lives in
...") are skipped. A time in the sentence ("since 2019", "last year", "three weeks ago",
"next month") sets when the fact holds from, relative to when the message was said.
When the speaker's name is known (message metadata `speaker`), facts name them: "Dana
lives in Lisbon"; otherwise they read "Lives in Lisbon".
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from memvault.extract import Fact, Known, Turn

MAX_OBJECT_CHARS = 80
MAX_SENTENCE_CHARS = 600

# The end of an object phrase: punctuation, or a word that starts another clause.
_END = (
    r"(?=\s*(?:[,.;:!?)\]\"]|$)|\s+(?:and|but|because|so|since|which|who|where|when|while|"
    r"with|for|as|now|these days|right now|at the moment|anymore|though|although|until|"
    r"after|before|from|if|or|last|next|this|ago|in \d{4}|nowadays|lately|recently|too)\b)"
)
_OBJ = rf"(?P<x>[^,.;:!?()\[\]\"]{{2,{MAX_OBJECT_CHARS}}}?){_END}"
_NAME = r"(?P<x>(?-i:[A-Z][\w'\-]+(?:\s+[A-Z][\w'\-]+){0,2}))"
_I = r"(?:^|(?<=[\s,;(\"]))i"
_IM = rf"{_I}(?:'m|\s+am|m)"
_ADV = (
    r"(?:(?:really|actually|currently|now|still|also|just|recently|finally|absolutely|"
    r"totally|truly|definitely|genuinely|honestly|kind of|sort of|do|even|already|always|"
    r"mostly|usually|officially)\s+)*"
)
_A = r"(?:a|an|the|one|two|three|four|five|six|seven|eight|nine|ten|\d+)"

_OCCUPATIONS = frozenset(
    [
        "accountant",
        "actor",
        "actress",
        "analyst",
        "architect",
        "artist",
        "astronaut",
        "athlete",
        "attorney",
        "author",
        "baker",
        "banker",
        "barber",
        "barista",
        "bartender",
        "biologist",
        "blogger",
        "bookkeeper",
        "builder",
        "butcher",
        "carpenter",
        "cashier",
        "chef",
        "chemist",
        "cleaner",
        "coach",
        "consultant",
        "cook",
        "counselor",
        "counsellor",
        "dancer",
        "dentist",
        "designer",
        "detective",
        "developer",
        "dietitian",
        "director",
        "doctor",
        "driver",
        "economist",
        "editor",
        "electrician",
        "engineer",
        "entrepreneur",
        "farmer",
        "firefighter",
        "fisherman",
        "freelancer",
        "gardener",
        "geologist",
        "graphic",
        "hairdresser",
        "historian",
        "illustrator",
        "influencer",
        "instructor",
        "interpreter",
        "janitor",
        "journalist",
        "judge",
        "labourer",
        "laborer",
        "lawyer",
        "lecturer",
        "librarian",
        "lifeguard",
        "linguist",
        "machinist",
        "manager",
        "marketer",
        "mathematician",
        "mechanic",
        "midwife",
        "model",
        "musician",
        "nanny",
        "navigator",
        "nurse",
        "nutritionist",
        "officer",
        "optician",
        "painter",
        "paralegal",
        "paramedic",
        "pharmacist",
        "philosopher",
        "photographer",
        "physician",
        "physicist",
        "physiotherapist",
        "pilot",
        "plumber",
        "poet",
        "policeman",
        "policewoman",
        "politician",
        "producer",
        "professor",
        "programmer",
        "psychiatrist",
        "psychologist",
        "publisher",
        "realtor",
        "receptionist",
        "reporter",
        "researcher",
        "retiree",
        "salesman",
        "saleswoman",
        "salesperson",
        "scientist",
        "secretary",
        "singer",
        "soldier",
        "songwriter",
        "statistician",
        "student",
        "surgeon",
        "surveyor",
        "tailor",
        "teacher",
        "technician",
        "therapist",
        "translator",
        "tutor",
        "veterinarian",
        "vet",
        "waiter",
        "waitress",
        "welder",
        "writer",
        "youtuber",
        "streamer",
    ]
)
_CONDITIONS = frozenset(
    [
        "asthma",
        "diabetes",
        "arthritis",
        "adhd",
        "autism",
        "anxiety",
        "depression",
        "migraines",
        "migraine",
        "epilepsy",
        "celiac",
        "coeliac",
        "eczema",
        "psoriasis",
        "hypertension",
        "insomnia",
        "dyslexia",
        "cancer",
        "covid",
        "lupus",
        "tinnitus",
        "scoliosis",
        "anemia",
        "anaemia",
        "ibs",
        "crohn's",
    ]
)
_PETS = (
    r"(?P<pet>dog|cat|puppy|kitten|parrot|hamster|rabbit|bunny|fish|goldfish|horse|pony|"
    r"bird|turtle|tortoise|snake|lizard|gecko|guinea pig|ferret|chicken|pig|goat)"
)
_SINGLE_RELATIVES = {
    "wife": "wife",
    "husband": "husband",
    "partner": "partner",
    "spouse": "spouse",
    "girlfriend": "girlfriend",
    "boyfriend": "boyfriend",
    "fiance": "fiance",
    "fiancé": "fiance",
    "fiancee": "fiance",
    "fiancée": "fiance",
    "mom": "mother",
    "mum": "mother",
    "mother": "mother",
    "dad": "father",
    "father": "father",
}
_RELATIVES = (
    r"(?P<rel>wife|husband|partner|spouse|girlfriend|boyfriend|fianc[eé]e?|mom|mum|mother|"
    r"dad|father|son|daughter|brother|sister|grandma|grandmother|grandpa|grandfather|"
    r"kid|child|baby|cousin|aunt|uncle|niece|nephew|best friend)"
)
_PRONOUNS = frozenset(
    [
        "it",
        "that",
        "this",
        "you",
        "them",
        "him",
        "her",
        "those",
        "these",
        "there",
        "here",
        "what",
        "which",
        "one",
        "ones",
        "so",
        "myself",
        "yourself",
    ]
)
_SKIP_START = re.compile(
    r"^\s*(?:if|when|whenever|unless|suppose|imagine|what if|do you|did you|would|could|"
    r"should|maybe if)\b",
    re.I,
)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    build: Callable[[re.Match[str]], tuple[str, str, str | None] | None]
    ends: bool = False
    future: bool = False  # a plan: its time words point ahead


def _clean(x: str) -> str | None:
    x = " ".join(x.split()).strip(" '\"-")
    if not x or len(x) > MAX_OBJECT_CHARS:
        return None
    if x.lower() in _PRONOUNS or x.split()[0].lower() in ("it", "that", "this", "you", "them"):
        return None
    return x


def _pred(text: str) -> Callable[[re.Match[str]], tuple[str, str, str | None] | None]:
    """A builder from a template such as "lives in {x}|location|location.home"."""
    predicate, category, slot = [*text.split("|"), "", ""][:3]

    def build(m: re.Match[str]) -> tuple[str, str, str | None] | None:
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        if "x" in groups:
            x = _clean(groups["x"])
            if x is None:
                return None
            groups["x"] = x
        return predicate.format(**groups), category, (slot.format(**groups) or None)

    return build


def _r(pattern: str, build: str | Callable[..., object], **kw: bool) -> _Rule:
    fn = _pred(build) if isinstance(build, str) else build
    return _Rule(re.compile(pattern, re.I), fn, **kw)  # type: ignore[arg-type]


def _occupation(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    words = m.group("x").split()
    if not words or words[-1].lower().rstrip("s") not in _OCCUPATIONS:
        return None
    if words[-1].lower() == "student":
        return f"is a {' '.join(words)}", "education", "work.role"
    art = "an" if words[0][0].lower() in "aeiou" else "a"
    return f"works as {art} {' '.join(words)}", "work", "work.role"


def _condition(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    x = m.group("x").lower()
    last = x.split()[-1]
    if last not in _CONDITIONS and not x.startswith("type "):
        return None
    return f"has {x}", "health", None


def _relative_named(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    rel = m.group("rel").lower()
    name = m.group("x")
    single = _SINGLE_RELATIVES.get(rel)
    if single is not None:
        return f"{single}'s name is {name}", "family", f"family.{single}"
    return f"has a {rel} named {name}", "family", None


def _pet(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    count = (m.group("n") or "a").lower()
    pet = m.group("pet").lower()
    plural = count not in ("a", "an", "one", "1")
    noun = pet + ("s" if plural and not pet.endswith(("s", "fish")) else "")
    name = m.groupdict().get("x")
    text = f"has {count} {noun}" + (f" named {name}" if name else "")
    return text, "pets", None


def _born(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    x = _clean(m.group("x"))
    if x is None:
        return None
    if re.search(
        r"\d|january|february|march|april|may|june|july|august|september|"
        r"october|november|december",
        x,
        re.I,
    ):
        return f"was born {m.group('prep').lower()} {x}", "dates", "identity.born"
    return f"is from {x}", "location", "location.origin"


def _favorite(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    kind = " ".join(m.group("k").lower().split())
    x = _clean(m.group("x"))
    if x is None or len(kind.split()) > 3:
        return None
    return f"favorite {kind} is {x}", "preferences", f"preferences.favorite.{kind}"


def _plan(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    x = _clean(m.group("x"))
    if x is None:
        return None
    if re.match(r"(?:the|a|an|my|his|her|our|their|some)\b", x, re.I):
        return f"is going to {x}", "plans", None
    return f"plans to {x}", "plans", None


def _like(m: re.Match[str]) -> tuple[str, str, str | None] | None:
    verb = (m.group("v") or "like").lower()
    x = _clean(m.group("x"))
    if x is None:
        return None
    if verb.startswith("prefer"):
        return f"prefers {x}", "preferences", None
    category = (
        "hobbies" if re.match(r"(?:playing|doing|going|\w+ing)\b", x, re.I) else "preferences"
    )
    return f"likes {x}", category, None


# Order matters only within a sentence: the first rule of each slot wins.
_RULES: tuple[_Rule, ...] = (
    # identity
    _r(rf"\bmy name(?:'s|\s+is)\s+{_NAME}", "name is {x}|identity|identity.name"),
    _r(
        rf"(?:\bcall me|{_I}\s+go by|{_IM}\s+called)\s+{_NAME}",
        "name is {x}|identity|identity.name",
    ),
    _r(
        rf"{_IM}\s+(?P<n>\d{{1,3}})(?:\s*years?\s*old|\s*y/?o)?(?=\s*(?:[,.;!?]|$)|\s+years?\b)",
        "is {n} years old|identity|identity.age",
    ),
    _r(
        rf"{_I}\s+{_ADV}speak\s+(?P<x>(?-i:[A-Z][a-z]+(?:(?:,\s*|\s+and\s+)[A-Z][a-z]+)*))",
        "speaks {x}|identity|",
    ),
    # location
    _r(
        rf"{_I}\s+{_ADV}(?:live|(?:'m|\s+am|m)\s+{_ADV}living|reside|(?:'ve|\s+have)\s+{_ADV}"
        rf"(?:moved|relocated)|moved|relocated|(?:'m|\s+am)\s+{_ADV}based)\s+"
        rf"(?:in|to|at|out in|over in|down in|up in)\s+(?:the city of\s+)?{_OBJ}",
        "lives in {x}|location|location.home",
    ),
    _r(
        rf"\bwe\s+{_ADV}(?:live|moved|relocated)\s+(?:in|to)\s+{_OBJ}",
        "lives in {x}|location|location.home",
    ),
    _r(
        rf"(?:{_IM}\s+{_ADV}(?:originally\s+)?from|{_I}\s+{_ADV}(?:come|came)\s+from|"
        rf"{_I}\s+{_ADV}grew\s+up\s+in)\s+{_OBJ}",
        "is from {x}|location|location.origin",
    ),
    _r(rf"{_I}\s+was\s+born\s+(?P<prep>in|on)\s+{_OBJ}", _born),
    # work
    _r(
        rf"(?:{_I}\s+{_ADV}work|{_IM}\s+{_ADV}working|{_I}'ve\s+been\s+working|"
        rf"my\s+(?:job|profession|occupation)\s+is)\s+as\s+{_OBJ}",
        "works as {x}|work|work.role",
    ),
    _r(
        rf"(?:{_I}\s+{_ADV}work|{_IM}\s+{_ADV}working|{_I}(?:'ve|\s+have)\s+{_ADV}been\s+"
        rf"working)\s+(?:at|for)\s+{_OBJ}",
        "works at {x}|work|work.employer",
    ),
    _r(
        rf"{_I}\s+{_ADV}(?:got|started|landed|accepted|took)\s+(?:a\s+)?(?:new\s+)?"
        rf"(?:job|position|role|internship)\s+(?:at|with)\s+{_OBJ}",
        "works at {x}|work|work.employer",
    ),
    _r(
        rf"{_IM}\s+{_ADV}(?:an?\s+)(?P<x>(?:[a-z\-]+\s+){{0,2}}[a-z\-]+)"
        rf"(?=\s*(?:[,.;!?]|$)|\s+(?:at|for|in|and|but|by|who|with|from)\b)",
        _occupation,
    ),
    _r(
        rf"{_IM}\s+{_ADV}(?P<x>retired|unemployed|between jobs|self-employed)\b",
        "is {x}|work|work.role",
    ),
    _r(
        rf"(?:{_I}\s+{_ADV}(?:quit|left|lost)\s+my\s+job|{_I}\s+(?:no longer|don't|do not)\s+"
        rf"work\s+(?:at|for)|{_I}\s+(?:got|was)\s+(?:fired|laid off))",
        "|work|work.employer",
        ends=True,
    ),
    _r(
        rf"{_I}\s+(?:no\s+longer\s+live|(?:don't|do\s+not)\s+live\s+(?:in|at)\s+[^,.;!?]+?\s+"
        r"any\s?more|(?:moved|moved\s+away)\s+(?:out\s+of|away\s+from)\b)",
        "|location|location.home",
        ends=True,
    ),
    # education
    _r(
        rf"(?:{_I}\s+{_ADV}(?:study|major\s+in)|{_IM}\s+{_ADV}(?:studying|majoring\s+in))\s+(?P<x>[^,.;:!?]{{2,{MAX_OBJECT_CHARS}}}?)(?=\s*(?:[,.;!?]|$)|\s+"
        rf"(?:and|but|because|since|now|these days)\b)",
        "studies {x}|education|",
    ),
    _r(rf"{_I}\s+{_ADV}graduated\s+from\s+{_OBJ}", "graduated from {x}|education|"),
    # family
    _r(
        rf"\bmy\s+{_RELATIVES}(?:'s\s+name\s+is|\s+is\s+(?:called|named)|,)\s+{_NAME}",
        _relative_named,
    ),
    _r(
        rf"{_I}\s+{_ADV}(?:have|'ve\s+got|have\s+got)\s+(?P<n>{_A})\s+"
        r"(?P<x>kids?|children|child|sons?|daughters?|brothers?|sisters?|siblings?|"
        r"grandchildren|grandkids|twins)\b",
        "has {n} {x}|family|",
    ),
    _r(
        rf"(?:{_IM}\s+{_ADV}|{_I}\s+{_ADV}(?:just\s+)?got\s+)(?P<x>married|engaged|divorced|"
        r"single|widowed|separated)\b",
        "is {x}|family|family.status",
    ),
    # pets
    _r(
        rf"{_I}\s+{_ADV}(?:have|'ve\s+got|have\s+got|adopted|got)\s+(?P<n>{_A})\s+(?:\w+\s+)?"
        rf"{_PETS}s?(?:\s+(?:named|called)\s+{_NAME})?",
        _pet,
    ),
    _r(
        rf"\bmy\s+{_PETS}(?:'s\s+name\s+is|\s+is\s+(?:called|named)|,)\s+{_NAME}",
        lambda m: (f"has a {m.group('pet').lower()} named {m.group('x')}", "pets", None),
    ),
    # preferences and hobbies
    _r(rf"\bmy\s+fav(?:ou?rite)?\s+(?P<k>[a-z ]{{2,30}}?)\s+(?:is|are)\s+{_OBJ}", _favorite),
    _r(
        rf"(?:{_I}\s+{_ADV}(?P<v>love|like|enjoy|adore|prefer)|{_IM}\s+{_ADV}(?:really\s+)?"
        r"(?:into|(?:a\s+)?(?:huge|big|great)\s+fan\s+of|obsessed\s+with|passionate\s+about))"
        rf"\s+{_OBJ}",
        _like,
    ),
    _r(
        rf"(?:{_I}\s+{_ADV}(?:hate|dislike|detest|can't\s+stand|cannot\s+stand|don't\s+like|"
        rf"do\s+not\s+like|don't\s+enjoy)|{_IM}\s+not\s+(?:a\s+)?(?:big\s+)?fan\s+of)\s+"
        rf"{_OBJ}",
        "dislikes {x}|preferences|",
    ),
    _r(
        rf"{_IM}\s+{_ADV}(?:a\s+)?(?P<x>vegetarian|vegan|pescatarian|teetotal|teetotaler)\b",
        "is {x}|preferences|preferences.diet",
    ),
    _r(
        rf"{_I}\s+(?:don't|do not|never)\s+(?P<v>eat|drink)\s+{_OBJ}",
        "does not {v} {x}|preferences|",
    ),
    _r(
        rf"{_I}\s+{_ADV}play\s+(?P<x>(?:the\s+)?[a-z][a-z\- ]{{1,30}}?)"
        r"(?=\s*(?:[,.;!?]|$)|\s+(?:and|but|every|on|with|at|in|since|for)\b)",
        "plays {x}|hobbies|",
    ),
    # health
    _r(
        rf"{_IM}\s+{_ADV}(?:severely\s+|very\s+)?allergic\s+to\s+{_OBJ}",
        "is allergic to {x}|health|",
    ),
    _r(
        rf"{_I}\s+have\s+(?P<a>an?)\s+(?P<x>[a-z ]{{2,30}}?)\s+allergy\b",
        "has {a} {x} allergy|health|",
    ),
    _r(
        rf"{_I}\s+{_ADV}(?:have|suffer from|was diagnosed with|got diagnosed with)\s+"
        r"(?P<x>(?:type \d |chronic |severe |mild )?[a-z']+(?: [a-z']+)?)(?=\s*(?:[,.;!?]|$)|\s)",
        _condition,
    ),
    _r(
        rf"{_IM}\s+{_ADV}(?P<x>lactose intolerant|gluten intolerant|pregnant|diabetic|"
        r"colorblind|colou?r blind|deaf|hard of hearing|blind)\b",
        "is {x}|health|",
    ),
    # dates
    _r(rf"\bmy\s+birthday\s+is\s+(?:on\s+)?{_OBJ}", "birthday is {x}|dates|identity.birthday"),
    _r(
        rf"\bmy\s+(?:wedding\s+)?anniversary\s+is\s+(?:on\s+)?{_OBJ}",
        "anniversary is {x}|dates|dates.anniversary",
    ),
    # plans
    _r(
        rf"{_IM}\s+{_ADV}(?:going|planning|hoping|about|preparing|getting ready)\s+to\s+{_OBJ}",
        _plan,
        future=True,
    ),
    _r(
        rf"{_IM}\s+{_ADV}(?P<v>moving|traveling|travelling|flying|heading|relocating)\s+to\s+{_OBJ}",
        "is {v} to {x}|plans|",
        future=True,
    ),
    _r(rf"{_I}\s+{_ADV}(?:plan|intend|hope)\s+to\s+{_OBJ}", "plans to {x}|plans|", future=True),
    _r(
        rf"(?:{_I}\s+{_ADV}(?:want|wanna|would\s+love|'d\s+love|'d\s+like|would\s+like)\s+to|"
        rf"my\s+(?:goal|dream|plan)\s+is\s+to)\s+{_OBJ}",
        "wants to {x}|plans|",
        future=True,
    ),
    _r(
        rf"{_I}\s+{_ADV}have\s+(?P<a>a|an|my)\s+(?P<x>(?:job\s+)?(?:interview|exam|trip|vacation|"
        r"holiday|wedding|appointment|surgery|operation|concert|race|marathon|recital|"
        r"conference|presentation)(?:\s+(?:at|in|to|with)\s+[^,.;:!?]{2,40}?)?)"
        r"(?=\s*(?:[,.;!?]|$)|\s+(?:on|next|this|tomorrow|today|in|coming|soon|later)\b)",
        "has {a} {x} coming up|plans|",
        future=True,
    ),
)


# ----------------------------------------------------------------------------- time
_NUM = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "few": 3,
}  # fmt: skip
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_AGO = re.compile(
    r"\b(?P<n>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|a few)\s+"
    r"(?P<u>day|week|month|year)s?\s+ago\b",
    re.I,
)
_SINCE_YEAR = re.compile(r"\b(?:since|in|back in)\s+(?P<y>(?:19|20)\d\d)\b", re.I)
_SINCE_MONTH = re.compile(
    r"\b(?:since|in|back in|last)\s+(?P<m>"
    + "|".join(_MONTHS)
    + r")(?:\s+(?P<y>(?:19|20)\d\d))?\b",
    re.I,
)
_RELATIVE = re.compile(
    r"\b(?P<w>yesterday|today|tonight|tomorrow|last\s+(?:week|month|year|weekend)|"
    r"next\s+(?:week|month|year|weekend)|this\s+(?:week|month|year|weekend))\b",
    re.I,
)
_IN_FUTURE = re.compile(
    r"\bin\s+(?P<n>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|"
    r"a few)\s+(?P<u>day|week|month|year)s?\b",
    re.I,
)


_WEEKDAYS = [d.lower() for d in calendar.day_name]
_WEEKDAY = re.compile(r"\b(?P<w>next|this|on|last)\s+(?P<d>" + "|".join(_WEEKDAYS) + r")\b", re.I)
_FOR_PAST = re.compile(
    r"(?:'ve|\bhave|\bhas)\s+been\b.*?\bfor\s+(?:the\s+(?:past|last)\s+)?(?P<n>\d+|a|an|one|two|"
    r"three|four|five|six|seven|eight|nine|ten|a couple of|a few)\s+(?P<u>day|week|month|year)s?\b",
    re.I,
)


def _count(word: str) -> int:
    w = word.lower().removeprefix("a ").strip()
    return int(w) if w.isdigit() else _NUM.get(w, 1)


def when(sentence: str, said_at: datetime, future: bool) -> datetime | None:
    """The time a sentence's fact holds from, when it says one (relative to `said_at`)."""
    day = said_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    m = _AGO.search(sentence)
    if m:
        return day - timedelta(days=_count(m.group("n")) * _UNIT_DAYS[m.group("u").lower()])
    m = _SINCE_MONTH.search(sentence)
    if m:
        month = _MONTHS[m.group("m").lower()]
        year = int(m.group("y")) if m.group("y") else day.year
        if not m.group("y") and month > day.month:
            year -= 1
        return datetime(year, month, 1, tzinfo=UTC)
    m = _SINCE_YEAR.search(sentence)
    if m:
        return datetime(int(m.group("y")), 1, 1, tzinfo=UTC)
    m = _RELATIVE.search(sentence)
    if m:
        w = " ".join(m.group("w").lower().split())
        shifts = {
            "yesterday": -1, "today": 0, "tonight": 0, "tomorrow": 1, "last week": -7,
            "last weekend": -7, "last month": -30, "last year": -365, "next week": 7,
            "next weekend": 7, "next month": 30, "next year": 365, "this week": 0,
            "this weekend": 0, "this month": 0, "this year": 0,
        }  # fmt: skip
        return day + timedelta(days=shifts[w])
    m = _WEEKDAY.search(sentence)
    if m:
        target = _WEEKDAYS.index(m.group("d").lower())
        ahead = (target - day.weekday()) % 7
        if m.group("w").lower() == "last":
            return day - timedelta(days=(day.weekday() - target) % 7 or 7)
        return day + timedelta(days=ahead or 7)
    if not future:
        m = _FOR_PAST.search(sentence)
        if m:
            return day - timedelta(days=_count(m.group("n")) * _UNIT_DAYS[m.group("u").lower()])
    if future:
        m = _IN_FUTURE.search(sentence)
        if m:
            return day + timedelta(days=_count(m.group("n")) * _UNIT_DAYS[m.group("u").lower()])
    return None


# ----------------------------------------------------------------------------- extractor
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+|\s+-\s+|;\s+")


def sentences(text: str) -> list[str]:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


_POSSESSIVE = re.compile(r"^(?:name is|favorite |birthday is|anniversary is|\w+'s name is)")


def render(predicate: str, speaker: str | None) -> str:
    """ "lives in Lisbon" -> "Lives in Lisbon", or "Dana lives in Lisbon"."""
    if speaker:
        if _POSSESSIVE.match(predicate):
            return f"{speaker}'s {predicate}"
        return f"{speaker} {predicate}"
    return predicate[:1].upper() + predicate[1:]


class RuleExtractor:
    """English self-disclosure patterns; see the module docstring."""

    name = "rules"
    reads_known = False  # contradictions are found by slot, in the service

    def extract(self, turn: Turn, context: list[Turn], known: Sequence[Known] = ()) -> list[Fact]:
        found: list[tuple[int, int, Fact]] = []  # in the order they were said
        seen_slots: set[str] = set()
        seen_text: set[str] = set()
        for index, sentence in enumerate(sentences(turn.content)):
            if sentence.endswith("?") or len(sentence) > MAX_SENTENCE_CHARS:
                continue
            if _SKIP_START.match(sentence):
                continue
            # Every rule starts at a first-person word: try them only there (a scan of
            # every position by every rule cost 225 us a LoCoMo turn; this, a tenth).
            anchors = [a.start() for a in _ANCHOR.finditer(sentence)]
            if not anchors:
                continue
            for rule in _RULES:
                for pos in anchors:
                    m = rule.pattern.match(sentence, pos)
                    if m is None:
                        continue
                    if _negated_before(sentence, m.start()) and not rule.ends:
                        continue
                    built = rule.build(m)
                    if built is None:
                        continue
                    predicate, category, slot = built
                    if slot is not None and slot in seen_slots:
                        continue
                    valid_from = when(sentence, turn.created_at, rule.future)
                    if rule.ends:
                        if slot is None:
                            continue
                        seen_slots.add(slot)
                        ended = Fact(
                            text="", category=category, slot=slot, valid_from=valid_from, ends=True
                        )
                        found.append((index, m.start(), ended))
                        continue
                    text = render(predicate, turn.speaker)
                    if text.casefold() in seen_text:
                        continue
                    seen_text.add(text.casefold())
                    if slot is not None:
                        seen_slots.add(slot)
                    fact = Fact(text=text, category=category, slot=slot, valid_from=valid_from)
                    found.append((index, m.start(), fact))
        return [f for _, _, f in sorted(found, key=lambda t: (t[0], t[1]))]


_ANCHOR = re.compile(r"""(?:^|(?<=[\s,;("]))(?=i\b|i'|im\b|my\b|we\b|call\s+me\b)""", re.I)
_NEGATION = re.compile(r"\b(?:not|never|n't|no longer|don't|didn't|won't|wasn't)\s*$", re.I)


def _negated_before(sentence: str, start: int) -> bool:
    """'I don't live in Paris': a negation just before the match."""
    return bool(_NEGATION.search(sentence[max(0, start - 12) : start]))
