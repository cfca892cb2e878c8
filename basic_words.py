"""BERT's basic word splitting (lower-casing, punctuation) of ASCII text without paddlenlp's per-character Python
loops, which were most of the time a served English sentence's analysis took (data.Analyzer.words uses it)."""
import re

# ASCII control characters, which BERT's basic tokenizer removes (\t, \n and \r are whitespace to it).
_ASCII_CONTROLS = dict.fromkeys(code for code in [*range(32), 127] if chr(code) not in "\t\n\r")
# ASCII letters and digits make words; every other printable ASCII character is punctuation or a symbol to it.
_ASCII_PIECES = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")


def ascii_basic_words(basic_tokenizer, text):
    """basic_tokenizer.tokenize(text) for ASCII text, the same words in a fraction of the time (its per-character
    Python loops are most of a served sentence's analysis): controls removed, split at whitespace, lower-cased as
    it does, each punctuation character a word; accents and CJK characters cannot occur in ASCII."""
    words = []
    for token in text.translate(_ASCII_CONTROLS).split():
        if token in basic_tokenizer.never_split:
            words.append(token)
        else:
            words += _ASCII_PIECES.findall(token.lower() if basic_tokenizer.do_lower_case else token)
    return words
