"""The languages Whisper knows, in the order of their tokens (``<|en|>`` is 50259, then
one id up per language).

Kept literal so the gateway can answer ``/api/languages`` without importing a Whisper
backend (faster-whisper pulls CTranslate2 and PyAV; openai-whisper pulls torch). A unit
test checks it against ``faster_whisper.tokenizer._LANGUAGE_CODES``, openai-whisper's
``LANGUAGES`` and the bundled tokenizer, so it cannot drift silently.
"""

from __future__ import annotations

#: (ISO code, English name), token order. The first 99 are in every multilingual model;
#: ``yue`` (Cantonese) came with large-v3.
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
    ("yue", "cantonese"),
)

CODES: tuple[str, ...] = tuple(code for code, _ in LANGUAGES)
NAMES: dict[str, str] = dict(LANGUAGES)
#: Languages in a multilingual model before large-v3 (``n_vocab`` 51865).
CLASSIC_COUNT = 99


def languages_for(multilingual: bool, count: int = CLASSIC_COUNT) -> list[str]:
    """Codes a model can be asked for: English-only models know ``en`` alone."""
    if not multilingual:
        return ["en"]
    return list(CODES[: max(1, min(count, len(CODES)))])


def count_for_vocab(n_vocab: int) -> int:
    """Language tokens in a multilingual vocabulary (openai-whisper's ``num_languages``)."""
    return n_vocab - 51765 - 1
