import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tokenization import WordPieceTokenizer, sanitize, windows


@settings(deadline=None)
@given(st.integers(0, 2000), st.integers(1, 300), st.integers(0, 400))
def test_windows_cover_every_token_within_size(n, size, stride):
    spans = windows(n, size, stride)
    covered = np.zeros(n, dtype=bool)
    for a, b in spans:
        assert 0 <= a <= b <= n and b - a <= size
        covered[a:b] = True
    assert covered.all()
    assert spans[0][0] == 0 and spans[-1][1] == n
    starts = [a for a, _ in spans]
    assert starts == sorted(set(starts))


def test_windows_overlap_by_stride():
    assert windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert windows(3, 4, 2) == [(0, 3)]
    assert windows(0, 4, 2) == [(0, 0)]


def test_sanitize_keeps_length_and_replaces_lone_surrogates():
    text = "a\ud800b\udfffc"
    clean = sanitize(text)
    assert len(clean) == len(text)
    assert clean == "a\ufffdb\ufffdc"
    assert sanitize("plain é 😀") == "plain é 😀"


def test_offsets_point_into_the_original_text(tiny_tokenizer_dir):
    tok = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    text = "  Paris,  LONDON\tnaïve 😀 \x00 tower\ud800!"
    tokens = tok.tokenize(text)
    assert len(tokens) > 0
    for a, b in tokens.offsets:
        assert 0 <= a < b <= len(text)
    pieces = [text[a:b].lower() for a, b in tokens.offsets]
    assert "paris" in pieces and "london" in pieces and "tower" in pieces


@pytest.mark.parametrize("repeats", [1, 3, 40], ids=["one-window", "fits-exactly", "several-windows"])
def test_single_inputs_layout(tiny_tokenizer_dir, repeats):
    tok = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    tokens = tok.tokenize(" ".join(["the tower is in paris"] * repeats))
    max_length = len(tokens) + 2 if repeats == 3 else 48
    inputs = tok.single_inputs(tokens, max_length=max_length, stride=12)
    assert inputs.input_ids.dtype == inputs.attention_mask.dtype == inputs.token_type_ids.dtype == np.int64
    assert inputs.input_ids.shape == inputs.attention_mask.shape == inputs.token_type_ids.shape
    assert inputs.input_ids.shape[1] <= max_length and inputs.text_offset == [1] * len(inputs.spans)
    for row, (a, b) in enumerate(inputs.spans):
        ids = inputs.input_ids[row]
        assert list(ids[: b - a + 2]) == [tok.cls_id, *tokens.ids[a:b], tok.sep_id]
        assert (ids[b - a + 2:] == tok.pad_id).all()
        assert inputs.attention_mask[row].tolist() == [1] * (b - a + 2) + [0] * (len(ids) - (b - a + 2))
        assert not inputs.token_type_ids[row].any()
    assert inputs.spans[0][0] == 0 and inputs.spans[-1][1] == len(tokens)
    assert (len(inputs.spans) > 1) == (repeats == 40)


def test_pair_inputs_layout(tiny_tokenizer_dir):
    tok = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    question = tok.tokenize("where is the tower")
    context = tok.tokenize(" ".join(["the tower is in paris"] * 40))
    inputs = tok.pair_inputs(question, context, max_length=48, stride=12, max_first=64)
    assert inputs.input_ids.shape[1] <= 48 and len(inputs.spans) > 1
    for row, ((a, b), shift) in enumerate(zip(inputs.spans, inputs.text_offset)):
        ids = inputs.input_ids[row]
        assert ids[0] == tok.cls_id and ids[shift - 1] == tok.sep_id
        assert list(ids[shift : shift + b - a]) == list(context.ids[a:b])
        assert ids[shift + b - a] == tok.sep_id
        assert inputs.token_type_ids[row, shift] == 1 and inputs.token_type_ids[row, 0] == 0


@settings(deadline=None, max_examples=60)
@given(st.text(max_size=200))
def test_tokens_without_offsets_have_the_same_ids(tiny_tokenizer_dir, text):
    """Sentiment's fast path (no offsets) must not change what the model reads."""
    tok = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    fast = tok.tokenize(text, with_offsets=False)
    assert list(fast.ids) == list(tok.tokenize(text).ids)
    with pytest.raises(ValueError, match="without offsets"):
        fast.offsets


# ASCII made of what the twin must get right: words, digits, punctuation runs, every kind of space, the
# controls BERT's normaliser deletes, and special tokens as typed in any case
ASCII_PIECES = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=6),
    st.sampled_from(["the", "Tower", "PARIS", "unbelievable", "x" * 120, "3.5", "don't", "e-mail", "foo_bar", "?!",
                     " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x00", "\x1f", "\x7f",
                     "[MASK]", "[mask]", "[CLS]", "[Sep]", "[UNK]", "[PAD]"]),
)


def assert_same_as_full(path, text):
    from tokenizers import Tokenizer

    want = Tokenizer.from_file(str(path)).encode(text, add_special_tokens=False)
    tokenizer = WordPieceTokenizer(path)
    got = tokenizer.tokenize(text)
    assert list(got.ids) == want.ids and got.offsets.tolist() == [list(o) for o in want.offsets]
    assert got.word_ids.tolist() == [-1 if w is None else w for w in want.word_ids]
    assert list(tokenizer.tokenize(text, with_offsets=False).ids) == want.ids


@settings(deadline=None, max_examples=150)
@given(st.lists(ASCII_PIECES, max_size=30).map("".join))
def test_ascii_text_tokenises_the_same_through_the_twin(tiny_tokenizer_dir, text):
    """ASCII text goes through a twin tokenizer (no normaliser, BERT's pre-tokeniser as one regex): the same ids,
    offsets and words as the full tokenizer."""
    assert_same_as_full(tiny_tokenizer_dir / "tokenizer.json", text)


@settings(deadline=None, max_examples=60)
@given(st.lists(ASCII_PIECES, max_size=30).map("".join))
def test_cased_ascii_text_is_not_lower_cased(tiny_tokenizer_dir, tmp_path_factory, text):
    cased = tmp_path_factory.getbasetemp() / "cased-tokenizer.json"
    if not cased.exists():
        cased.write_text((tiny_tokenizer_dir / "tokenizer.json").read_text().replace(
            '"lowercase": true', '"lowercase": false', 1))
    assert_same_as_full(cased, text)


def test_the_twin_is_used_for_plain_ascii_only(tiny_tokenizer_dir):
    """Which texts take the twin: if it were never taken, the tests above would pass without testing it."""
    tokenizer = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    taken = []
    twin_encode = tokenizer._ascii.encode
    tokenizer._ascii = type("Spy", (), {"encode": lambda self, t, **kw: taken.append(t) or twin_encode(t, **kw)})()
    for text in ["The Tower, in Paris!", "caf\u00e9", "a\x00b", "it is [MASK] here", "see [mask]"]:
        tokenizer.tokenize(text)
    assert taken == ["the tower, in paris!"]


def test_bundles_with_the_same_tokenizer_share_one(tiny_tokenizer_dir, tmp_path):
    from engine.tokenization import shared_tokenizer

    copy = tmp_path / "tokenizer.json"
    copy.write_bytes((tiny_tokenizer_dir / "tokenizer.json").read_bytes())
    assert shared_tokenizer(copy) is shared_tokenizer(tiny_tokenizer_dir / "tokenizer.json")
    copy.write_text(copy.read_text().replace('"lowercase": true', '"lowercase": false', 1))
    assert shared_tokenizer(copy) is not shared_tokenizer(tiny_tokenizer_dir / "tokenizer.json")


def test_the_shipped_samples_tokenise_the_same_through_the_twin():
    from engine.bundle import models_dir
    from engine.samples import load_samples

    path = models_dir() / "squeezebert-sentiment" / "tokenizer.json"
    if not path.exists():
        pytest.skip("no shipped bundle")
    texts = [s["text"] for task in ("sentiment", "entities") for s in load_samples(task)]
    texts += [t for s in load_samples("qa") for t in [s["context"], *s["questions"]]]
    assert any(t.isascii() for t in texts)
    for text in texts:
        assert_same_as_full(path, text)


def test_a_tokenizer_other_than_berts_has_no_twin(tiny_tokenizer_dir, tmp_path):
    import json

    from engine.tokenization import ascii_twin

    spec = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Lowercase"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    assert ascii_twin(tiny_tokenizer_dir / "tokenizer.json") is not None and ascii_twin(path) is None
    assert_same_as_full(path, "The Tower, in PARIS!")


def test_plain_ascii_ids_come_from_the_vocabulary(tiny_tokenizer_dir):
    """Without offsets, plain ASCII words found in the vocabulary are looked up, and only the others go through
    the twin's WordPiece: if the lookup were never taken, the equality tests above would not test it."""
    tokenizer = WordPieceTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    wordpiece, asked = tokenizer._ascii.model, []

    class Spy:
        model = type("WordPieceSpy", (), {"tokenize": lambda self, w: asked.append(w) or wordpiece.tokenize(w)})()

        def encode_batch_fast(self, *args, **kwargs):
            raise AssertionError("the twin encoded a plain ASCII text")

    tokenizer._ascii = Spy()
    vocab = tokenizer._tokenizer.get_vocab()
    assert "tower" in vocab and "unbelievable" not in vocab
    ids = tokenizer.tokenize("The tower, unbelievable!", with_offsets=False).id_list
    assert asked == ["unbelievable"]
    assert ids[:3] == [vocab["the"], vocab["tower"], vocab[","]] and ids[-1] == vocab["!"]
    assert len(ids) > 4  # "unbelievable" in pieces


def test_the_shipped_tokenizer_reads_sst2_the_same_without_offsets():
    """The vocabulary lookup against tokenizers itself on real sentences, with the shipped 30,522-word vocabulary."""
    from tokenizers import Tokenizer

    from engine.bundle import models_dir
    from engine.datasets import DATA, read_sst2

    path = models_dir() / "squeezebert-sentiment" / "tokenizer.json"
    data = DATA / "sst2" / "validation.tsv"
    if not (path.exists() and data.exists()):
        pytest.skip("no shipped bundle or no ../shared/data")
    full, tokenizer = Tokenizer.from_file(str(path)), WordPieceTokenizer(path)
    texts = [example.text for example in read_sst2(data)]
    texts += [text.title() for text in texts[:100]]  # cased words, not in the uncased vocabulary as typed
    for text in texts:
        assert tokenizer.tokenize(text, with_offsets=False).id_list == full.encode(text, add_special_tokens=False).ids


def test_a_vocabulary_word_longer_than_wordpiece_reads_is_unknown(tiny_tokenizer_dir, tmp_path):
    """WordPiece gives [UNK] for a word over max_input_chars_per_word even when the vocabulary holds it."""
    import json

    spec = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())
    long_word = "x" * (spec["model"]["max_input_chars_per_word"] + 1)
    spec["model"]["vocab"][long_word] = len(spec["model"]["vocab"])
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    tokenizer = WordPieceTokenizer(path)
    unknown = tokenizer._tokenizer.token_to_id("[UNK]")
    assert tokenizer.tokenize(f"the {long_word}", with_offsets=False).id_list[-1] == unknown
    assert_same_as_full(path, f"the {long_word} tower")
