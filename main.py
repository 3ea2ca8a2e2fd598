"""SqueezeBERT Desktop: the app (no arguments) and its headless commands.

  python main.py                                   open the window
  python main.py analyze --task sentiment "text"   one result as JSON
  python main.py evaluate --task qa --model bert --data dev-v1.1.json
  python main.py self-test                          check every bundled model
  python main.py profile --task sentiment           kernel time in projections, attention and the rest
  python main.py screenshot --tab qa --out qa.png   render a tab with its first sample analysed

The last line of stdout of every headless command is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = ("sentiment", "entities", "qa")
ENCODER_SIZES = ("shipped", "base")  # engine.benchmark.ENCODERS, named here so that parsing imports no engine module
ENCODER_HELP = "shipped: the bundles' 6 layers x 384 (default); base: BERT-base's 12 x 768, random weights (needs torch)"


class CliError(Exception):
    """A one-line error for the user; main() prints it and exits non-zero."""


def emit(obj: dict) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def read_text_arg(args) -> str:
    if args.file:
        try:
            return Path(args.file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    if args.text is None:
        raise CliError("give the text to analyse, or --file PATH")
    return args.text


def cmd_analyze(args) -> int:
    from engine.pipelines import load_pipeline

    text = read_text_arg(args)
    pipeline = load_pipeline(args.task, args.model)
    if args.task == "qa":
        if not args.question:
            raise CliError("--question is required for --task qa (the text is the context)")
        result = pipeline(args.question, text)
    else:
        result = pipeline(text)
    emit(result.to_dict())
    return 0


def cmd_evaluate(args) -> int:
    from engine.evaluation import evaluate, stderr_progress
    from engine.pipelines import load_pipeline

    if not Path(args.data).is_file():
        raise CliError(f"data file not found: {args.data}")
    pipeline = load_pipeline(args.task, args.model)
    report = evaluate(pipeline, args.data, args.limit, stderr_progress)
    emit({"task": args.task, "model": args.model, "precision": pipeline.info.precision, **report})
    return 0


def cmd_self_test(args) -> int:
    from engine.selftest import self_test

    report = self_test()
    for name, r in report["models"].items():
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {name}: {r['detail']}", file=sys.stderr)
    emit(report)
    return 0 if report["ok"] else 1


def cmd_app(args) -> int:
    from gui.app import run_app

    return run_app()


def cmd_screenshot(args) -> int:
    from gui.app import screenshot

    path = screenshot(args.tab, args.out, compare_model=args.model, theme=args.theme)
    emit({"tab": args.tab, "out": str(path)})
    return 0


def cmd_startup(args) -> int:
    from gui.app import startup_probe

    emit(startup_probe())
    return 0


def cmd_batch(args) -> int:
    import time

    from engine.batch import RowWriter, count_rows, read_rows, run_batch
    from engine.pipelines import load_pipeline

    text_column = args.column or ("context" if args.task == "qa" else "text")
    question_column = args.question_column if args.task == "qa" else None
    rows = read_rows(args.input, text_column if not args.input.endswith(".txt") else None, question_column)
    first = next(rows, None)  # surfaces a missing column or a wrong file type before anything is written
    pipeline = load_pipeline(args.task, args.model)
    total = count_rows(args.input)
    started = time.time()

    def progress(done: int) -> None:
        if done % 50 == 0 or done == total:
            rate = done / max(time.time() - started, 1e-9)
            of = f"/{total}" if total else ""
            print(f"\r{done}{of} rows ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    def all_rows():
        if first is not None:
            yield first
        yield from rows

    summary = None
    with RowWriter(args.output) as writer:
        try:
            summary = run_batch(pipeline, all_rows(), writer, progress)
        except KeyboardInterrupt:
            print("\ninterrupted: the output holds every row finished so far", file=sys.stderr)
    print(file=sys.stderr)
    report = {"output": args.output, "task": args.task, "model": args.model,
              "seconds": round(time.time() - started, 2), "interrupted": summary is None}
    if summary is not None:
        report.update(rows=summary.rows, failed=summary.failed)
    emit(report)
    return 130 if summary is None else 0


def check_encoder(encoder: str) -> None:
    import importlib.util

    if encoder != "shipped" and not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        raise CliError(f"--encoder {encoder} exports random-weight models, which needs torch and transformers: "
                       "install the 'build' extra (bash scripts/setup.sh build)")


def cmd_benchmark(args) -> int:
    from engine.benchmark import add_efficiency, run_benchmark

    try:
        seq_lens = [int(s) for s in args.seq_len.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seq-len takes numbers separated by commas, got {args.seq_len!r}") from None
    if not seq_lens or any(not 8 <= s <= 512 for s in seq_lens):
        raise CliError("--seq-len values must be between 8 and 512")
    if args.threads is not None and args.threads < 1:
        raise CliError("--threads must be at least 1")
    check_encoder(args.encoder)
    report = add_efficiency(run_benchmark(args.task, seq_lens, args.runs, progress=lambda line: print(line, file=sys.stderr),
                                        encoder=args.encoder, threads=args.threads))
    for line in benchmark_summary(report):
        print(line, file=sys.stderr if args.json else sys.stdout)
    if args.chart:
        from gui.benchmark_chart import save_chart

        save_chart(report, args.chart)
    if args.json:
        emit({"seq_len": seq_lens[0] if len(seq_lens) == 1 else seq_lens, "batch": 1, "threads": report["threads"],
              "encoder": report["encoder"], "results": report["results"], "cpu": report["cpu"], "peak_gemm_gflops": report["peak_gemm_gflops"],
              "notes": report["notes"]})
    return 0


def cmd_profile(args) -> int:
    import importlib.util

    from engine.profile import KINDS, profile_task
    from engine.session import physical_cores

    if importlib.util.find_spec("onnx") is None:
        raise CliError("profile needs the onnx package: install the 'build' extra (bash scripts/setup.sh build)")
    if not 8 <= args.seq_len <= 512 or args.runs < 1:
        raise CliError("--seq-len must be between 8 and 512 and --runs at least 1")
    check_encoder(args.encoder)
    report = profile_task(args.task, args.seq_len, args.runs, physical_cores(), args.encoder)
    out = sys.stderr if args.json else sys.stdout
    print(f"{args.task}, seq {args.seq_len}, {args.encoder} encoder size, batch 1, {report['threads']} threads: kernel ms per run over "
          f"{args.runs} runs", file=out)
    print(f"{'model':18s}" + "".join(f"{k:>13s}" for k in KINDS) + f"{'total':>10s}   largest op types", file=out)
    for name, m in report["models"].items():
        top = ", ".join(f"{o['op']} {o['ms']:.2f} ({o['nodes']})" for o in m["by_op"][:4])
        print(f"{name:18s}" + "".join(f"{m['by_kind_ms'][k]:13.2f}" for k in KINDS) + f"{m['kernel_ms']:10.2f}   {top}",
              file=out)
    for note in report["notes"]:
        print(f"note: {note}", file=out)
    if args.json:
        emit(report)
    return 0


def benchmark_summary(report: dict) -> list[str]:
    """Ratios that matter, per sequence length: the architecture's gain and the gain over what users run today."""
    peaks = report["peak_gemm_gflops"]
    lines = [f"CPU: {report['cpu']}, {report['threads']} threads, batch 1, {report['runs']} interleaved runs, "
             f"{report['encoder']} encoder size; "
             f"GEMM peak fp32 {peaks['fp32']} GFLOP/s, int8 {peaks['int8'] or 'not measured (no onnx)'} GOP/s"]
    for seq in report["seq_lens"]:
        rows = {(r["model"], r["precision"], r["runtime"]): r for r in report["results"] if r["seq_len"] == seq}
        sq = rows.get(("squeezebert", "int8", "onnxruntime"))
        if not sq:
            continue
        parts = []
        for key, name in ((("bert", "int8", "onnxruntime"), "BERT int8"), (("bert", "fp32", "onnxruntime"), "BERT fp32"),
                          (("bert", "fp32", "transformers"), "transformers BERT"),
                          (("squeezebert", "fp32", "transformers"), "transformers SqueezeBERT")):
            if key in rows:
                parts.append(f"{rows[key]['p50_ms'] / sq['p50_ms']:.2f}x vs {name}")
        tok = f"; tokenisation {100 * sq.get('tokenize_fraction', 0):.1f}% of its time" if "tokenize_fraction" in sq else ""
        lines.append(f"seq {seq}: SqueezeBERT int8 p50 {sq['p50_ms']:.2f} ms = " + ", ".join(parts) + tok)
    lines += [f"note: {n}" for n in report["notes"]]
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("analyze", help="analyse one text")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--model", default="squeezebert", help="squeezebert, bert, or a bundle folder")
    p.add_argument("--question", help="the question (qa)")
    p.add_argument("--file", help="read the text (qa: the context) from this UTF-8 file")
    p.add_argument("text", nargs="?", help="the text (qa: the context)")
    p.set_defaults(run=cmd_analyze)

    p = sub.add_parser("evaluate", help="score a model on SST-2 TSV, CoNLL-2003 or SQuAD v1.1 JSON")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--model", default="squeezebert", help="squeezebert, bert, or a bundle folder")
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("self-test", help="load every bundled model and check its output")
    p.set_defaults(run=cmd_self_test)

    p = sub.add_parser("batch", help="analyse every row of a .txt, .csv or .jsonl file into a .csv or .jsonl")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--model", default="squeezebert", help="squeezebert, bert, or a bundle folder")
    p.add_argument("--input", required=True, help=".txt (one text per line), .csv or .jsonl")
    p.add_argument("--column", help="text column/field (default 'text'; qa: 'context')")
    p.add_argument("--question-column", default="question", help="qa: the question column/field")
    p.add_argument("--output", required=True, help=".csv or .jsonl, written row by row")
    p.set_defaults(run=cmd_batch)

    p = sub.add_parser("benchmark", help="time SqueezeBERT against BERT (int8, fp32, transformers) on identical inputs")
    p.add_argument("--task", choices=TASKS, default="sentiment")
    p.add_argument("--seq-len", default="32,128,384")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--json", action="store_true", help="last line of stdout: the results as JSON")
    p.add_argument("--chart", help="also draw latency against sequence length into this PNG")
    p.add_argument("--encoder", choices=list(ENCODER_SIZES), default="shipped", help=ENCODER_HELP)
    p.add_argument("--threads", type=int, help="threads for every contender (default: the physical cores); on a host "
                   "whose second core comes and goes, one thread shows the models' ratio without its stalls")
    p.set_defaults(run=cmd_benchmark)

    p = sub.add_parser("profile", help="ONNX Runtime's profiler: kernel time in projections, attention and the rest")
    p.add_argument("--task", choices=TASKS, default="sentiment")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", action="store_true", help="last line of stdout: the profile as JSON")
    p.add_argument("--encoder", choices=list(ENCODER_SIZES), default="shipped", help=ENCODER_HELP)
    p.set_defaults(run=cmd_profile)

    p = sub.add_parser("startup", help="open the window and time it: first paint, first result, all models loaded, memory")
    p.set_defaults(run=cmd_startup)

    p = sub.add_parser("screenshot", help="render the window with a tab's first sample analysed")
    p.add_argument("--tab", choices=TASKS + ("compare",), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="squeezebert", choices=["squeezebert", "bert"])
    p.add_argument("--theme", default="light", choices=["light", "dark"])
    p.set_defaults(run=cmd_screenshot)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        return cmd_app(args)
    from engine.errors import EngineError

    try:
        return args.run(args)
    except (CliError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
