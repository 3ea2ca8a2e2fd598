"""The benchmark: CPU naming, multiply-add counts, the encoder sizes it offers, its chart's axis, and how it times."""
import math
import time

import engine.benchmark
from engine.benchmark import ENCODERS, PAPER_GROUPS, SETTLE_MS, Contender, cpu_name, macs_per_sequence

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni sha_ni
"""


def test_cpu_name_lists_int8_instruction_sets():
    assert cpu_name(CPUINFO) == "AMD EPYC 9R14 (avx2, avx512f, avx512_vnni)"


def test_cpu_name_without_int8_extensions_is_the_model_name():
    assert cpu_name("model name\t: Some CPU\nflags\t: fpu sse2\n") == "Some CPU"


def test_multiply_adds_at_bert_base_size_match_the_paper():
    # SqueezeBERT paper, Table 2: BERT-base 22.5 GFLOPs and SqueezeBERT 7.42 GFLOPs per sequence of 128 tokens
    # (2 FLOPs per multiply-add), which checks the encoder sizes and the grouping the benchmark rates rows by.
    bert = ENCODERS["base"]
    squeezebert = {**bert, **PAPER_GROUPS}
    assert abs(2 * macs_per_sequence(bert, 128) / 1e9 - 22.5) < 0.2
    assert abs(2 * macs_per_sequence(squeezebert, 128) / 1e9 - 7.42) < 0.1
    assert macs_per_sequence(ENCODERS["shipped"], 128) < macs_per_sequence(bert, 128) / 7  # half the layers, half the width


def test_a_last_layer_on_cls_alone_counts_only_the_work_it_does():
    config = {"hidden_size": 8, "intermediate_size": 32, "num_hidden_layers": 2, **PAPER_GROUPS}  # groups of 4
    seq, h, i = 10, 8, 32
    full = macs_per_sequence(config, seq)
    skipped = (seq - 1) * (2 * seq * h + h * h + h * i / 4 * 2)  # 9 queries' attention, attn_out (dense) and FFN
    assert macs_per_sequence(config, seq, last_layer_rows=1) == full - skipped
    assert macs_per_sequence(config, seq, last_layer_rows=seq) == full


def test_command_line_offers_every_encoder_size():
    import main

    assert set(main.ENCODER_SIZES) == set(ENCODERS)


def test_chart_axis_uses_round_steps_and_holds_the_largest_value():
    from gui.benchmark_chart import nice_axis

    assert nice_axis(482) == (500, 100)
    assert nice_axis(13.3) == (15, 2.5)
    for largest in (0.7, 9.99, 31.7, 123.4, 4567.0):
        top, step = nice_axis(largest)
        assert largest <= top < largest + step and top / step <= 6
        assert step / 10 ** math.floor(math.log10(step)) in (1, 2, 2.5, 5)


def test_each_timed_call_follows_settle_time_of_its_own_untimed_calls(monkeypatch):
    """Another contender's threads may still be busy when one starts: it runs alone for SETTLE_MS before timing."""
    calls = []  # (contender, start time)

    def contender(name):
        def call():
            calls.append((name, time.perf_counter()))
            time.sleep(0.001)
        return Contender(name, "fp32", "transformers", call, "fake")

    monkeypatch.setattr(engine.benchmark, "build_contenders", lambda *args: [contender("a"), contender("b")])
    report = engine.benchmark.run_benchmark("sentiment", [16], runs=3, warmup=1, progress=lambda line: None)
    assert [r["model"] for r in report["results"]] == ["a", "b"]
    blocks = []  # runs of consecutive calls by one contender: [name, first start, last start]
    for name, started in calls:
        if blocks and blocks[-1][0] == name:
            blocks[-1][2] = started
        else:
            blocks.append([name, started, started])
    timed_blocks = blocks[2:]  # after each contender's warm-up block
    assert [b[0] for b in timed_blocks] == ["a", "b"] * 3
    # the deadline is read just before the first untimed call records its start, so a block can be that gap
    # (microseconds, more when the host preempts) short of SETTLE_MS; without the settle loop it would be 0
    assert all((last - first) * 1000 >= SETTLE_MS / 2 for _, first, last in timed_blocks)


def test_one_lengths_contenders_are_released_before_the_next_lengths_are_built(monkeypatch):
    """Six loaded models left over from the previous length slowed the next length's tokenisation by a third."""
    import gc
    import weakref

    alive_at_build = []
    built = []

    class Model:  # what a contender's call holds: its pipeline (sessions, tokenizer)
        def __call__(self):
            return None

    def build(task, seq_len, *args):
        gc.collect()
        alive_at_build.append(sum(ref() is not None for ref in built))
        model = Model()
        built.append(weakref.ref(model))
        return [Contender("squeezebert", "fp32", "transformers", model, "fake")]

    monkeypatch.setattr(engine.benchmark, "build_contenders", build)
    report = engine.benchmark.run_benchmark("sentiment", [16, 32, 64], runs=1, warmup=0, progress=lambda line: None)
    assert [r["seq_len"] for r in report["results"]] == [16, 32, 64]
    assert alive_at_build == [0, 0, 0]


def test_threads_asked_for_reach_every_contender(monkeypatch):
    asked = []

    def build(task, seq_len, threads, *args):
        asked.append(threads)
        return [Contender("squeezebert", "fp32", "transformers", lambda: None, "fake")]

    monkeypatch.setattr(engine.benchmark, "build_contenders", build)
    report = engine.benchmark.run_benchmark("sentiment", [16, 32], runs=1, warmup=0, progress=lambda line: None,
                                            threads=1)
    assert asked == [1, 1] and report["threads"] == 1
    report = engine.benchmark.run_benchmark("sentiment", [16], runs=1, warmup=0, progress=lambda line: None)
    assert asked[-1] == report["threads"] == engine.benchmark.physical_cores()


def test_the_random_entities_export_the_benchmark_times_has_iob_labels(tmp_path, monkeypatch, tiny_tokenizer_dir):
    # the exporter takes token labels only as IOB tags; the random checkpoint's default LABEL_n made --task entities
    # fail before any row was timed
    from engine.build import benchmark_reference as reference
    from engine.bundle import load_bundle
    from engine.datasets import ENTITY_LABELS
    from engine.pipelines import EntitiesPipeline

    vocab = len((tiny_tokenizer_dir / "vocab.txt").read_text().split())
    monkeypatch.setitem(ENCODERS, "tiny", {"vocab_size": vocab, "hidden_size": 64, "num_hidden_layers": 2,
                                           "num_attention_heads": 4, "intermediate_size": 128})
    monkeypatch.setattr(reference, "CACHE", tmp_path)
    bundle = load_bundle(reference.export_random("entities", "squeezebert", "int8",
                                                 tiny_tokenizer_dir / "tokenizer.json", "tiny"), "entities")
    assert bundle.labels == ENTITY_LABELS
    result = EntitiesPipeline(bundle, 1)("john smith visited paris")
    assert all(e.entity_group in {"PER", "ORG", "LOC", "MISC"} for e in result.entities)


def test_the_qa_reference_answers_with_a_short_span_of_the_context(tiny_bundles):
    # transformers 5 has no question-answering pipeline; the reference row then runs the model and takes the best span
    from engine.build import benchmark_reference as reference

    answer_of = reference.transformers_pipeline("qa", tiny_bundles[("bert", "qa")], 1)
    context = "the tower was built in paris by the company of an engineer for the world fair"
    answer = answer_of(question="who built the tower ?", context=context)["answer"]
    assert answer and answer in context and len(answer.split()) <= 30
