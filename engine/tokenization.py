"""WordPiece tokenisation with character offsets, and the windowing that turns long texts into model inputs.

Only `tokenizers` is used: the bundle's tokenizer.json is the single source of truth, shared by training,
export and inference so that all three see the same tokens.
"""
from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers


def sanitize(text: str) -> str:
    """Replace lone surrogates (which the Rust tokenizer cannot take) one-for-one, so offsets stay valid."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


class TokenizedText:
    """Tokens of one text without special tokens; offsets are character offsets into that text.

    Offsets and word ids are read from the encoding when first asked for. Tokens made without offsets
    (`with_offsets=False`, all sentiment needs) have no encoding, only their ids."""

    def __init__(self, id_list: list[int], encoding=None):
        self.id_list = id_list
        self._encoding = encoding

    def __len__(self) -> int:
        return len(self.id_list)

    @functools.cached_property
    def ids(self) -> np.ndarray:
        """int64 [n] (a text that fits one window never needs it: single_inputs reads id_list)"""
        return np.asarray(self.id_list, dtype=np.int64).reshape(len(self))

    def _check_offsets(self) -> None:
        if self._encoding is None:
            raise ValueError("these tokens were made without offsets (tokenize(..., with_offsets=False))")

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """int64 [n, 2]"""
        self._check_offsets()
        return np.asarray(self._encoding.offsets, dtype=np.int64).reshape(len(self), 2)

    @functools.cached_property
    def word_ids(self) -> np.ndarray:
        """int64 [n]: index of the pre-tokenizer word each token belongs to"""
        self._check_offsets()
        return np.asarray([-1 if w is None else w for w in self._encoding.word_ids], dtype=np.int64).reshape(len(self))


@dataclass(frozen=True)
class ModelInputs:
    """A padded batch ready for the encoder, plus where each row's text tokens sit."""

    input_ids: np.ndarray  # int64 [batch, seq]
    attention_mask: np.ndarray  # int64 [batch, seq]
    token_type_ids: np.ndarray  # int64 [batch, seq]
    spans: list[tuple[int, int]]  # per row: the [start, end) range of the text's tokens it holds
    text_offset: list[int]  # per row: the column where those tokens start

    # One row is exactly its tokens (single_inputs and _pad give it no padding), so its width answers both below
    # without a numpy reduction over its mask: just after a model run one took 56 us, reading the width 7.

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[1] if len(self.spans) == 1 else int(self.attention_mask.sum())

    def columns(self, rows: slice) -> int:
        """The columns `rows` need: their longest row's tokens (the rest is padding)."""
        return self.input_ids.shape[1] if len(self.spans) == 1 else int(self.attention_mask[rows].sum(1).max())


def load_tokenizer(path: str | Path) -> Tokenizer:
    """tokenizer.json as saved, without padding or truncation: the windowing here decides lengths."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


# ASCII characters BERT's normaliser deletes (controls other than tab, newline and carriage return): texts with
# one go through the full tokenizer, so that the twin below never has to delete characters.
_DELETED_ASCII = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# BERT's pre-tokeniser on ASCII: runs of letters and digits, and every other non-space character on its own.
_ASCII_WORD = r"[A-Za-z0-9]+|[^\sA-Za-z0-9]"
_BERT_WORDS_ASCII = Regex(_ASCII_WORD)
_ASCII_WORDS = re.compile(_ASCII_WORD)


def ascii_twin(path: str | Path) -> Tokenizer | None:
    """The tokenizer at `path` for lower-cased ASCII text (see `WordPieceTokenizer.tokenize`), or None when it is
    not BERT's. On such text BERT's normaliser has nothing left to do (lower-casing is done by the caller, one
    character for one, so offsets hold; accents and CJK do not occur) and its pre-tokeniser is one regex split:
    without both, encoding takes two fifths less time."""
    twin = load_tokenizer(path)
    if not (isinstance(twin.normalizer, normalizers.BertNormalizer)
            and isinstance(twin.pre_tokenizer, pre_tokenizers.BertPreTokenizer)):
        return None
    twin.normalizer = None
    twin.pre_tokenizer = pre_tokenizers.Split(_BERT_WORDS_ASCII, behavior="removed", invert=True)
    return twin


class WordPieceTokenizer:
    def __init__(self, path: str | Path):
        self._tokenizer = load_tokenizer(path)
        self._ascii = ascii_twin(path)
        self._lowercase = bool(getattr(self._tokenizer.normalizer, "lowercase", False))
        # special tokens are matched before normalisation, in the text as typed: a text holding one in any case
        # goes through the full tokenizer
        self._added = [t.content.lower() for t in self._tokenizer.get_added_tokens_decoder().values()]
        vocab = self._tokenizer.get_vocab()
        self._whole_words = whole_words(self._tokenizer.model, vocab) if self._ascii is not None else None
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab["[PAD]"]

    def tokenize(self, text: str, with_offsets: bool = True) -> TokenizedText:
        """Plain ASCII text goes through the ASCII twin; without offsets (the ids alone, all sentiment needs), its
        words are looked up in the vocabulary (`ascii_ids`), and other text goes through tokenizers'
        encode_batch_fast, which skips working out where each token sits in the text (a fifth of the time)."""
        text = sanitize(text)
        tokenizer = self._tokenizer
        if self._ascii is not None and text.isascii() and not _DELETED_ASCII.search(text):
            folded = text.lower()
            if not any(token in folded for token in self._added):
                tokenizer, text = self._ascii, folded if self._lowercase else text
                if not with_offsets and self._whole_words is not None:
                    return TokenizedText(self.ascii_ids(text))
        if not with_offsets:
            return TokenizedText(tokenizer.encode_batch_fast([text], add_special_tokens=False)[0].ids)
        encoding = tokenizer.encode(text, add_special_tokens=False)
        return TokenizedText(encoding.ids, encoding)

    def ascii_ids(self, text: str) -> list[int]:
        """The twin's ids for `text` (ASCII, already folded as the twin takes it), most of them without it.

        WordPiece first tries a word whole, so a word that is in the vocabulary is one token, its own id: after a
        model run has pushed tokenizers' code and data out of the caches, looking those words up here took about
        half the time the twin took. The other words go through the twin's WordPiece one by one."""
        words = _ASCII_WORDS.findall(text)
        ids = list(map(self._whole_words.get, words))
        if None not in ids:
            return ids
        wordpiece = self._ascii.model
        out = []
        for word, i in zip(words, ids):
            if i is None:
                out.extend(token.id for token in wordpiece.tokenize(word))
            else:
                out.append(i)
        return out

    def tokenize_batch(self, texts: list[str]) -> list[TokenizedText]:
        return [self.tokenize(t) for t in texts]

    def single_inputs(self, tokens: TokenizedText, max_length: int, stride: int) -> ModelInputs:
        """[CLS] window [SEP] rows covering every token, consecutive windows overlapping by `stride` tokens."""
        spans = windows(len(tokens), max_length - 2, stride)
        # most texts fit one row: built in one numpy call from the id list, its mask and token types shared (just
        # after a model run, with the caches cold, each numpy call costs microseconds)
        if len(spans) == 1:
            ids = np.array([[self.cls_id, *tokens.id_list, self.sep_id]], np.int64)
            return ModelInputs(ids, constant_row(1, ids.shape[1]), constant_row(0, ids.shape[1]), spans, [1])
        rows = [np.concatenate(([self.cls_id], tokens.ids[a:b], [self.sep_id])) for a, b in spans]
        return self._pad(rows, [np.zeros(len(r), np.int64) for r in rows], spans, [1] * len(rows))

    def pair_inputs(
        self, first: TokenizedText, second: TokenizedText, max_length: int, stride: int, max_first: int
    ) -> ModelInputs:
        """[CLS] first [SEP] window-of-second [SEP] rows (question + context); `first` is cut to `max_first`."""
        head = first.ids[:max_first]
        room = max(max_length - len(head) - 3, 1)
        spans = windows(len(second), room, stride)
        rows, types = [], []
        for a, b in spans:
            rows.append(np.concatenate(([self.cls_id], head, [self.sep_id], second.ids[a:b], [self.sep_id])))
            types.append(np.concatenate((np.zeros(len(head) + 2, np.int64), np.ones(b - a + 1, np.int64))))
        return self._pad(rows, types, spans, [len(head) + 2] * len(rows))

    def _pad(self, rows, types, spans, text_offset) -> ModelInputs:
        seq = max(len(r) for r in rows)
        input_ids = np.full((len(rows), seq), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), seq), dtype=np.int64)
        token_types = np.zeros((len(rows), seq), dtype=np.int64)
        for i, (row, tt) in enumerate(zip(rows, types)):
            input_ids[i, : len(row)] = row
            attention[i, : len(row)] = 1
            token_types[i, : len(tt)] = tt
        return ModelInputs(input_ids, attention, token_types, list(spans), list(text_offset))


def whole_words(wordpiece: models.Model, vocab: dict[str, int]) -> dict[str, int] | None:
    """Each vocabulary entry WordPiece gives as a whole word (see `WordPieceTokenizer.ascii_ids`), or None when
    the model is not WordPiece."""
    if not isinstance(wordpiece, models.WordPiece):
        return None
    return {word: i for word, i in vocab.items() if len(word) <= wordpiece.max_input_chars_per_word}


@functools.lru_cache(maxsize=64)
def constant_row(value: int, n: int) -> np.ndarray:
    """int64 [1, n] of `value`, read-only: one text's attention mask (ones) or token types (zeros)."""
    row = np.full((1, n), value, np.int64)
    row.flags.writeable = False
    return row


_SHARED: dict[str, WordPieceTokenizer] = {}
_SHARED_LOCK = threading.Lock()


def shared_tokenizer(path: str | Path) -> WordPieceTokenizer:
    """One WordPieceTokenizer per distinct tokenizer.json: the six bundles share BERT's vocabulary, and each
    tokenizer (with its ASCII twin) costs start-up time and memory. Encoding is thread-safe."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with _SHARED_LOCK:
        if digest not in _SHARED:
            _SHARED[digest] = WordPieceTokenizer(path)
        return _SHARED[digest]


def windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Cover range(n) with [start, end) windows of at most `size`, consecutive ones overlapping by `stride`.

    An empty text still gets one (empty) window so that every request produces a model call.
    """
    if size < 1:
        raise ValueError("window size must be positive")
    stride = min(max(stride, 0), size - 1)
    if n <= size:
        return [(0, n)]
    step = size - stride
    starts = list(range(0, n - size, step)) + [n - size]
    return [(s, s + size) for s in starts]
