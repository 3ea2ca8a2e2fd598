"""The benchmark names the CPU with the instruction sets its int8 kernels depend on."""
from engine.benchmark import cpu_name

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni sha_ni
"""


def test_cpu_name_lists_int8_instruction_sets():
    assert cpu_name(CPUINFO) == "AMD EPYC 9R14 (avx2, avx512f, avx512_vnni)"


def test_cpu_name_without_int8_extensions_is_the_model_name():
    assert cpu_name("model name\t: Some CPU\nflags\t: fpu sse2\n") == "Some CPU"
